// 2-D convolution (dense, grouped or depthwise) with bias and fused ReLU/ReLU6. Weights are
// OHWI ([cout][kh][kw][cin/groups]). prepare() picks the kernel: Winograd F(6x6,3x3),
// F(4x4,3x3) or F(2x2,3x3) for dense 3x3 stride 1, direct GEMM for 1x1, vectorised depthwise
// 3x3, im2col + GEMM for the rest, and one im2col + GEMM per group for grouped convolutions
// (ResNeXt, RegNet).
#pragma once
#include "core/layer.h"
#include "kernels/conv.h"

namespace eb {

struct Conv2DParams {
  long cin = 0, cout = 0, kh = 3, kw = 3, sh = 1, sw = 1;
  long pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
  bool depthwise = false;  // groups == cin == cout, with its own kernels
  long groups = 1;         // 1 < groups < cin: grouped (depthwise sets it to cin)
  Activation act = Activation::none;
};

class Conv2D : public Layer {
 public:
  // Output maps of more than 8 rows and at most this many pixels take Winograd F(2x2,3x3)
  // (choose_kernels).
  static constexpr long kSmallWinogradMap = 14 * 14;
  // Whether an h x w output map takes Winograd F(6x6,3x3) rather than F(4x4,3x3).
  static bool f63_pays(long h, long w);
  enum class Algo {
    im2col,
    gemm1x1,
    winograd_f43,
    winograd_f23,
    depthwise3x3,
    depthwise_generic,
    grouped,
    winograd_f63
  };
  explicit Conv2D(const Conv2DParams& p);
  std::string type() const override { return "conv2d"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int i) const override;
  int row_granule() const override { return winograd_tile(); }
  double flops(RowRange out) const override;
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  std::vector<Param> params() override;
  std::vector<Param> param_shapes() override;
  bool loads_lazily() const override { return true; }
  Json attrs() const override;
  void prepare() override;
  void choose_kernels() override;
  void pack_and_release(RowRange channels = {}) override;
  bool ready(RowRange) const override { return packed_ready_; }
  void reopen() override { released_ = false; }
  void unload() override;
  size_t weight_bytes() const override;
  void evict_weights() const override;
  size_t packed_bytes(RowRange channels = {}) const override;
  size_t source_bytes(RowRange) const override {  // Winograd: and tile + 2 transformed matrices
    const long wino = winograd_tile() > 1 ? (winograd_tile() + 2) * p_.cin * p_.cout : 0;
    return size_t(p_.cout * (p_.kh * p_.kw * cin_per_group() + 1) + wino) * sizeof(float);
  }
  bool fuse_activation(Activation a) override;

  const Conv2DParams& conv() const { return p_; }
  // The untransformed weights, allocated (zeros) on first use: a lazily loaded graph holds none
  // until a layer is packed.
  std::vector<float>& weight() { return source(); }
  std::vector<float>& bias() { return b_; }
  Algo algo() const { return algo_; }
  // Output rows (and columns) of the Winograd algorithm's tiles; 1 for the others.
  int winograd_tile() const {
    switch (algo_) {
      case Algo::winograd_f63: return 6;
      case Algo::winograd_f43: return 4;
      case Algo::winograd_f23: return 2;
      default: return 1;
    }
  }
  // Force an algorithm (tests compare them all); prepare() must follow.
  void force_algo(Algo a) { forced_ = a, has_forced_ = true; }
  // Folds y = gamma * (x - mean) / sqrt(var + eps) + beta into the weights and bias.
  bool fold_batchnorm(const std::vector<float>& gamma, const std::vector<float>& beta,
                      const std::vector<float>& mean, const std::vector<float>& var, float eps) override;

 private:
  kernels::ConvGeom geom() const;
  long cin_per_group() const { return p_.cin / p_.groups; }
  // Calls vec(v) on each weight vector and packed(b) on each packed operand the layer holds: the
  // one list weight_bytes() counts and evict_weights() drops.
  template <class Vec, class Packed>
  void for_each_weight(Vec vec, Packed packed) const;
  void forward_grouped(const Band& src, Band& out, const kernels::MinMax* mm) const;
  std::vector<float>& source();
  void pack();
  Conv2DParams p_;
  bool released_ = false, packed_ready_ = false;
  std::vector<PendingFold> pending_, applied_;  // applied_: again after unload()
  std::vector<float> w_, b_;
  Algo algo_ = Algo::im2col, forced_ = Algo::im2col;
  bool has_forced_ = false;
  kernels::PackedB packed_;
  std::vector<kernels::PackedB> group_packed_;  // grouped: one GEMM operand per group
  kernels::WinogradWeights wino_;
  std::vector<float> dw9_;  // depthwise weights as [9][c]
};

kernels::MinMax activation_range(Activation a);

}  // namespace eb
