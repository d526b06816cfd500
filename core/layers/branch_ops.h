// Operators of branching and gated networks, all row-local and band-native:
// channel concatenation (Inception, DenseNet, SqueezeNet), elementwise and channel-broadcast
// multiply (squeeze-and-excitation, SiLU as x * sigmoid(x)), smooth activations (sigmoid,
// hard-sigmoid, SiLU, hard-swish), channel shuffle and slicing (ShuffleNet) and explicit zero
// padding.
#pragma once
#include "core/layer.h"

namespace eb {

// Output channels are input 0's, then input 1's, ...; every input has the same H and W.
class Concat : public Layer {
 public:
  explicit Concat(int inputs);
  std::string type() const override { return "concat"; }
  int num_inputs() const override { return n_; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int) const override { return out; }
  double flops(RowRange out) const override { return double(out.size()) * out_shape_.row_size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  Json attrs() const override;

 private:
  int n_;
};

// x * y of equal shapes, or x (H x W x C) * y (1 x 1 x C) per channel. The broadcast operand
// is a gate computed from global pooling: it is one row, needed whole by every band.
class Mul : public Layer {
 public:
  std::string type() const override { return "mul"; }
  int num_inputs() const override { return 2; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int i) const override;
  double flops(RowRange out) const override { return double(out.size()) * out_shape_.row_size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  bool broadcast() const { return broadcast_; }

 private:
  bool broadcast_ = false;
};

// Smooth pointwise functions, which a conv epilogue's min/max clamp cannot express.
//   sigmoid:      1 / (1 + e^-x)
//   hard_sigmoid: max(0, min(1, alpha * x + beta))       (ONNX HardSigmoid)
//   silu:         x * sigmoid(x)                          (swish)
//   hard_swish:   x * max(0, min(1, x / 6 + 1 / 2))
enum class UnaryOp { sigmoid, hard_sigmoid, silu, hard_swish };
const char* unary_name(UnaryOp op);
UnaryOp parse_unary(const std::string& s);
float apply_unary(UnaryOp op, float x, float alpha, float beta);

class Unary : public Layer {
 public:
  explicit Unary(UnaryOp op, float alpha = 0.2f, float beta = 0.5f);
  std::string type() const override { return "unary"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int) const override { return out; }
  // On a single pixel (MobileNet-V3's FC, hard-swish, FC head; an SE gate) there are no rows
  // to split: it stays with the host-only layers around it.
  bool spatial() const override { return out_shape_.h * out_shape_.w > 1; }
  double flops(RowRange out) const override { return 4.0 * out.size() * out_shape_.row_size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  Json attrs() const override;
  static std::unique_ptr<Layer> from_attrs(const Json& a);

 private:
  UnaryOp op_;
  float alpha_, beta_;
};

// ShuffleNet's channel shuffle: channels seen as a groups x (C / groups) matrix, transposed.
// Output channel j * groups + i is input channel i * (C / groups) + j.
class ChannelShuffle : public Layer {
 public:
  explicit ChannelShuffle(long groups);
  std::string type() const override { return "channel_shuffle"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int) const override { return out; }
  double flops(RowRange out) const override { return double(out.size()) * out_shape_.row_size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  Json attrs() const override;

 private:
  long groups_;
};

// Channels [begin, end) of the input (ONNX Split and Slice along channels).
class SliceChannels : public Layer {
 public:
  SliceChannels(long begin, long end);
  std::string type() const override { return "slice_channels"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int) const override { return out; }
  double flops(RowRange out) const override { return double(out.size()) * out_shape_.row_size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  Json attrs() const override;

 private:
  long begin_, end_;
};

// Zero padding of the borders (ONNX Pad, constant 0, H and W only). The importer folds it into
// a following convolution where it can; this layer is the rest.
class ZeroPad : public Layer {
 public:
  ZeroPad(long top, long left, long bottom, long right);
  std::string type() const override { return "pad"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int) const override;
  double flops(RowRange out) const override { return double(out.size()) * out_shape_.row_size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  Json attrs() const override;
  static std::unique_ptr<Layer> from_attrs(const Json& a);

 private:
  long t_, l_, b_, r_;
};

}  // namespace eb
