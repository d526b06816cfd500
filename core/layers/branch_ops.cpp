#include "core/layers/branch_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace eb {

// --- Concat ----------------------------------------------------------------------------------

Concat::Concat(int inputs) : n_(inputs) {
  // DenseNet concatenates every earlier layer of a block: dozens of inputs, never thousands.
  if (inputs < 2 || inputs > 1024)
    throw std::invalid_argument("concat: needs 2 to 1024 inputs, got " + std::to_string(inputs));
}

Shape Concat::configure(const std::vector<Shape>& in) {
  if (int(in.size()) != n_) throw std::invalid_argument("concat: wrong number of inputs");
  long c = 0;
  for (const Shape& s : in) {
    if (s.h != in[0].h || s.w != in[0].w)
      throw std::invalid_argument("concat: inputs " + in[0].str() + " and " + s.str() +
                                  " differ in height or width");
    c += s.c;
  }
  if (c > (1L << 20)) throw std::invalid_argument("concat: too many channels");
  in_shapes_ = in;
  out_shape_ = {in[0].h, in[0].w, int(c)};
  return out_shape_;
}

void Concat::forward(const std::vector<const Band*>& in, Band& out) const {
  check_inputs(in, out);
  const size_t w = size_t(out_shape_.w), oc = size_t(out_shape_.c);
  for (int y = out.row0; y < out.rows().end; ++y) {
    float* dst = out.row(y);
    size_t c0 = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      const size_t ic = size_t(in_shapes_[i].c);
      const float* src = in[i]->row(y);
      for (size_t x = 0; x < w; ++x) std::memcpy(dst + x * oc + c0, src + x * ic, ic * sizeof(float));
      c0 += ic;
    }
  }
}

Json Concat::attrs() const {
  Json a = Json::object();
  a["inputs"] = long(n_);
  return a;
}

// --- Mul -------------------------------------------------------------------------------------

Shape Mul::configure(const std::vector<Shape>& in) {
  if (in.size() != 2) throw std::invalid_argument("mul takes two inputs");
  broadcast_ = in[1] != in[0] && in[1].h == 1 && in[1].w == 1 && in[1].c == in[0].c;
  if (in[1] != in[0] && !broadcast_)
    throw std::invalid_argument("mul: shapes " + in[0].str() + " and " + in[1].str() +
                                " are neither equal nor H x W x C by 1 x 1 x C");
  in_shapes_ = in;
  out_shape_ = in[0];
  return out_shape_;
}

RowRange Mul::input_rows(RowRange out, int i) const {
  if (i == 1 && broadcast_) return out.empty() ? RowRange{0, 0} : RowRange{0, 1};
  return out;
}

void Mul::forward(const std::vector<const Band*>& in, Band& out) const {
  check_inputs(in, out);
  const size_t w = size_t(out_shape_.w), c = size_t(out_shape_.c), rf = w * c;
  for (int y = out.row0; y < out.rows().end; ++y) {
    const float* a = in[0]->row(y);
    float* d = out.row(y);
    if (broadcast_) {
      const float* g = in[1]->row(0);
      for (size_t x = 0; x < w; ++x)
        for (size_t k = 0; k < c; ++k) d[x * c + k] = a[x * c + k] * g[k];
    } else {
      const float* b = in[1]->row(y);
      for (size_t k = 0; k < rf; ++k) d[k] = a[k] * b[k];
    }
  }
}

// --- Unary -----------------------------------------------------------------------------------

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::hard_sigmoid: return "hard_sigmoid";
    case UnaryOp::silu: return "silu";
    case UnaryOp::hard_swish: return "hard_swish";
  }
  return "?";
}

UnaryOp parse_unary(const std::string& s) {
  for (UnaryOp op : {UnaryOp::sigmoid, UnaryOp::hard_sigmoid, UnaryOp::silu, UnaryOp::hard_swish})
    if (s == unary_name(op)) return op;
  throw std::runtime_error("unknown unary operator '" + s + "'");
}

float apply_unary(UnaryOp op, float x, float alpha, float beta) {
  switch (op) {
    case UnaryOp::sigmoid: return 1.0f / (1.0f + std::exp(-x));
    case UnaryOp::hard_sigmoid: return std::min(1.0f, std::max(0.0f, alpha * x + beta));
    case UnaryOp::silu: return x / (1.0f + std::exp(-x));
    case UnaryOp::hard_swish: return x * std::min(1.0f, std::max(0.0f, x / 6.0f + 0.5f));
  }
  return x;
}

Unary::Unary(UnaryOp op, float alpha, float beta) : op_(op), alpha_(alpha), beta_(beta) {
  if (!std::isfinite(alpha) || !std::isfinite(beta))
    throw std::invalid_argument("unary: alpha and beta must be finite");
}

Shape Unary::configure(const std::vector<Shape>& in) {
  if (in.size() != 1) throw std::invalid_argument(std::string(unary_name(op_)) + " takes one input");
  in_shapes_ = in;
  out_shape_ = in[0];
  return out_shape_;
}

void Unary::forward(const std::vector<const Band*>& in, Band& out) const {
  check_inputs(in, out);
  const size_t rf = out_shape_.row_size();
  for (int y = out.row0; y < out.rows().end; ++y) {
    const float* s = in[0]->row(y);
    float* d = out.row(y);
    for (size_t i = 0; i < rf; ++i) d[i] = apply_unary(op_, s[i], alpha_, beta_);
  }
}

Json Unary::attrs() const {
  Json a = Json::object();
  a["op"] = unary_name(op_);
  a["alpha"] = double(alpha_);
  a["beta"] = double(beta_);
  return a;
}

std::unique_ptr<Layer> Unary::from_attrs(const Json& a) {
  return std::make_unique<Unary>(parse_unary(a.at("op").string("op")),
                                 float(a.at("alpha").number("alpha")),
                                 float(a.at("beta").number("beta")));
}

// --- ChannelShuffle / SliceChannels ------------------------------------------------------------

ChannelShuffle::ChannelShuffle(long groups) : groups_(groups) {
  if (groups < 1 || groups > (1 << 16))
    throw std::invalid_argument("channel_shuffle: groups must be 1 to 65536");
}

Shape ChannelShuffle::configure(const std::vector<Shape>& in) {
  if (in.size() != 1) throw std::invalid_argument("channel_shuffle takes one input");
  if (in[0].c % groups_ != 0)
    throw std::invalid_argument("channel_shuffle: " + std::to_string(groups_) +
                                " groups do not divide " + std::to_string(in[0].c) + " channels");
  in_shapes_ = in;
  out_shape_ = in[0];
  return out_shape_;
}

void ChannelShuffle::forward(const std::vector<const Band*>& in, Band& out) const {
  check_inputs(in, out);
  const size_t w = size_t(out_shape_.w), c = size_t(out_shape_.c), g = size_t(groups_);
  const size_t per = c / g;
  for (int y = out.row0; y < out.rows().end; ++y) {
    const float* s = in[0]->row(y);
    float* d = out.row(y);
    for (size_t x = 0; x < w; ++x)
      for (size_t i = 0; i < g; ++i)
        for (size_t j = 0; j < per; ++j) d[x * c + j * g + i] = s[x * c + i * per + j];
  }
}

Json ChannelShuffle::attrs() const {
  Json a = Json::object();
  a["groups"] = groups_;
  return a;
}

SliceChannels::SliceChannels(long begin, long end) : begin_(begin), end_(end) {
  if (begin < 0 || end <= begin || end > (1L << 20))
    throw std::invalid_argument("slice_channels: needs 0 <= begin < end");
}

Shape SliceChannels::configure(const std::vector<Shape>& in) {
  if (in.size() != 1) throw std::invalid_argument("slice_channels takes one input");
  if (end_ > in[0].c)
    throw std::invalid_argument("slice_channels: [" + std::to_string(begin_) + ", " +
                                std::to_string(end_) + ") is outside " + std::to_string(in[0].c) +
                                " channels");
  in_shapes_ = in;
  out_shape_ = {in[0].h, in[0].w, int(end_ - begin_)};
  return out_shape_;
}

void SliceChannels::forward(const std::vector<const Band*>& in, Band& out) const {
  check_inputs(in, out);
  const size_t w = size_t(out_shape_.w), ic = size_t(in_shapes_[0].c), oc = size_t(out_shape_.c);
  for (int y = out.row0; y < out.rows().end; ++y) {
    const float* s = in[0]->row(y) + begin_;
    float* d = out.row(y);
    for (size_t x = 0; x < w; ++x) std::memcpy(d + x * oc, s + x * ic, oc * sizeof(float));
  }
}

Json SliceChannels::attrs() const {
  Json a = Json::object();
  a["begin"] = begin_;
  a["end"] = end_;
  return a;
}

// --- ZeroPad ---------------------------------------------------------------------------------

ZeroPad::ZeroPad(long top, long left, long bottom, long right)
    : t_(top), l_(left), b_(bottom), r_(right) {
  for (long p : {top, left, bottom, right})
    if (p < 0 || p > 1024) throw std::invalid_argument("pad: each side must be 0 to 1024");
}

Shape ZeroPad::configure(const std::vector<Shape>& in) {
  if (in.size() != 1) throw std::invalid_argument("pad takes one input");
  in_shapes_ = in;
  out_shape_ = {int(in[0].h + t_ + b_), int(in[0].w + l_ + r_), in[0].c};
  return out_shape_;
}

// Clamped into the input, so that a band lying wholly in the padding asks for an empty range
// at a valid position rather than rows past the end.
RowRange ZeroPad::input_rows(RowRange out, int) const {
  if (out.empty()) return {0, 0};
  const long h = in_shapes_.at(0).h;
  auto clamp = [&](long y) { return int(std::min(std::max(y, 0L), h)); };
  return {clamp(out.begin - t_), clamp(out.end - t_)};
}

void ZeroPad::forward(const std::vector<const Band*>& in, Band& out) const {
  check_inputs(in, out);
  const Shape& s = in_shapes_[0];
  const size_t c = size_t(s.c), left = size_t(l_) * c, body = s.row_size();
  const size_t right = size_t(r_) * c;
  for (int y = out.row0; y < out.rows().end; ++y) {
    float* d = out.row(y);
    const long iy = y - t_;
    if (iy < 0 || iy >= s.h) {
      std::fill(d, d + out_shape_.row_size(), 0.0f);
      continue;
    }
    std::fill(d, d + left, 0.0f);
    std::memcpy(d + left, in[0]->row(int(iy)), body * sizeof(float));
    std::fill(d + left + body, d + left + body + right, 0.0f);
  }
}

Json ZeroPad::attrs() const {
  Json a = Json::object();
  a["pad"] = Json(Json::Array{t_, l_, b_, r_});
  return a;
}

std::unique_ptr<Layer> ZeroPad::from_attrs(const Json& a) {
  const Json& p = a.at("pad");
  if (p.size() != 4) throw std::runtime_error("pad: pad needs 4 values");
  return std::make_unique<ZeroPad>(p[0].integer("pad"), p[1].integer("pad"), p[2].integer("pad"),
                                   p[3].integer("pad"));
}

}  // namespace eb
