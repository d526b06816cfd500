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
  void evict_weights() const override;
  bool splits_channels() const override { return true; }
  std::vector<Param> params() override;
  std::vector<Param> param_shapes() override {
    return {{"weight", {out_, in_}, nullptr}, {"bias", {out_}, nullptr}};
  }
  bool loads_lazily() const override { return true; }
  Json attrs() const override;
  void prepare() override;
  void pack_and_release(RowRange channels = {}) override;
  bool ready(RowRange channels = {}) const override;
  void reopen() override;
  void unload() override;
  RowRange loaded_channels() const override;
  RowRange load_range(RowRange channels) const override;
  // Only rows [r.begin, r.end) of the untransformed weights ([out][in]), zeros, for
  // pack_and_release(r): a device computing a slice of fc6 never holds the rest.
  float* source_rows(RowRange r);
  long inputs() const { return in_; }
  std::vector<Param> params_without_weight() { return {{"bias", {out_}, &b_}}; }
  size_t weight_bytes() const override;
  size_t packed_bytes(RowRange channels = {}) const override;
  size_t source_bytes(RowRange channels = {}) const override;
  // Packing whole panels (the layer or a slice of it) transposes them where they lie: no
  // second copy, one panel of scratch.
  bool packs_in_place(RowRange rows) const { return rows.size() % int(kernels::active().gemm_nr) == 0; }
  bool fuse_activation(Activation a) override;
  bool fold_batchnorm(const std::vector<float>& gamma, const std::vector<float>& beta,
                      const std::vector<float>& mean, const std::vector<float>& var, float eps) override;

 private:
  long in_, out_;
  Activation act_;
  std::vector<float>& source();
  // Panels for output channels [first, first + b.n): all of them, or a device's slice (whole
  // panels, so every output keeps its lane and its value).
  struct Packed {
    kernels::PackedB b;
    int first = 0;
  };
  kernels::PackedB packed_in_place(RowRange rows);
  kernels::PackedB packed_slice(RowRange channels) const;
  std::vector<float> w_, b_;  // w_: on first use (source()), rows [src_first_, ...)
  int src_first_ = 0;
  bool released_ = false;
  std::vector<PendingFold> pending_, applied_;  // applied_: again after unload()
  // Replaced whole, atomically: a worker may widen a slice for a new plan while another host's
  // session reads it.
  std::shared_ptr<const Packed> packed_;
};

}  // namespace eb
