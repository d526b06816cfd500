#include "core/layers/fully_connected.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>

#include "core/layers/conv2d.h"
#include "kernels/cache.h"

namespace eb {

FullyConnected::FullyConnected(long in, long out, Activation act) : in_(in), out_(out), act_(act) {
  if (in <= 0 || out <= 0 || in > (1L << 28) || out > (1L << 20) || in * out > (1L << 31))
    throw std::invalid_argument("fully_connected: invalid size");
  b_.assign(size_t(out), 0.0f);
}

std::vector<float>& FullyConnected::source() {
  if (released_) throw std::logic_error("fully_connected: weights were released after packing");
  if (src_first_ != 0 || long(w_.size()) != in_ * out_) w_.assign(size_t(in_ * out_), 0.0f);
  src_first_ = 0;
  return w_;
}

float* FullyConnected::source_rows(RowRange r) {
  if (released_) throw std::logic_error("fully_connected: weights were released after packing");
  r = r.clip(int(out_));
  w_.assign(size_t(r.size()) * size_t(in_), 0.0f);
  src_first_ = r.begin;
  return w_.data();
}

// A folded BatchNorm scales whole rows and the bias together: such a layer loads whole.
RowRange FullyConnected::load_range(RowRange channels) const {
  if (channels.empty() || !pending_.empty() || !applied_.empty()) return {};
  const int nr = int(kernels::active().gemm_nr);
  const auto old = std::atomic_load(&packed_);
  if (old) channels = channels.unite({old->first, old->first + int(old->b.n)});
  return RowRange{channels.begin / nr * nr, (channels.end + nr - 1) / nr * nr}.clip(int(out_));
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
  source();
  for (const PendingFold& f : pending_) fold_batchnorm_rows(w_, b_, f.gamma, f.beta, f.mean, f.var, f.eps);
  auto p = std::make_shared<Packed>();
  p->b = kernels::pack_b_transposed(w_.data(), size_t(in_), size_t(out_), b_.data());
  std::atomic_store(&packed_, std::shared_ptr<const Packed>(p));
  applied_.insert(applied_.end(), pending_.begin(), pending_.end());
  pending_.clear();
}

// gemv's panels are [panel][in][nr], panel p holding outputs [p * nr, (p + 1) * nr): the same
// bytes as the source rows of those outputs ([out][in]). Where whole panels cover the rows held
// (w_: rows `r`, the whole layer or a device's slice), each panel is transposed where it lies
// (one panel of scratch), so the layer never exists twice: for VGG-16's fc6 that is 411 MB at
// load, and a third of it on each of three devices.
kernels::PackedB FullyConnected::packed_in_place(RowRange r) {
  const size_t nr = kernels::active().gemm_nr, k = size_t(in_), n = size_t(r.size());
  auto holder = std::make_shared<std::vector<float>>(std::move(w_));
  w_.clear();
  std::vector<float> panel(nr * k);
  for (size_t p = 0; p < n / nr; ++p) {
    float* dst = holder->data() + p * nr * k;
    std::copy(dst, dst + nr * k, panel.begin());
    for (size_t kk = 0; kk < k; ++kk)
      for (size_t j = 0; j < nr; ++j) dst[kk * nr + j] = panel[j * k + kk];
  }
  kernels::PackedB b;
  b.k = k, b.n = n, b.nr = nr, b.panels = n / nr, b.isa = kernels::active().isa;
  b.w = std::shared_ptr<float>(holder, holder->data());
  b.bias = std::shared_ptr<float>(aligned_alloc_floats(n), AlignedFree());
  std::copy(b_.begin() + r.begin, b_.begin() + r.end, b.bias.get());
  return b;
}

// Whole panels around `channels`, so each output sits in the lane it has in the whole layer.
kernels::PackedB FullyConnected::packed_slice(RowRange channels) const {
  const int nr = int(kernels::active().gemm_nr);
  const int c0 = channels.begin / nr * nr, c1 = std::min(int(out_), (channels.end + nr - 1) / nr * nr);
  return kernels::pack_b_transposed(w_.data() + size_t(c0 - src_first_) * size_t(in_), size_t(in_),
                                    size_t(c1 - c0), b_.data() + c0);
}

void FullyConnected::pack_and_release(RowRange channels) {
  channels = load_range(channels);  // a worker may serve two hosts' plans: slices add up
  const bool whole = channels.empty() || (channels.begin <= 0 && channels.end >= out_);
  const int nrows = int(w_.size() / size_t(in_));
  if (whole || src_first_ > channels.begin || src_first_ + nrows < channels.end) source();
  if (!pending_.empty() && src_first_ != 0)
    throw std::logic_error("fully_connected: a folded BatchNorm needs the whole layer");
  for (const PendingFold& f : pending_) fold_batchnorm_rows(w_, b_, f.gamma, f.beta, f.mean, f.var, f.eps);
  const size_t nr = kernels::active().gemm_nr;
  auto p = std::make_shared<Packed>();
  const RowRange want = whole ? RowRange{0, int(out_)} : channels;  // whole panels (load_range)
  if (packs_in_place(want) && src_first_ == want.begin && size_t(want.size()) * size_t(in_) == w_.size()) {
    p->b = packed_in_place(want);
    p->first = want.begin;
  } else if (!whole) {
    p->b = packed_slice(channels);
    p->first = channels.begin / int(nr) * int(nr);
  } else {
    p->b = kernels::pack_b_transposed(w_.data(), size_t(in_), size_t(out_), b_.data());
  }
  std::atomic_store(&packed_, std::shared_ptr<const Packed>(p));
  applied_.insert(applied_.end(), pending_.begin(), pending_.end());  // only once packed
  pending_.clear();
  std::vector<float>().swap(w_);
  src_first_ = 0;
  released_ = true;
}

void FullyConnected::reopen() { released_ = false; }

// The next load fills the rows and the bias afresh, so the folds applied to them are pending again.
void FullyConnected::unload() {
  std::atomic_store(&packed_, std::shared_ptr<const Packed>());
  std::vector<float>().swap(w_);
  src_first_ = 0;
  released_ = false;
  pending_.insert(pending_.begin(), applied_.begin(), applied_.end());  // nothing loaded: none
  applied_.clear();
}

RowRange FullyConnected::loaded_channels() const {
  const auto p = std::atomic_load(&packed_);
  return p ? RowRange{p->first, p->first + int(p->b.n)} : RowRange{};
}

bool FullyConnected::ready(RowRange channels) const {
  const auto p = std::atomic_load(&packed_);
  if (!p) return false;
  if (channels.empty()) return p->first == 0 && long(p->b.n) == out_;
  return p->first <= channels.begin && channels.end <= p->first + int(p->b.n);
}

size_t FullyConnected::packed_bytes(RowRange channels) const {
  const size_t nr = kernels::active().gemm_nr;
  if (channels.empty()) channels = {0, int(out_)};
  const size_t c0 = size_t(channels.begin) / nr * nr, c1 = (size_t(channels.end) + nr - 1) / nr * nr;
  return ((c1 - c0) * size_t(in_ + 1) + b_.size()) * sizeof(float);
}

size_t FullyConnected::source_bytes(RowRange channels) const {
  const int nr = int(kernels::active().gemm_nr);
  const RowRange r = channels.empty() ? RowRange{0, int(out_)}
                                      : RowRange{channels.begin / nr * nr, (channels.end + nr - 1) / nr * nr}.clip(int(out_));
  return size_t((packs_in_place(r) ? long(nr) : long(r.size())) * in_ + out_) * sizeof(float);
}

size_t FullyConnected::weight_bytes() const {
  const auto p = std::atomic_load(&packed_);
  const size_t packed = p ? p->b.weight_floats() + p->b.bias_floats() : 0;
  return (w_.size() + b_.size() + packed) * sizeof(float);
}

void FullyConnected::forward(const std::vector<const Band*>& in, Band& out) const {
  if (!ready()) throw std::logic_error("fully_connected: the whole layer is not loaded");
  const kernels::MinMax mm = activation_range(act_);
  kernels::gemv(in.at(0)->row(0), std::atomic_load(&packed_)->b, out.t.data(),
                act_ == Activation::none ? nullptr : &mm);
}

bool FullyConnected::forward_channels(const Band& in, int c0, int c1, float* out) const {
  const auto p = std::atomic_load(&packed_);
  if (!p || p->first > c0 || c1 > p->first + int(p->b.n))
    throw std::logic_error("fully_connected: channels [" + std::to_string(c0) + ", " +
                           std::to_string(c1) + ") are not loaded on this device");
  const kernels::MinMax mm = activation_range(act_);
  kernels::gemv_range(in.row(0), p->b, size_t(c0 - p->first), size_t(c1 - p->first), out,
                      act_ == Activation::none ? nullptr : &mm);
  return true;
}

void FullyConnected::evict_weights() const {
  const auto p = std::atomic_load(&packed_);
  if (!p) return;
  kernels::evict_from_caches(p->b);
}

std::vector<Param> FullyConnected::params() {
  std::vector<Param> ps = param_shapes();
  ps[0].data = &source();
  ps[1].data = &b_;
  return ps;
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
  if (w_.empty()) {  // not loaded yet: folded when it is
    pending_.push_back({gamma, beta, mean, var, eps});
    return true;
  }
  fold_batchnorm_rows(w_, b_, gamma, beta, mean, var, eps);
  return true;
}

bool FullyConnected::fuse_activation(Activation a) {
  if (act_ != Activation::none) return false;
  act_ = a;
  return true;
}

}  // namespace eb
