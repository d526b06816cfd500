#include "core/layers/fully_connected.h"

#include <stdexcept>

#include "core/layers/conv2d.h"

namespace eb {

FullyConnected::FullyConnected(long in, long out, Activation act) : in_(in), out_(out), act_(act) {
  if (in <= 0 || out <= 0 || in > (1L << 28) || out > (1L << 20) || in * out > (1L << 31))
    throw std::invalid_argument("fully_connected: invalid size");
  w_.assign(size_t(in * out), 0.0f);
  b_.assign(size_t(out), 0.0f);
}

Shape FullyConnected::configure(const std::vector<Shape>& in) {
  if (in.size() != 1) throw std::invalid_argument("fully_connected takes one input");
  if (long(in[0].size()) != in_)
    throw std::invalid_argument("fully_connected: input " + in[0].str() + " has " +
                                std::to_string(in[0].size()) + " values, layer expects " +
                                std::to_string(in_));
  in_shapes_ = in;
  out_shape_ = {1, 1, int(out_)};
  return out_shape_;
}

void FullyConnected::prepare() {
  packed_ = kernels::pack_b_transposed(w_.data(), size_t(in_), size_t(out_), b_.data());
}

void FullyConnected::forward(const std::vector<const Band*>& in, Band& out) const {
  const kernels::MinMax mm = activation_range(act_);
  kernels::gemv(in.at(0)->row(0), packed_, out.t.data(), act_ == Activation::none ? nullptr : &mm);
}

bool FullyConnected::forward_channels(const Band& in, int c0, int c1, float* out) const {
  const kernels::MinMax mm = activation_range(act_);
  kernels::gemv_range(in.row(0), packed_, size_t(c0), size_t(c1), out,
                      act_ == Activation::none ? nullptr : &mm);
  return true;
}

std::vector<Param> FullyConnected::params() {
  return {{"weight", {out_, in_}, &w_}, {"bias", {out_}, &b_}};
}

Json FullyConnected::attrs() const {
  Json a = Json::object();
  a["in"] = in_;
  a["out"] = out_;
  a["activation"] = activation_name(act_);
  return a;
}

bool FullyConnected::fold_batchnorm(const std::vector<float>& gamma, const std::vector<float>& beta,
                                    const std::vector<float>& mean, const std::vector<float>& var,
                                    float eps) {
  if (act_ != Activation::none || long(gamma.size()) != out_) return false;
  fold_batchnorm_rows(w_, b_, gamma, beta, mean, var, eps);
  return true;
}

bool FullyConnected::fuse_activation(Activation a) {
  if (act_ != Activation::none) return false;
  act_ = a;
  return true;
}

}  // namespace eb
