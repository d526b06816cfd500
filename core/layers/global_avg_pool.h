// Mean over all rows and columns: HxWxC -> 1x1xC. Needs the whole input (runs on the host).
#pragma once
#include "core/layer.h"

namespace eb {

class GlobalAvgPool : public Layer {
 public:
  std::string type() const override { return "global_avgpool"; }
  Shape configure(const std::vector<Shape>& in) override;
  RowRange input_rows(RowRange, int) const override { return {0, in_shapes_.at(0).h}; }
  bool spatial() const override { return false; }
  double flops(RowRange) const override { return double(in_shapes_.at(0).size()); }
  void forward(const std::vector<const Band*>& in, Band& out) const override;
};

}  // namespace eb
