#include "kernels/gemm.h"
#include "kernels/cache.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <vector>

namespace eb::kernels {

namespace {
constexpr size_t kKC = 256;  // k block: an MR x KC slice of A and a KC x NR panel stay in L1/L2

std::shared_ptr<float> alloc(size_t n) {
  const size_t bytes = std::max<size_t>(64, (n * sizeof(float) + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { std::free(q); });
}

template <class Get>
PackedB pack(size_t k, size_t n, const float* bias, Get get) {
  const KernelTable& kt = active();
  PackedB p;
  p.k = k;
  p.n = n;
  p.nr = kt.gemm_nr;
  p.isa = kt.isa;
  p.panels = (n + p.nr - 1) / p.nr;
  p.w = alloc(std::max<size_t>(1, p.panels * k * p.nr));
  p.bias = alloc(p.panels * p.nr);
  for (size_t pi = 0; pi < p.panels; ++pi) {
    float* dst = p.w.get() + pi * k * p.nr;
    for (size_t kk = 0; kk < k; ++kk)
      for (size_t j = 0; j < p.nr; ++j) {
        size_t col = pi * p.nr + j;
        dst[kk * p.nr + j] = col < n ? get(kk, col) : 0.0f;
      }
  }
  if (bias) std::copy(bias, bias + n, p.bias.get());
  return p;
}

void check_isa(const PackedB& b) {
  if (b.isa != active().isa)
    throw std::logic_error("weights were packed for another ISA; repack after changing it");
}

thread_local std::vector<float> t_scratch;
}  // namespace

void evict_from_caches(const PackedB& b) {
  evict_from_caches(b.w.get(), b.weight_floats() * sizeof(float));
  evict_from_caches(b.bias.get(), b.bias_floats() * sizeof(float));
}

PackedB pack_b(const float* b, size_t k, size_t n, size_t ldb, const float* bias) {
  return pack(k, n, bias, [&](size_t kk, size_t col) { return b[kk * ldb + col]; });
}

PackedB pack_b_transposed(const float* bt, size_t k, size_t n, const float* bias) {
  return pack(k, n, bias, [&](size_t kk, size_t col) { return bt[col * k + kk]; });
}

size_t row_block(size_t m, size_t mr) {
  const size_t tiles = (m + mr - 1) / mr;
  const size_t blocks = std::max<size_t>(1, (tiles + 4) / 8);
  return (tiles + blocks - 1) / blocks * mr;
}

size_t next_slice_lines(size_t k, size_t nr, size_t k0, bool more_panels) {
  const size_t kc = std::min(kKC, k - k0);
  const size_t next_kc =
      k0 + kc < k ? std::min(kKC, k - k0 - kc) : more_panels ? std::min(kKC, k) : 0;
  return (next_kc * nr * sizeof(float) + 63) / 64;
}

TilePrefetch tile_prefetch(size_t i, size_t mc, size_t mr, bool slice_in_cache, size_t next_lines) {
  if (!slice_in_cache && i == 0) return {true, 0, 0};
  const size_t skip = slice_in_cache ? 0 : std::min(mr, mc);  // the rows of the tile that streams
  const size_t rows = mc - skip, r0 = i - skip, r1 = std::min(i + mr, mc) - skip;
  return {false, next_lines * r0 / rows, next_lines * r1 / rows};
}

void gemm_panels(size_t m, const ASource& a, const PackedB& b, size_t p0, size_t p1, float* c,
                 size_t ldc, const MinMax* mm) {
  const KernelTable& kt = active();
  const size_t mr = kt.gemm_mr, nr = b.nr, k = b.k;
  const size_t mc_max = row_block(m, mr);
  if (t_scratch.size() < mc_max * k) t_scratch.resize(mc_max * k);
  for (size_t m0 = 0; m0 < m; m0 += mc_max) {
    const size_t mc = std::min(mc_max, m - m0);
    size_t a_stride = 0;
    const float* at = a.rows(m0, mc, t_scratch.data(), &a_stride);
    float* ct = c + m0 * ldc;
    if (k == 0) {  // degenerate: C = bias
      for (size_t p = p0; p < p1; ++p)
        for (size_t i = 0; i < mc; i += mr) {
          const size_t rows = std::min(mr, mc - i);
          kt.gemm_rows[rows](rows, std::min(nr, b.n - p * nr), 0, at, a_stride, b.panel(p),
                             ct + i * ldc + p * nr, ldc, b.panel_bias(p), mm);
        }
      continue;
    }
    // Panel by panel, each panel's k blocks in order: the weights are then read front to back
    // (panels are contiguous), so the slice after this one starts where it ends, which is what
    // the kernels' prefetches assume. The sums per output still run over k in the same order.
    // Only a block's first slice comes from memory under a waiting tile; while a slice is
    // computed, its tiles fetch the next (tile_prefetch).
    for (size_t p = p0; p < p1; ++p) {
      const size_t nc = std::min(nr, b.n - p * nr);
      for (size_t k0 = 0; k0 < k; k0 += kKC) {
        const size_t kc = std::min(kKC, k - k0);
        const bool first = k0 == 0, last = k0 + kc == k;
        const float* w = b.panel(p) + k0 * nr;
        const size_t next_lines = next_slice_lines(k, nr, k0, p + 1 < p1);
        const bool in_cache = mc > mr && !(p == p0 && first);
        for (size_t i = 0; i < mc; i += mr) {
          const size_t rows = std::min(mr, mc - i);
          const float* ai = at + i * a_stride + k0;
          float* ci = ct + i * ldc + p * nr;
          const float* bias = first ? b.panel_bias(p) : nullptr;
          const MinMax* clamp = last ? mm : nullptr;
          const TilePrefetch pf = tile_prefetch(i, mc, mr, in_cache, next_lines);
          if (pf.own)
            kt.gemm_rows_stream[rows](rows, nc, kc, ai, a_stride, w, ci, ldc, bias, clamp);
          else
            kt.gemm_rows_prefetching[rows](rows, nc, kc, ai, a_stride, w, ci, ldc, bias, clamp,
                                           w + kc * nr + pf.first * (64 / sizeof(float)),
                                           pf.end - pf.first);
        }
      }
    }
  }
}

void gemm(size_t m, const ASource& a, const PackedB& b, float* c, size_t ldc, const MinMax* mm,
          bool parallel) {
  check_isa(b);
  if (m == 0 || b.n == 0) return;
  const size_t mt_rows = row_block(m, active().gemm_mr);
  const size_t m_tiles = (m + mt_rows - 1) / mt_rows;
  const int threads = parallel ? omp_get_max_threads() : 1;
  // Split N too when there are too few row tiles to feed every thread (late, small layers).
  size_t n_split = 1;
  while (m_tiles * n_split < size_t(threads) * 4 && n_split * 2 <= b.panels) n_split *= 2;
  const size_t per = (b.panels + n_split - 1) / n_split;
  const long jobs = long(m_tiles * n_split);
#pragma omp parallel for schedule(dynamic, 1) if (parallel && jobs > 1)
  for (long j = 0; j < jobs; ++j) {
    const size_t mt = size_t(j) / n_split, nt = size_t(j) % n_split;
    const size_t m0 = mt * mt_rows, mc = std::min(mt_rows, m - m0);
    const size_t p0 = nt * per, p1 = std::min(b.panels, p0 + per);
    if (p0 >= p1) continue;
    struct Offset : ASource {
      const ASource& base;
      size_t off;
      Offset(const ASource& b, size_t o) : base(b), off(o) {}
      const float* rows(size_t r0, size_t n, float* s, size_t* st) const override {
        return base.rows(off + r0, n, s, st);
      }
    } sub(a, m0);
    gemm_panels(mc, sub, b, p0, p1, c + m0 * ldc, ldc, mm);
  }
}

void gemv(const float* x, const PackedB& b, float* y, const MinMax* mm) {
  check_isa(b);
  const KernelTable& kt = active();
  const long panels = long(b.panels);
#pragma omp parallel for schedule(static)
  for (long p = 0; p < panels; ++p) {
    alignas(64) float tmp[64];
    kt.gemv_panel(b.k, x, b.panel(size_t(p)), b.panel_bias(size_t(p)), tmp);
    const size_t n0 = size_t(p) * b.nr, nc = std::min(b.nr, b.n - n0);
    for (size_t j = 0; j < nc; ++j)
      y[n0 + j] = mm ? std::min(std::max(tmp[j], mm->lo), mm->hi) : tmp[j];
  }
}

void gemv_range(const float* x, const PackedB& b, size_t n0, size_t n1, float* y,
                const MinMax* mm) {
  check_isa(b);
  if (n0 > n1 || n1 > b.n) throw std::out_of_range("gemv_range: outputs outside the layer");
  const KernelTable& kt = active();
  const long p0 = long(n0 / b.nr), p1 = long((n1 + b.nr - 1) / b.nr);
#pragma omp parallel for schedule(static)
  for (long p = p0; p < p1; ++p) {
    alignas(64) float tmp[64];
    kt.gemv_panel(b.k, x, b.panel(size_t(p)), b.panel_bias(size_t(p)), tmp);
    const size_t first = std::max(size_t(p) * b.nr, n0), end = std::min(size_t(p + 1) * b.nr, n1);
    for (size_t j = first; j < end; ++j) {
      const float v = tmp[j - size_t(p) * b.nr];
      y[j - n0] = mm ? std::min(std::max(v, mm->lo), mm->hi) : v;
    }
  }
}

}  // namespace eb::kernels
