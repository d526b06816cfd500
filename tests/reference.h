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
// Grouped: weights [cout][kh][kw][cin / groups]; output channel o reads group o / (cout / groups).
Tensor conv2d_grouped(const Tensor& in, const std::vector<float>& w, const std::vector<float>& b,
                      long cout, const ConvSpec& s, long groups);
// ceil_mode pooling as PyTorch defines it: output size rounded up, a window starting past the
// input and its leading padding dropped, positions outside the input never counted.
Tensor pool2d_ceil(const Tensor& in, bool is_max, long k, long s, long pt, long pl, long pb, long pr);
// Channel concatenation, products, the smooth activations and zero padding, in double.
Tensor concat(const std::vector<Tensor>& in);
Tensor mul(const Tensor& a, const Tensor& b);  // b equal-shaped or 1 x 1 x C
Tensor unary(const std::string& op, const Tensor& x, double alpha, double beta);
Tensor zero_pad(const Tensor& x, long t, long l, long b, long r);
// ShuffleNet: channels as a groups x (C / groups) matrix, transposed; channels [c0, c1).
Tensor channel_shuffle(const Tensor& x, long groups);
Tensor slice_channels(const Tensor& x, long c0, long c1);
Tensor pool2d(const Tensor& in, bool is_max, long k, long s, long pt, long pl, long pb, long pr);
// Whole-graph forward reading each layer's attrs() and params() — independent of the kernels.
Tensor forward(Graph& g, const Tensor& in);

Tensor random_tensor(Shape s, std::mt19937& rng, float lo = -1.f, float hi = 1.f);
std::vector<float> random_vec(size_t n, std::mt19937& rng, float lo = -1.f, float hi = 1.f);
float max_abs_diff(const Tensor& a, const Tensor& b);
float max_abs(const Tensor& a);
bool bit_equal(const Tensor& a, const Tensor& b);

}  // namespace eb::ref
