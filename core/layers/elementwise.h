// Small row-local operators: softmax over channels, residual add, standalone activation and
// batch norm (the latter two are normally fused into the preceding conv by Graph::finalize).
#pragma once
#include "core/layer.h"

namespace eb {

class Softmax : public Layer {
 public:
  std::string type() const override { return "softmax"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange, int) const override { return {0, in_shapes_.at(0).h}; }
  bool spatial() const override { return false; }
  double flops(RowRange) const override { return 3.0 * in_shapes_.at(0).size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
};

class Add : public Layer {
 public:
  explicit Add(Activation act = Activation::none) : act_(act) {}
  std::string type() const override { return "add"; }
  int num_inputs() const override { return 2; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int) const override { return out; }
  double flops(RowRange out) const override { return double(out.size()) * out_shape_.row_size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  Json attrs() const override;
  bool fuse_activation(Activation a) override;

 private:
  Activation act_;
};

class ActivationLayer : public Layer {
 public:
  explicit ActivationLayer(Activation a) : act_(a) {}
  std::string type() const override { return "activation"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int) const override { return out; }
  double flops(RowRange out) const override { return double(out.size()) * out_shape_.row_size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  Json attrs() const override;
  Activation activation() const { return act_; }

 private:
  Activation act_;
};

class BatchNorm : public Layer {
 public:
  BatchNorm(long channels, float eps);
  std::string type() const override { return "batchnorm"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int) const override { return out; }
  double flops(RowRange out) const override { return 2.0 * out.size() * out_shape_.row_size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  std::vector<Param> params() override;
  Json attrs() const override;
  std::vector<float> gamma, beta, mean, var;
  float eps;

 private:
  long c_;
};

}  // namespace eb
