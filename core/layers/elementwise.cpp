#include "core/layers/elementwise.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/layers/conv2d.h"
#include "kernels/microkernels.h"

namespace eb {

namespace {
Shape same_shape(const std::vector<Shape>& in, const char* what, std::vector<Shape>& keep) {
  if (in.size() != 1) throw std::invalid_argument(std::string(what) + " takes one input");
  keep = in;
  return in[0];
}
}  // namespace

Shape Softmax::configure(const std::vector<Shape>& in) {
  out_shape_ = same_shape(in, "softmax", in_shapes_);
  return out_shape_;
}

void Softmax::forward(const std::vector<const Band*>& in, Band& out) const {
  const Shape& s = in_shapes_[0];
  const size_t c = size_t(s.c);
  for (int y = 0; y < s.h; ++y)
    for (int x = 0; x < s.w; ++x) {
      const float* src = in.at(0)->row(y) + size_t(x) * c;
      float* dst = out.row(y) + size_t(x) * c;
      const float mx = *std::max_element(src, src + c);
      double sum = 0;
      for (size_t i = 0; i < c; ++i) sum += (dst[i] = std::exp(src[i] - mx));
      const float inv = float(1.0 / sum);
      for (size_t i = 0; i < c; ++i) dst[i] *= inv;
    }
}

Shape Add::configure(const std::vector<Shape>& in) {
  if (in.size() != 2 || in[0] != in[1]) throw std::invalid_argument("add needs two equal shapes");
  in_shapes_ = in;
  out_shape_ = in[0];
  return out_shape_;
}

void Add::forward(const std::vector<const Band*>& in, Band& out) const {
  const kernels::MinMax mm = activation_range(act_);
  const size_t rf = out_shape_.row_size();
  for (int y = out.row0; y < out.row0 + out.t.h(); ++y)
    kernels::active().add(in.at(0)->row(y), in.at(1)->row(y), out.row(y), rf,
                          act_ == Activation::none ? nullptr : &mm);
}

Json Add::attrs() const {
  Json a = Json::object();
  a["activation"] = activation_name(act_);
  return a;
}

bool Add::fuse_activation(Activation a) {
  if (act_ != Activation::none) return false;
  act_ = a;
  return true;
}

Shape ActivationLayer::configure(const std::vector<Shape>& in) {
  out_shape_ = same_shape(in, "activation", in_shapes_);
  return out_shape_;
}

void ActivationLayer::forward(const std::vector<const Band*>& in, Band& out) const {
  const kernels::MinMax mm = activation_range(act_);
  const size_t rf = out_shape_.row_size();
  for (int y = out.row0; y < out.row0 + out.t.h(); ++y) {
    const float* s = in.at(0)->row(y);
    float* d = out.row(y);
    for (size_t i = 0; i < rf; ++i) d[i] = std::min(std::max(s[i], mm.lo), mm.hi);
  }
}

Json ActivationLayer::attrs() const {
  Json a = Json::object();
  a["activation"] = activation_name(act_);
  return a;
}

BatchNorm::BatchNorm(long c, float e) : eps(e), c_(c) {
  if (c <= 0 || c > (1 << 16) || !(e >= 0)) throw std::invalid_argument("batchnorm: invalid");
  gamma.assign(size_t(c), 1.0f);
  beta.assign(size_t(c), 0.0f);
  mean.assign(size_t(c), 0.0f);
  var.assign(size_t(c), 1.0f);
}

Shape BatchNorm::configure(const std::vector<Shape>& in) {
  out_shape_ = same_shape(in, "batchnorm", in_shapes_);
  if (out_shape_.c != c_) throw std::invalid_argument("batchnorm: channel mismatch");
  return out_shape_;
}

void BatchNorm::forward(const std::vector<const Band*>& in, Band& out) const {
  const int w = out_shape_.w;
  for (int y = out.row0; y < out.row0 + out.t.h(); ++y) {
    const float* s = in.at(0)->row(y);
    float* d = out.row(y);
    for (int x = 0; x < w; ++x)
      for (long c = 0; c < c_; ++c) {
        const size_t i = size_t(x) * size_t(c_) + size_t(c), k = size_t(c);
        d[i] = float((s[i] - mean[k]) / std::sqrt(double(var[k]) + eps) * gamma[k] + beta[k]);
      }
  }
}

std::vector<Param> BatchNorm::params() {
  return {{"gamma", {c_}, &gamma}, {"beta", {c_}, &beta}, {"mean", {c_}, &mean}, {"var", {c_}, &var}};
}

Json BatchNorm::attrs() const {
  Json a = Json::object();
  a["channels"] = c_;
  a["eps"] = double(eps);
  return a;
}

}  // namespace eb
