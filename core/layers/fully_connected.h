// Fully connected over the flattened (HWC order) input; weights [out][in].
#pragma once
#include "core/layer.h"
#include "kernels/gemm.h"

namespace eb {

class FullyConnected : public Layer {
 public:
  FullyConnected(long in_features, long out_features, Activation act = Activation::none);
  std::string type() const override { return "fully_connected"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange, int) const override { return {0, in_shapes_.at(0).h}; }
  bool spatial() const override { return false; }
  double flops(RowRange) const override { return 2.0 * in_ * out_; }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  bool forward_channels(const Band& in, int c0, int c1, float* out) const override;
  bool splits_channels() const override { return true; }
  std::vector<Param> params() override;
  Json attrs() const override;
  void prepare() override;
  bool fuse_activation(Activation a) override;
  bool fold_batchnorm(const std::vector<float>& gamma, const std::vector<float>& beta,
                      const std::vector<float>& mean, const std::vector<float>& var, float eps) override;

 private:
  long in_, out_;
  Activation act_;
  std::vector<float> w_, b_;
  kernels::PackedB packed_;
};

}  // namespace eb
