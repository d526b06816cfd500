#include "core/layers/global_avg_pool.h"

#include <stdexcept>
#include <vector>

namespace eb {

Shape GlobalAvgPool::configure(const std::vector<Shape>& in) {
  if (in.size() != 1) throw std::invalid_argument("global_avgpool takes one input");
  in_shapes_ = in;
  out_shape_ = {1, 1, in[0].c};
  return out_shape_;
}

void GlobalAvgPool::forward(const std::vector<const Band*>& in, Band& out) const {
  const Shape& s = in_shapes_[0];
  const Band& src = *in.at(0);
  std::vector<double> acc(size_t(s.c), 0.0);
  for (int y = 0; y < s.h; ++y) {
    const float* r = src.row(y);
    for (int x = 0; x < s.w; ++x)
      for (int c = 0; c < s.c; ++c) acc[size_t(c)] += r[size_t(x) * s.c + c];
  }
  const double inv = 1.0 / (double(s.h) * s.w);
  for (int c = 0; c < s.c; ++c) out.t.data()[c] = float(acc[size_t(c)] * inv);
}

}  // namespace eb
