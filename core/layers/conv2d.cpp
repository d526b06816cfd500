#include "core/layers/conv2d.h"
#include "kernels/cache.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

namespace eb {

kernels::MinMax activation_range(Activation a) {
  switch (a) {
    case Activation::relu: return {0.0f, INFINITY};
    case Activation::relu6: return {0.0f, 6.0f};
    case Activation::none: break;
  }
  return {-INFINITY, INFINITY};
}

Conv2D::Conv2D(const Conv2DParams& p) : p_(p) {
  if (p.cin <= 0 || p.cout <= 0 || p.kh <= 0 || p.kw <= 0 || p.sh <= 0 || p.sw <= 0 ||
      p.pad_t < 0 || p.pad_l < 0 || p.pad_b < 0 || p.pad_r < 0 || p.kh > 64 || p.kw > 64 ||
      p.cin > (1 << 16) || p.cout > (1 << 16))
    throw std::invalid_argument("conv2d: invalid parameters");
  if (p.depthwise && p.cin != p.cout)
    throw std::invalid_argument("conv2d: depthwise needs cin == cout");
  if (p.depthwise && p.groups != 1 && p.groups != p.cin)
    throw std::invalid_argument("conv2d: depthwise needs groups == channels");
  if (p.depthwise) p_.groups = p.cin;
  if (p_.groups < 1 || p.cin % p_.groups != 0 || p.cout % p_.groups != 0)
    throw std::invalid_argument("conv2d: groups " + std::to_string(p.groups) +
                                " must divide cin " + std::to_string(p.cin) + " and cout " +
                                std::to_string(p.cout));
  b_.assign(size_t(p.cout), 0.0f);  // w_: on first use (source())
}

std::vector<float>& Conv2D::source() {
  if (released_) throw std::logic_error("conv2d: weights were released after packing");
  if (w_.empty()) w_.assign(size_t(p_.cout * p_.kh * p_.kw * cin_per_group()), 0.0f);
  return w_;
}

Shape Conv2D::configure(const std::vector<Shape>& in) {
  if (in.size() != 1) throw std::invalid_argument("conv2d takes one input");
  if (in[0].c != p_.cin)
    throw std::invalid_argument("conv2d: input has " + std::to_string(in[0].c) +
                                " channels, layer expects " + std::to_string(p_.cin));
  long oh = (in[0].h + p_.pad_t + p_.pad_b - p_.kh) / p_.sh + 1;
  long ow = (in[0].w + p_.pad_l + p_.pad_r - p_.kw) / p_.sw + 1;
  if (oh <= 0 || ow <= 0) throw std::invalid_argument("conv2d: input " + in[0].str() + " too small");
  in_shapes_ = in;
  out_shape_ = Shape{int(oh), int(ow), int(p_.cout)};
  return out_shape_;
}

RowRange Conv2D::input_rows(RowRange out, int) const {
  if (out.empty()) return {0, 0};
  long r0 = out.begin, r1 = out.end;
  // Winograd tiles are aligned to absolute rows: the band reads whole tiles so its values match
  // the full-image computation bit for bit.
  if (winograd_tile() > 1) kernels::winograd_tile_rows(winograd_tile(), out.begin, out.end, &r0, &r1);
  return {int(r0 * p_.sh - p_.pad_t), int((r1 - 1) * p_.sh - p_.pad_t + p_.kh)};
}

double Conv2D::flops(RowRange out) const {
  double per_out = 2.0 * p_.kh * p_.kw * cin_per_group();
  return per_out * out.size() * out_shape_.w * p_.cout;
}

kernels::ConvGeom Conv2D::geom() const {
  const Shape& s = in_shapes_.at(0);
  return {s.h, s.w, p_.cin, p_.cout, p_.kh, p_.kw, p_.sh, p_.sw,
          p_.pad_t, p_.pad_l, out_shape_.h, out_shape_.w};
}

// F(6x6) multiplies 64 transform positions per 36 outputs against F(4x4)'s 36 per 16 (21%
// fewer), but it pads a map to whole 6x6 tiles and its 8-point transforms and 64 weight
// matrices cost more per tile. On VGG-16 (one Zen 5 core, AVX-512 transforms) it won on the
// 224x224 and 112x112 maps, where its padded positions are 82% of F(4x4)'s, and lost 3-8% on
// the 56x56 and 28x28 ones, at 91%: so F(6x6) where its positions are at most 85% of F(4x4)'s.
// Maps of at least 16 tile rows only: a cluster splits a map into bands of whole tiles, and on
// VGG-16 at 64x64 (11 tiles of 6 rows) the planner then ran a batch of two images whole rather
// than split. Measured on AVX-512 and AVX2 (`--isa avx2`: conv1_2 18.2 -> 14.7 ms), not on
// NEON; the choice must not depend on the ISA, since every device of a cluster has to cut the
// same tiles.
bool Conv2D::f63_pays(long h, long w) {
  auto positions = [h, w](long m) {
    return (h + m - 1) / m * ((w + m - 1) / m) * (m + 2) * (m + 2);
  };
  return h >= 16 * 6 && positions(6) * 100 <= positions(4) * 85;
}

void Conv2D::choose_kernels() {
  const bool grouped = !p_.depthwise && p_.groups > 1;
  if (has_forced_) {
    algo_ = forced_;
  } else if (grouped) {
    algo_ = Algo::grouped;
  } else if (p_.depthwise) {
    algo_ = (p_.kh == 3 && p_.kw == 3) ? Algo::depthwise3x3 : Algo::depthwise_generic;
  } else if (p_.kh == 1 && p_.kw == 1 && p_.sh == 1 && p_.sw == 1 && p_.pad_t == 0 &&
             p_.pad_l == 0 && p_.pad_b == 0 && p_.pad_r == 0) {
    algo_ = Algo::gemm1x1;
  } else if (p_.kh == 3 && p_.kw == 3 && p_.sh == 1 && p_.sw == 1 && p_.cin >= 8 && p_.cout >= 8) {
    // 4x fewer multiplies than direct at F(4x4); tiny cin stays im2col. Small maps (VGG-16's
    // conv5, 14x14) take F(2x2): F(4x4) pads them to 16 rows and columns, and its 38 MB of
    // matrices per 512x512 layer, read once a call, dominate the thin bands a cluster gives
    // each device. Not maps of 8 rows or fewer: untried on a board, and the planner's tests on
    // VGG-16 at 64x64 (8x8 and 4x4 maps) then gave a 50 Mbit/s worker as many rows as the rest.
    // Large maps take F(6x6) where it pays (f63_pays).
    const bool small = out_shape_.h > 8 && long(out_shape_.h) * out_shape_.w <= kSmallWinogradMap;
    if (small)
      algo_ = Algo::winograd_f23;
    else
      algo_ = f63_pays(out_shape_.h, out_shape_.w) ? Algo::winograd_f63 : Algo::winograd_f43;
  } else {
    algo_ = Algo::im2col;
  }
  if (grouped != (algo_ == Algo::grouped))
    throw std::logic_error("the grouped algorithm is for, and only for, grouped convolutions");
}

void Conv2D::prepare() {
  if (released_) throw std::logic_error("conv2d: weights were released after packing");
  choose_kernels();
  pack();
}

// Frees w_ unless the kernel reads it (depthwise_generic); b_ stays (dwconv3x3 reads it).
void Conv2D::pack_and_release(RowRange) {
  prepare();
  if (algo_ != Algo::depthwise_generic) std::vector<float>().swap(w_);
  released_ = algo_ != Algo::depthwise_generic;
}

// The next load fills w_ and b_ afresh (the weight source's values), so the folds applied to
// them are pending again.
void Conv2D::unload() {
  packed_ = {};
  group_packed_.clear();
  wino_ = {};
  std::vector<float>().swap(dw9_);
  std::vector<float>().swap(w_);
  pending_.insert(pending_.begin(), applied_.begin(), applied_.end());  // nothing loaded: none
  applied_.clear();
  packed_ready_ = released_ = false;
}

template <class Vec, class Packed>
void Conv2D::for_each_weight(Vec vec, Packed packed) const {
  for (const std::vector<float>* v : {&w_, &b_, &dw9_, &wino_.bias}) vec(*v);
  if (packed_.w) packed(packed_);
  for (const auto& u : wino_.u) packed(u);
  for (const auto& gp : group_packed_) packed(gp);
}

// Everything weight_bytes() counts. A profile repeats a layer: timed warm, much of VGG-16's conv4
// Winograd matrices (38 MB) stayed in this host's L3, which a Pi 4 (1 MB L2, no L3) reads from
// memory every call, and thin bands cost up to 2.7x their profile in a cluster
// (docs/PERFORMANCE.md).
void Conv2D::evict_weights() const {
  for_each_weight(
      [](const std::vector<float>& v) { kernels::evict_from_caches(v.data(), v.size() * sizeof(float)); },
      [](const kernels::PackedB& b) { kernels::evict_from_caches(b); });
}

size_t Conv2D::weight_bytes() const {
  size_t n = 0;
  for_each_weight([&n](const std::vector<float>& v) { n += v.size(); },
                  [&n](const kernels::PackedB& b) { n += b.weight_floats() + b.bias_floats(); });
  return n * sizeof(float);
}

// Mirrors pack(): panels of nr outputs, each k deep plus its bias.
size_t Conv2D::packed_bytes(RowRange) const {
  const size_t nr = kernels::active().gemm_nr, kdim = size_t(p_.kh * p_.kw * cin_per_group());
  auto panels = [nr](size_t k, size_t n) { return (n + nr - 1) / nr * nr * (k + 1); };
  size_t n = b_.size();
  switch (algo_) {
    case Algo::winograd_f63:
    case Algo::winograd_f43:
    case Algo::winograd_f23: {
      const size_t a = size_t(winograd_tile() + 2);
      n += a * a * panels(size_t(p_.cin), size_t(p_.cout)) + size_t(p_.cout);
      break;
    }
    case Algo::depthwise3x3: n += 9 * size_t(p_.cout); break;
    case Algo::depthwise_generic: n += size_t(p_.cout * p_.kh * p_.kw); break;
    case Algo::grouped: n += size_t(p_.groups) * panels(kdim, size_t(p_.cout / p_.groups)); break;
    case Algo::gemm1x1:
    case Algo::im2col: n += panels(kdim, size_t(p_.cout)); break;
  }
  return n * sizeof(float);
}

void Conv2D::pack() {
  using kernels::pack_b_transposed;
  source();
  for (const PendingFold& f : pending_) fold_batchnorm_rows(w_, b_, f.gamma, f.beta, f.mean, f.var, f.eps);
  const long kdim = p_.kh * p_.kw * cin_per_group();
  packed_ = {};
  group_packed_.clear();
  wino_ = {};
  dw9_.clear();
  switch (algo_) {
    case Algo::winograd_f63:
    case Algo::winograd_f43:
    case Algo::winograd_f23:
      if (p_.kh != 3 || p_.kw != 3 || p_.sh != 1 || p_.sw != 1 || p_.depthwise)
        throw std::logic_error("Winograd needs a dense 3x3 stride-1 conv");
      wino_ = kernels::pack_winograd(winograd_tile(), w_.data(), p_.cout, p_.cin, b_.data());
      break;
    case Algo::depthwise3x3:
      if (p_.kh != 3 || p_.kw != 3 || !p_.depthwise)
        throw std::logic_error("depthwise3x3 needs a 3x3 depthwise conv");
      dw9_.resize(size_t(9 * p_.cout));
      for (long c = 0; c < p_.cout; ++c)
        for (int i = 0; i < 9; ++i) dw9_[size_t(i * p_.cout + c)] = w_[size_t(c * 9 + i)];
      break;
    case Algo::depthwise_generic:
      if (!p_.depthwise) throw std::logic_error("depthwise_generic needs a depthwise conv");
      break;
    case Algo::grouped: {
      const long cog = p_.cout / p_.groups;  // each group's output channels are a weight run
      for (long gi = 0; gi < p_.groups; ++gi)
        group_packed_.push_back(pack_b_transposed(w_.data() + gi * cog * kdim, size_t(kdim),
                                                  size_t(cog), b_.data() + gi * cog));
      break;
    }
    case Algo::gemm1x1:
      if (p_.kh != 1 || p_.kw != 1 || p_.sh != 1 || p_.sw != 1 || p_.pad_t || p_.pad_l ||
          p_.depthwise)
        throw std::logic_error("gemm1x1 needs a plain 1x1 conv");
      [[fallthrough]];
    case Algo::im2col:
      if (p_.depthwise) throw std::logic_error("im2col needs a dense conv");
      packed_ = pack_b_transposed(w_.data(), size_t(kdim), size_t(p_.cout), b_.data());
      break;
  }
  // Applied only once packed: a load that fails (out of memory) refills and folds again.
  applied_.insert(applied_.end(), pending_.begin(), pending_.end());
  pending_.clear();
  packed_ready_ = true;
}

void Conv2D::forward(const std::vector<const Band*>& in, Band& out) const {
  check_inputs(in, out);
  if (!packed_ready_) throw std::logic_error("conv2d: weights not loaded (a lazy graph's layer)");
  const kernels::ConvGeom g = geom();
  const Band& src = *in.at(0);
  kernels::InBand ib{src.t.data(), src.row0, src.t.h()};
  kernels::OutBand ob{out.t.data(), out.row0, out.t.h()};
  const kernels::MinMax mm = activation_range(p_.act);
  const kernels::MinMax* mmp = p_.act == Activation::none ? nullptr : &mm;
  switch (algo_) {
    case Algo::winograd_f63:
    case Algo::winograd_f43:
    case Algo::winograd_f23: kernels::conv3x3_winograd(g, ib, ob, wino_, mmp); break;
    case Algo::gemm1x1: kernels::conv_1x1(g, ib, ob, packed_, mmp); break;
    case Algo::im2col: kernels::conv_im2col(g, ib, ob, packed_, mmp); break;
    case Algo::depthwise3x3: kernels::dwconv3x3(g, ib, ob, dw9_.data(), b_.data(), mmp); break;
    case Algo::grouped: forward_grouped(src, out, mmp); break;
    case Algo::depthwise_generic: {
      // Rare shapes (converted models): plain loops, still band-native.
      const size_t rf = size_t(g.in_w * g.cin);
      for (long r = 0; r < ob.rows; ++r)
        for (long ox = 0; ox < g.out_w; ++ox)
          for (long c = 0; c < g.cout; ++c) {
            float acc = b_[size_t(c)];
            for (long ky = 0; ky < g.kh; ++ky) {
              const float* row = ib.row((ob.row0 + r) * g.sh - g.pad_t + ky, g.in_h, rf);
              if (!row) continue;
              for (long kx = 0; kx < g.kw; ++kx) {
                long ix = ox * g.sw - g.pad_l + kx;
                if (ix < 0 || ix >= g.in_w) continue;
                acc += row[ix * g.cin + c] * w_[size_t((c * g.kh + ky) * g.kw + kx)];
              }
            }
            ob.data[(r * g.out_w + ox) * g.cout + c] = std::min(std::max(acc, mm.lo), mm.hi);
          }
      break;
    }
  }
}

// Each group is a dense convolution of a channel slice: gather the slice into a contiguous
// band, run the im2col GEMM on it, scatter the group's outputs into their channels.
void Conv2D::forward_grouped(const Band& src, Band& out, const kernels::MinMax* mm) const {
  const long cpg = cin_per_group(), cog = p_.cout / p_.groups;
  kernels::ConvGeom g = geom();
  g.cin = cpg;
  g.cout = cog;
  const size_t pixels_in = size_t(src.t.h()) * size_t(g.in_w);
  const size_t pixels_out = size_t(out.t.h()) * size_t(g.out_w);
  Tensor slice = Tensor::uninitialized({src.t.h(), int(g.in_w), int(cpg)});
  Tensor part = Tensor::uninitialized({out.t.h(), int(g.out_w), int(cog)});
  for (long gi = 0; gi < p_.groups; ++gi) {
    for (size_t px = 0; px < pixels_in; ++px)
      std::memcpy(slice.data() + px * size_t(cpg), src.t.data() + px * size_t(p_.cin) + gi * cpg,
                  size_t(cpg) * sizeof(float));
    kernels::conv_im2col(g, {slice.data(), src.row0, src.t.h()}, {part.data(), out.row0, out.t.h()},
                         group_packed_[size_t(gi)], mm);
    for (size_t px = 0; px < pixels_out; ++px)
      std::memcpy(out.t.data() + px * size_t(p_.cout) + gi * cog, part.data() + px * size_t(cog),
                  size_t(cog) * sizeof(float));
  }
}

std::vector<Param> Conv2D::param_shapes() {
  return {{"weight", {p_.cout, p_.kh, p_.kw, cin_per_group()}, nullptr}, {"bias", {p_.cout}, nullptr}};
}

std::vector<Param> Conv2D::params() {
  std::vector<Param> ps = param_shapes();
  ps[0].data = &source();
  ps[1].data = &b_;
  return ps;
}

Json Conv2D::attrs() const {
  Json a = Json::object();
  a["cin"] = p_.cin;
  a["cout"] = p_.cout;
  a["kernel"] = Json(Json::Array{p_.kh, p_.kw});
  a["stride"] = Json(Json::Array{p_.sh, p_.sw});
  a["pad"] = Json(Json::Array{p_.pad_t, p_.pad_l, p_.pad_b, p_.pad_r});
  a["depthwise"] = p_.depthwise;
  // Only where it says something: dense and depthwise files stay byte-identical to before.
  if (!p_.depthwise && p_.groups > 1) a["groups"] = p_.groups;
  a["activation"] = activation_name(p_.act);
  return a;
}

bool Conv2D::fuse_activation(Activation a) {
  if (p_.act != Activation::none) return false;
  p_.act = a;
  return true;
}

bool Conv2D::fold_batchnorm(const std::vector<float>& gamma, const std::vector<float>& beta,
                            const std::vector<float>& mean, const std::vector<float>& var,
                            float eps) {
  if (p_.act != Activation::none || long(gamma.size()) != p_.cout) return false;
  if (w_.empty()) {  // not loaded yet: folded when it is (pack())
    pending_.push_back({gamma, beta, mean, var, eps});
    return true;
  }
  fold_batchnorm_rows(w_, b_, gamma, beta, mean, var, eps);
  return true;
}

}  // namespace eb
