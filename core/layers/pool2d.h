// Max / average pooling (TF semantics: padded positions are excluded from the window).
#pragma once
#include "core/layer.h"
#include "kernels/conv.h"

namespace eb {

class Pool2D : public Layer {
 public:
  Pool2D(kernels::PoolKind kind, long k, long stride, long pad_t = 0, long pad_l = 0,
         long pad_b = 0, long pad_r = 0);
  std::string type() const override { return kind_ == kernels::PoolKind::max ? "maxpool" : "avgpool"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange out, int i) const override;
  double flops(RowRange out) const override;
  void forward(const std::vector<const Band*>& in, Band& out) const override;
  Json attrs() const override;
  static std::unique_ptr<Layer> from_attrs(kernels::PoolKind kind, const Json& a);

 private:
  kernels::PoolKind kind_;
  long k_, s_, pt_, pl_, pb_, pr_;
};

}  // namespace eb
