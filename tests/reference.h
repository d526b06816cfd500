// Plain reference implementations (double accumulation, no blocking, no SIMD) that every
// kernel and whole network is checked against.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "core/graph.h"

namespace eb::ref {

struct ConvSpec {
  long kh, kw, sh, sw, pt, pl, pb, pr;
  bool depthwise;
  Activation act;
};
// NHWC input, OHWI weights ([cout][kh][kw][cin or 1]).
Tensor conv2d(const Tensor& in, const std::vector<float>& w, const std::vector<float>& b, long cout,
              const ConvSpec& s);
Tensor pool2d(const Tensor& in, bool is_max, long k, long s, long pt, long pl, long pb, long pr);
// Whole-graph forward reading each layer's attrs() and params() — independent of the kernels.
Tensor forward(Graph& g, const Tensor& in);

Tensor random_tensor(Shape s, std::mt19937& rng, float lo = -1.f, float hi = 1.f);
std::vector<float> random_vec(size_t n, std::mt19937& rng, float lo = -1.f, float hi = 1.f);
float max_abs_diff(const Tensor& a, const Tensor& b);
float max_abs(const Tensor& a);
bool bit_equal(const Tensor& a, const Tensor& b);

}  // namespace eb::ref
