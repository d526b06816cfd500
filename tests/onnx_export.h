// Test-only ONNX writer: turns an unfused engine Graph into ONNX bytes (NCHW, OIHW weights,
// Flatten + Gemm with CHW columns), written from the ONNX spec independently of the importer.
#pragma once
#include <string>

#include "core/graph.h"

namespace eb::test {

struct OnnxExportOptions {
  bool clip_as_inputs = true;  // ReLU6 as Clip(x, min, max) (opset 11+) or with attributes
  bool gemm = true;            // fully connected as Gemm(transB=1) or MatMul
  bool ceil_mode = false;      // every pool with ceil_mode=1 (its output size then differs)
  bool count_include_pad = false;  // average pools with count_include_pad=1 (a different function)
  bool pad_inputs = true;      // Pad's pads as an input (opset 11+) or an attribute (before)
  bool shape_ops = false;      // channel shuffle shapes computed by Shape/Gather/Div/Unsqueeze/
                               // Concat, as PyTorch writes view(b, g, c // g, h, w); else constants
  bool hard_swish_op = false;  // hard-swish as HardSwish (opset 14) or PyTorch's older
                               // HardSigmoid(alpha=1/6) + Mul; SiLU is always Sigmoid + Mul
};
std::string export_onnx(Graph& g, const OnnxExportOptions& opt = {});

}  // namespace eb::test
