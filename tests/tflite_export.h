// Test-only TFLite writer: turns an unfused engine Graph into a float32 .tflite flatbuffer,
// written from TFLite's schema.fbs independently of the importer. It covers the operators of
// MobileNet-V3/EfficientNet-Lite style graphs: CONV_2D / DEPTHWISE_CONV_2D (VALID padding
// only; explicit padding is a PAD before), LOGISTIC, HARD_SWISH, CONCATENATION, PAD, MEAN
// (global average pooling), MUL and ADD (maps, or a map and a constant), RELU/RELU6.
#pragma once
#include <string>

#include "core/graph.h"

namespace eb::test {

std::string export_tflite(Graph& g);

}  // namespace eb::test
