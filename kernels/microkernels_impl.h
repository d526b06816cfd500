// Microkernel bodies, written once over simd::Vec and instantiated by one translation unit per
// ISA (kernels/x86/avx512.cpp, kernels/x86/avx2.cpp, kernels/arm/neon.cpp,
// kernels/generic/scalar.cpp). Everything lives in an unnamed namespace so that code compiled with
// different -m flags can never be merged by the linker.
#pragma once
#include <algorithm>
#include <cstring>

#include <type_traits>

#include "kernels/half.h"
#include "kernels/microkernels.h"
#include "kernels/simd.h"
#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace eb::kernels {
namespace {

// How far ahead (in k steps of NR weights) a streaming GEMM kernel prefetches its weights:
// 32 steps (4 KB at NR 32) measured best on conv4/conv5 bands; 8 and 64 were within the noise.
constexpr size_t kPrefetchK = 32;

// fp16 conversions: the hardware's (F16C, AArch64 FCVT) round to nearest even like the scalar
// twin; the scalar table keeps the twin so that tools without those instructions still run it.
template <class Arch>
constexpr bool kHardwareHalf = !std::is_same_v<Arch, simd::scalar_arch>;

template <class Arch>
void f32_to_f16(const float* x, uint16_t* y, size_t n) {
  size_t i = 0;
  if constexpr (kHardwareHalf<Arch>) {
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__aarch64__)
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
#endif
  }
  for (; i < n; ++i) y[i] = float_to_half(x[i]);
}

template <class Arch>
void f16_to_f32(const uint16_t* x, float* y, size_t n) {
  size_t i = 0;
  if constexpr (kHardwareHalf<Arch>) {
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
#elif defined(__aarch64__)
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))));
#endif
  }
  for (; i < n; ++i) y[i] = half_to_float(x[i]);
}

// Which weights a GEMM kernel prefetches as it runs; the arithmetic is the same in all three.
enum class Prefetch {
  none,   // its own slice is in cache
  own,    // its own slice, kPrefetchK steps ahead: the slice comes from memory
  given,  // `lines` lines from `ahead` on, evenly over its k steps (gemm_rows_prefetching)
};

template <class Arch, size_t MR, size_t NV, Prefetch Pf>
inline __attribute__((always_inline)) void gemm_ukernel_body(size_t mr, size_t nc, size_t kc,
                                                             const float* a, size_t a_stride,
                                                             const float* w, float* c,
                                                             size_t c_stride, const float* bias,
                                                             const MinMax* mm, const char* ahead,
                                                             size_t lines) {
  using V = simd::Vec<Arch>;
  using B = typename V::B;
  constexpr size_t W = V::n, NR = NV * W;
  // Rows beyond mr alias the last valid row: computed, never stored (XNNPACK's trick).
  const float* ar[MR];
#pragma GCC unroll 16
  for (size_t r = 0; r < MR; ++r) ar[r] = a + (r < mr ? r : mr - 1) * a_stride;

  B acc[MR][NV];
  if (bias) {
#pragma GCC unroll 4
    for (size_t v = 0; v < NV; ++v) {
      B b = V::load(bias + v * W);
#pragma GCC unroll 16
      for (size_t r = 0; r < MR; ++r) acc[r][v] = b;
    }
  } else {
    alignas(64) float tmp[NR];
#pragma GCC unroll 16
    for (size_t r = 0; r < MR; ++r) {
      const float* src = c + (r < mr ? r : mr - 1) * c_stride;
      if (nc != NR) {
        std::memset(tmp, 0, sizeof(tmp));
        std::memcpy(tmp, src, nc * sizeof(float));
        src = tmp;
      }
#pragma GCC unroll 4
      for (size_t v = 0; v < NV; ++v) acc[r][v] = V::load(src + v * W);
    }
  }

  size_t due = 0;  // given: lines x steps so far, paid in units of kc (one line each)
  for (size_t k = 0; k < kc; ++k) {
    B wv[NV];
    // own: the weights come from memory (the driver's first row tile over a slice nobody
    // fetched). For a thin A (a device's narrow band) this loop is then a stream of packed
    // weights that the hardware prefetcher alone left latency-bound. Prefetching past the
    // slice's end is harmless (prefetches never fault) and reaches the next panel.
    if constexpr (Pf == Prefetch::own) {
      const char* pf = reinterpret_cast<const char*>(w + (k + kPrefetchK) * NR);
#pragma GCC unroll 4
      for (size_t o = 0; o < NR * sizeof(float); o += 64) __builtin_prefetch(pf + o, 0, 3);
    }
    // given: into L2 only (locality 2), so that the next slice does not evict this slice and
    // A's rows from a 32 KB L1 (a Cortex-A72's); equal to L1 on the Zen 3 here.
    if constexpr (Pf == Prefetch::given) {
      for (due += lines; due >= kc; due -= kc, ahead += 64) __builtin_prefetch(ahead, 0, 2);
    }
#pragma GCC unroll 4
    for (size_t v = 0; v < NV; ++v) wv[v] = V::load(w + k * NR + v * W);
#pragma GCC unroll 16
    for (size_t r = 0; r < MR; ++r) {
      B ab = V::set1(ar[r][k]);
#pragma GCC unroll 4
      for (size_t v = 0; v < NV; ++v) acc[r][v] = V::fma(ab, wv[v], acc[r][v]);
    }
  }

  if (mm) {
    B lo = V::set1(mm->lo), hi = V::set1(mm->hi);
#pragma GCC unroll 16
    for (size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (size_t v = 0; v < NV; ++v) acc[r][v] = V::min(V::max(acc[r][v], lo), hi);
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < MR; ++r) {
    if (r >= mr) break;
    float* dst = c + r * c_stride;
    if (nc == NR) {
#pragma GCC unroll 4
      for (size_t v = 0; v < NV; ++v) V::store(dst + v * W, acc[r][v]);
    } else {
      alignas(64) float tmp[NR];
      for (size_t v = 0; v < NV; ++v) V::store(tmp + v * W, acc[r][v]);
      std::memcpy(dst, tmp, nc * sizeof(float));
    }
  }
}

template <class Arch, size_t MR, size_t NV, Prefetch Pf = Prefetch::none>
void gemm_ukernel(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const float* w,
                  float* c, size_t c_stride, const float* bias, const MinMax* mm) {
  gemm_ukernel_body<Arch, MR, NV, Pf>(mr, nc, kc, a, a_stride, w, c, c_stride, bias, mm, nullptr,
                                      0);
}

template <class Arch, size_t MR, size_t NV>
void gemm_ukernel_prefetching(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                              const float* w, float* c, size_t c_stride, const float* bias,
                              const MinMax* mm, const void* ahead, size_t lines) {
  gemm_ukernel_body<Arch, MR, NV, Prefetch::given>(mr, nc, kc, a, a_stride, w, c, c_stride, bias,
                                                    mm, static_cast<const char*>(ahead), lines);
}

template <class Arch, size_t NV>
void gemv_panel(size_t k, const float* x, const float* w, const float* bias, float* y) {
  using V = simd::Vec<Arch>;
  using B = typename V::B;
  constexpr size_t W = V::n, NR = NV * W;
  // Four independent accumulator sets hide FMA latency; the panel streams from memory.
  B acc[4][NV];
  for (size_t u = 0; u < 4; ++u)
    for (size_t v = 0; v < NV; ++v) acc[u][v] = V::zero();
  size_t i = 0;
  for (; i + 4 <= k; i += 4) {
#pragma GCC unroll 4
    for (size_t u = 0; u < 4; ++u) {
      B xb = V::set1(x[i + u]);
#pragma GCC unroll 4
      for (size_t v = 0; v < NV; ++v)
        acc[u][v] = V::fma(xb, V::load(w + (i + u) * NR + v * W), acc[u][v]);
    }
  }
  for (; i < k; ++i) {
    B xb = V::set1(x[i]);
    for (size_t v = 0; v < NV; ++v) acc[0][v] = V::fma(xb, V::load(w + i * NR + v * W), acc[0][v]);
  }
  for (size_t v = 0; v < NV; ++v) {
    B s = (acc[0][v] + acc[1][v]) + (acc[2][v] + acc[3][v]);
    V::store(y + v * W, s + V::load(bias + v * W));
  }
}

// One output pixel of a 3x3 depthwise convolution, all channels, channels innermost: every load
// is contiguous and the 9 taps' weights come from L1. (Walking a row per 8-channel chunk, as
// before, re-read each row from L2 C/8 times with a C*4-byte stride: 25-35% of peak.) taps[i] is
// the input pixel under tap i (ky * 3 + kx), nullptr for padding, skipped: every output sums
// bias + taps in tap order, the same order for any band, ISA tail or pixel position.
template <class Arch, bool kAllTaps>
inline void dwconv3x3_pixel(const float* const taps[9], size_t C, const float* w, const float* bias,
                            float* out, const MinMax* mm) {
  using V = simd::Vec<Arch>;
  using S = simd::Vec<simd::scalar_arch>;
  constexpr size_t W = V::n;
  const float flo = mm ? mm->lo : -3.4e38f, fhi = mm ? mm->hi : 3.4e38f;
  const auto lo = V::set1(flo), hi = V::set1(fhi);
  size_t c = 0;
  for (; c + W <= C; c += W) {
    auto acc = V::load(bias + c);
#pragma GCC unroll 9
    for (int i = 0; i < 9; ++i)
      if (kAllTaps || taps[i]) acc = V::fma(V::load(taps[i] + c), V::load(w + i * C + c), acc);
    V::store(out + c, V::min(V::max(acc, lo), hi));
  }
  for (; c < C; ++c) {
    float acc = bias[c];
    for (int i = 0; i < 9; ++i)
      if (kAllTaps || taps[i]) acc = S::fma(taps[i][c], w[i * C + c], acc);
    out[c] = S::min(S::max(acc, flo), fhi);
  }
}

// Four adjacent interior output pixels, stride S: each input vector loaded once serves up to three
// of them and the weights are loaded once per channel chunk, about 0.9 loads per FMA against 2
// for pixel by pixel (on cores that split 256-bit loads, loads were the limit). Every output
// still sums bias + taps in tap order, as dwconv3x3_pixel does.
template <class Arch, size_t S>
inline void dwconv3x3_4px(const float* const rows[3], size_t ix0, size_t C, const float* w,
                          const float* bias, float* out, const MinMax* mm) {
  using V = simd::Vec<Arch>;
  using B = typename V::B;
  constexpr size_t W = V::n, NX = 3 * S + 3;  // input columns under 4 outputs
  const float flo = mm ? mm->lo : -3.4e38f, fhi = mm ? mm->hi : 3.4e38f;
  const B lo = V::set1(flo), hi = V::set1(fhi);
  size_t c = 0;
  for (; c + W <= C; c += W) {
    B acc[4];
    acc[0] = acc[1] = acc[2] = acc[3] = V::load(bias + c);
#pragma GCC unroll 3
    for (size_t ky = 0; ky < 3; ++ky) {
      const float* r = rows[ky] + ix0 * C + c;
      B x[NX];
#pragma GCC unroll 9
      for (size_t j = 0; j < NX; ++j) x[j] = V::load(r + j * C);
#pragma GCC unroll 3
      for (size_t kx = 0; kx < 3; ++kx) {
        const B wk = V::load(w + (ky * 3 + kx) * C + c);
#pragma GCC unroll 4
        for (size_t p = 0; p < 4; ++p) acc[p] = V::fma(x[p * S + kx], wk, acc[p]);
      }
    }
#pragma GCC unroll 4
    for (size_t p = 0; p < 4; ++p) V::store(out + p * C + c, V::min(V::max(acc[p], lo), hi));
  }
  using Sc = simd::Vec<simd::scalar_arch>;
  for (; c < C; ++c)
    for (size_t p = 0; p < 4; ++p) {
      float acc = bias[c];
      for (size_t ky = 0; ky < 3; ++ky)
        for (size_t kx = 0; kx < 3; ++kx)
          acc = Sc::fma(rows[ky][(ix0 + p * S + kx) * C + c], w[(ky * 3 + kx) * C + c], acc);
      out[p * C + c] = Sc::min(Sc::max(acc, flo), fhi);
    }
}

template <class Arch>
void dwconv3x3_row(const float* const rows[3], size_t in_w, size_t C, size_t stride,
                   size_t pad_left, const float* w, const float* bias, float* out, size_t out_w,
                   const MinMax* mm) {
  const bool all_rows = rows[0] && rows[1] && rows[2];
  for (size_t ox = 0; ox < out_w;) {
    const long ix0 = long(ox * stride) - long(pad_left);
    // Four pixels whose taps all lie inside the image: the blocked kernel.
    if (all_rows && (stride == 1 || stride == 2) && ox + 4 <= out_w && ix0 >= 0 &&
        ix0 + long(3 * stride + 2) < long(in_w)) {
      if (stride == 1)
        dwconv3x3_4px<Arch, 1>(rows, size_t(ix0), C, w, bias, out + ox * C, mm);
      else
        dwconv3x3_4px<Arch, 2>(rows, size_t(ix0), C, w, bias, out + ox * C, mm);
      ox += 4;
      continue;
    }
    const float* taps[9];
    bool all = all_rows;
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx) {
        const long ix = ix0 + kx;
        const bool inside = rows[ky] && ix >= 0 && ix < long(in_w);
        taps[ky * 3 + kx] = inside ? rows[ky] + size_t(ix) * C : nullptr;
        all = all && inside;
      }
    if (all)
      dwconv3x3_pixel<Arch, true>(taps, C, w, bias, out + ox * C, mm);
    else
      dwconv3x3_pixel<Arch, false>(taps, C, w, bias, out + ox * C, mm);
    ++ox;
  }
}

// F(4x4,3x3) (Lavin & Gray): V = B^T d B with the rows of B^T below.
template <class B, class V>
inline void wino_bt6(const B* d, B* u, size_t s) {
  const B d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
  const B f4 = V::set1(4.f), f5 = V::set1(5.f), f2 = V::set1(2.f);
  u[0] = V::fma(f4, d0, d4) - f5 * d2;
  u[s] = (d3 + d4) - f4 * (d1 + d2);
  u[2 * s] = (d4 - d3) + f4 * (d1 - d2);
  u[3 * s] = (d4 - d2) + f2 * (d3 - d1);
  u[4 * s] = (d4 - d2) + f2 * (d1 - d3);
  u[5 * s] = V::fma(f4, d1, d5) - f5 * d3;
}

// Y = A^T m A with A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
template <class B, class V>
inline void wino_at4(const B* m, B* o, size_t s) {
  const B m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
  const B a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
  o[0] = m0 + a + c;
  o[s] = V::fma(V::set1(2.f), d, b);
  o[2 * s] = V::fma(V::set1(4.f), c, a);
  o[3 * s] = V::fma(V::set1(8.f), d, b) + m5;
}

// F(2x2,3x3) (Lavin & Gray): V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
template <class B>
inline void wino_bt4(const B* d, B* u, size_t s) {
  const B d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s];
  u[0] = d0 - d2;
  u[s] = d1 + d2;
  u[2 * s] = d2 - d1;
  u[3 * s] = d1 - d3;
}

// Y = A^T m A with A^T = [1 1 1 0; 0 1 -1 -1].
template <class B>
inline void wino_at2(const B* m, B* o, size_t s) {
  const B m1 = m[s], m2 = m[2 * s];
  o[0] = m[0] + m1 + m2;
  o[s] = (m1 - m2) - m[3 * s];
}

// F(6x6,3x3), interpolation points 0, +-1, +-2, +-1/2 and infinity (as ncnn's x86 and ARM
// kernels): V = B^T d B, B^T's rows factored into the shared sums below.
template <class B, class V>
inline void wino_bt8(const B* d, B* u, size_t s) {
  const B d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s],
          d6 = d[6 * s], d7 = d[7 * s];
  const B f525 = V::set1(5.25f), f425 = V::set1(4.25f), f25 = V::set1(2.5f), f125 = V::set1(1.25f);
  const B f4 = V::set1(4.f), f2 = V::set1(2.f), f05 = V::set1(0.5f), f025 = V::set1(0.25f);
  u[0] = V::fma(f525, d4 - d2, d0 - d6);
  u[7 * s] = V::fma(f525, d3 - d5, d7 - d1);
  const B t1 = d2 + d6 - f425 * d4, t2 = d1 + d5 - f425 * d3;
  u[s] = t1 + t2;
  u[2 * s] = t1 - t2;
  const B t3 = V::fma(f025, d2, d6) - f125 * d4, t4 = V::fma(f05, d1, f2 * d5) - f25 * d3;
  u[3 * s] = t3 + t4;
  u[4 * s] = t3 - t4;
  const B t5 = V::fma(f4, d2 - f125 * d4, d6), t6 = V::fma(f2, d1, f05 * d5) - f25 * d3;
  u[5 * s] = t5 + t6;
  u[6 * s] = t5 - t6;
}

// Y = A^T m A, A^T's row p = [0^p 1 (-1)^p 2^p (-2)^p 2^-p (-2)^-p 0], row 0 starting with 1
// and row 5 ending with 1.
template <class B, class V>
inline void wino_at8(const B* m, B* o, size_t s) {
  const B m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s], m6 = m[6 * s];
  const B a1 = m1 + m2, b1 = m1 - m2, a2 = m3 + m4, b2 = m3 - m4, a3 = m5 + m6, b3 = m5 - m6;
  o[0] = m[0] + a1 + a2 + a3;
  o[s] = V::fma(V::set1(2.f), b2, V::fma(V::set1(0.5f), b3, b1));
  o[2 * s] = V::fma(V::set1(4.f), a2, V::fma(V::set1(0.25f), a3, a1));
  o[3 * s] = V::fma(V::set1(8.f), b2, V::fma(V::set1(0.125f), b3, b1));
  o[4 * s] = V::fma(V::set1(16.f), a2, V::fma(V::set1(0.0625f), a3, a1));
  o[5 * s] = V::fma(V::set1(32.f), b2, V::fma(V::set1(0.03125f), b3, b1)) + m[7 * s];
}

// F(M x M,3x3) for a tile of M output rows, M = 6 (8-point transforms, 64 positions), 4
// (6-point, 36) or 2 (4-point, 16): the 1-D transforms above, applied along columns, then
// along rows.
template <int M, class B, class V>
inline void wino_bt(const B* d, B* u, size_t s) {
  if constexpr (M == 6) wino_bt8<B, V>(d, u, s);
  else if constexpr (M == 4) wino_bt6<B, V>(d, u, s);
  else wino_bt4<B>(d, u, s);
}
template <int M, class B, class V>
inline void wino_at(const B* m, B* o, size_t s) {
  if constexpr (M == 6) wino_at8<B, V>(m, o, s);
  else if constexpr (M == 4) wino_at4<B, V>(m, o, s);
  else wino_at2<B>(m, o, s);
}

template <class Arch, int M>
inline void wino_input_chunk(const float* const rows[], long x0, size_t in_w, size_t C, float* v,
                             size_t v_stride, size_t c) {
  using V = simd::Vec<Arch>;
  using B = typename V::B;
  constexpr int A = M + 2;
  B d[A * A], t[A * A];
  for (int i = 0; i < A; ++i)
    for (int j = 0; j < A; ++j) {
      long x = x0 + j;
      d[i * A + j] =
          (rows[i] && x >= 0 && x < long(in_w)) ? V::load(rows[i] + size_t(x) * C + c) : V::zero();
    }
  for (int i = 0; i < A; ++i) wino_bt<M, B, V>(d + i * A, t + i * A, 1);  // along columns
  for (int j = 0; j < A; ++j) wino_bt<M, B, V>(t + j, d + j, A);          // along rows
  for (int xi = 0; xi < A * A; ++xi) V::store(v + xi * v_stride + c, d[xi]);
}

// Channels in chunks of Arch's width, then SmallArch's, then one at a time.
template <class Arch, class SmallArch, int M>
void wino_input(const float* const rows[8], long x0, size_t in_w, size_t C, float* v,
                size_t v_stride) {
  constexpr size_t W = simd::Vec<Arch>::n, S = simd::Vec<SmallArch>::n;
  size_t c = 0;
  for (; c + W <= C; c += W) wino_input_chunk<Arch, M>(rows, x0, in_w, C, v, v_stride, c);
  for (; c + S <= C; c += S) wino_input_chunk<SmallArch, M>(rows, x0, in_w, C, v, v_stride, c);
  for (; c < C; ++c) wino_input_chunk<simd::scalar_arch, M>(rows, x0, in_w, C, v, v_stride, c);
}

template <class Arch, int M>
inline void wino_output_chunk(const float* m, size_t m_stride, size_t C, const float* bias,
                              const MinMax* mm, float* const out_rows[], size_t x0, size_t ncols,
                              size_t c) {
  using V = simd::Vec<Arch>;
  using B = typename V::B;
  constexpr int A = M + 2;
  B t[A * A], r[A * M], y[M * M];
  for (int xi = 0; xi < A * A; ++xi) t[xi] = V::load(m + xi * m_stride + c);
  for (int i = 0; i < A; ++i) wino_at<M, B, V>(t + i * A, r + i * M, 1);  // along columns
  for (int q = 0; q < M; ++q) wino_at<M, B, V>(r + q, y + q, M);          // along rows
  const B b = V::load(bias + c);
  const B lo = V::set1(mm ? mm->lo : -3.4e38f), hi = V::set1(mm ? mm->hi : 3.4e38f);
  for (int p = 0; p < M; ++p) {
    if (!out_rows[p]) continue;
    for (size_t q = 0; q < ncols; ++q)
      V::store(out_rows[p] + (x0 + q) * C + c, V::min(V::max(y[p * M + q] + b, lo), hi));
  }
}

template <class Arch, class SmallArch, int M>
void wino_output(const float* m, size_t m_stride, size_t C, const float* bias, const MinMax* mm,
                 float* const out_rows[6], size_t x0, size_t ncols) {
  constexpr size_t W = simd::Vec<Arch>::n, S = simd::Vec<SmallArch>::n;
  size_t c = 0;
  for (; c + W <= C; c += W)
    wino_output_chunk<Arch, M>(m, m_stride, C, bias, mm, out_rows, x0, ncols, c);
  for (; c + S <= C; c += S)
    wino_output_chunk<SmallArch, M>(m, m_stride, C, bias, mm, out_rows, x0, ncols, c);
  for (; c < C; ++c)
    wino_output_chunk<simd::scalar_arch, M>(m, m_stride, C, bias, mm, out_rows, x0, ncols, c);
}

// K adjacent channel chunks of one output pixel, read in one contiguous pass per window pixel
// (one strided sweep of the row per chunk ran 3x slower), K chains unrolled so that their
// accumulators stay in registers at -O2 too. The window is [xs, xe) of `nrows` input
// rows; the order of each channel's sum does not depend on K.
template <class Arch, bool kMax, size_t K>
inline void pool_pixel(const float* const* rows, size_t nrows, size_t C, long xs, long xe,
                       float scale, float* out, size_t c) {
  using V = simd::Vec<Arch>;
  using B = typename V::B;
  B acc[K];
#pragma GCC unroll 4
  for (size_t k = 0; k < K; ++k) acc[k] = kMax ? V::set1(-3.4e38f) : V::zero();
  for (size_t r = 0; r < nrows; ++r)
    for (long x = xs; x < xe; ++x) {
      const float* p = rows[r] + size_t(x) * C + c;
#pragma GCC unroll 4
      for (size_t k = 0; k < K; ++k) {
        const B v = V::load(p + k * V::n);
        acc[k] = kMax ? V::max(acc[k], v) : acc[k] + v;
      }
    }
#pragma GCC unroll 4
  for (size_t k = 0; k < K; ++k) {
    if (!kMax) acc[k] = acc[k] * V::set1(scale);
    V::store(out + c + k * V::n, acc[k]);
  }
}

// One output row, pixel by pixel (each pixel's C channels are contiguous in its window's rows):
// four chunks at a time, then one, then the scalar rest.
template <class Arch, bool kMax>
void pool_row(const float* const* rows, size_t nrows, size_t in_w, size_t C, size_t kw,
              size_t stride, size_t pad_left, float* out, size_t out_w) {
  constexpr size_t W = simd::Vec<Arch>::n;
  for (size_t ox = 0; ox < out_w; ++ox) {
    long xs = long(ox * stride) - long(pad_left);
    long xe = xs + long(kw);
    if (xs < 0) xs = 0;
    if (xe > long(in_w)) xe = long(in_w);
    const float scale = 1.0f / float(size_t(xe - xs) * nrows);
    float* o = out + ox * C;
    size_t c = 0;
    for (; c + 4 * W <= C; c += 4 * W)
      pool_pixel<Arch, kMax, 4>(rows, nrows, C, xs, xe, scale, o, c);
    for (; c + W <= C; c += W) pool_pixel<Arch, kMax, 1>(rows, nrows, C, xs, xe, scale, o, c);
    for (; c < C; ++c) pool_pixel<simd::scalar_arch, kMax, 1>(rows, nrows, C, xs, xe, scale, o, c);
  }
}

template <class Arch>
void add_vec(const float* a, const float* b, float* out, size_t n, const MinMax* mm) {
  using V = simd::Vec<Arch>;
  const auto lo = V::set1(mm ? mm->lo : -3.4e38f), hi = V::set1(mm ? mm->hi : 3.4e38f);
  size_t i = 0;
  for (; i + V::n <= n; i += V::n)
    V::store(out + i, V::min(V::max(V::load(a + i) + V::load(b + i), lo), hi));
  using S = simd::Vec<simd::scalar_arch>;
  for (; i < n; ++i)
    out[i] = S::min(S::max(a[i] + b[i], mm ? mm->lo : -3.4e38f), mm ? mm->hi : 3.4e38f);
}

// Peak probe: iters rounds of 12 independent vector FMA chains (more chains than FMA latency x
// issue width on the cores we target), with nothing else in the loop. The result depends on
// every FMA, so none can be dropped.
template <class Arch>
float fma_probe(size_t iters) {
  using V = simd::Vec<Arch>;
  using B = typename V::B;
  B acc[12];
  for (int r = 0; r < 12; ++r) acc[r] = V::set1(1e-3f * float(r));
  const B a = V::set1(0.999f), b = V::set1(1e-4f);
  for (size_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
    for (int r = 0; r < 12; ++r) acc[r] = V::fma(acc[r], a, b);
  B s = acc[0];
  for (int r = 1; r < 12; ++r) s = s + acc[r];
  alignas(64) float out[V::n];
  V::store(out, s);
  return out[0];
}

// The GEMM kernel with the fewest rows >= m among 1, 2, 4, 8 (those below MR) and MR:
// kernel(std::integral_constant<size_t, ROWS>) names the instantiation for ROWS rows.
template <size_t MR, class Kernel>
auto gemm_for_rows(size_t m, Kernel kernel) {
  using std::integral_constant;
  return m <= 1   ? kernel(integral_constant<size_t, 1>{})
         : m <= 2 ? kernel(integral_constant<size_t, std::min<size_t>(2, MR)>{})
         : m <= 4 ? kernel(integral_constant<size_t, std::min<size_t>(4, MR)>{})
         : m <= 8 ? kernel(integral_constant<size_t, std::min<size_t>(8, MR)>{})
                  : kernel(integral_constant<size_t, MR>{});
}

// Zero elision (KernelTable::elide_zeros). The vector paths move a group of 8 (AVX2) or 4 (NEON)
// values at once: a lookup table, indexed by the group's mask bits, gives the lane permutation
// that packs the sent values to the front (compress) or spreads them back (expand); the
// one-value-at-a-time loop they replace cost 1.1-1.6 ns per wire byte (VGG-16, 3 devices: about
// 5% of the host's time on a Pi-speed board).
struct ElideLut {
  uint64_t compress[256], expand[256];  // 8 lane indices, a byte each
};
constexpr ElideLut make_elide_lut() {
  ElideLut l{};
  for (unsigned m = 0; m < 256; ++m) {
    unsigned j = 0;
    for (unsigned i = 0; i < 8; ++i)
      if (m >> i & 1) {
        l.compress[m] |= uint64_t(i) << (8 * j);
        l.expand[m] |= uint64_t(j) << (8 * i);
        ++j;
      }
  }
  return l;
}
constexpr ElideLut kElideLut = make_elide_lut();

inline uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

template <class Arch>
constexpr bool kAvx2Elide =
#if defined(__AVX2__) && !defined(EB_SCALAR_ONLY)
    std::is_same_v<Arch, xsimd::fma3<xsimd::avx2>>;
#else
    false;
#endif
template <class Arch>
constexpr bool kNeonElide =
#if defined(__aarch64__) && !defined(EB_SCALAR_ONLY)
    std::is_same_v<Arch, xsimd::neon64>;
#else
    false;
#endif

// NEON: byte shuffles for vqtbl1q_u8 per 4-lane mask (an index of 16 or more reads as zero,
// which zeroes the lanes that compress leaves past its count and expand leaves unsent).
struct NeonElideLut {
  uint8_t compress[16][16], expand[16][16];
};
constexpr NeonElideLut make_neon_elide_lut() {
  NeonElideLut l{};
  for (unsigned m = 0; m < 16; ++m)
    for (unsigned i = 0; i < 4; ++i) {
      const unsigned c = unsigned(kElideLut.compress[m] >> (8 * i)) & 0xFF;
      const unsigned e = unsigned(kElideLut.expand[m] >> (8 * i)) & 0xFF;
      const bool packed = i < unsigned(((m & 1) + (m >> 1 & 1) + (m >> 2 & 1) + (m >> 3 & 1)));
      for (unsigned b = 0; b < 4; ++b) {
        l.compress[m][4 * i + b] = packed ? uint8_t(4 * c + b) : uint8_t(0xFF);
        l.expand[m][4 * i + b] = (m >> i & 1) ? uint8_t(4 * e + b) : uint8_t(0xFF);
      }
    }
  return l;
}
constexpr NeonElideLut kNeonElideLut = make_neon_elide_lut();
#if defined(__aarch64__) && !defined(EB_SCALAR_ONLY)
// The 4 lanes' sent bits.
inline unsigned neon_sent_bits(uint32x4_t v) {
  static const uint32_t kBit[4] = {1, 2, 4, 8};
  return vaddvq_u32(vandq_u32(vtstq_u32(v, v), vld1q_u32(kBit)));
}
#endif

template <class Arch>
size_t count_sent(const float* x, size_t n) {
  size_t i = 0, k = 0;
  if constexpr (kAvx2Elide<Arch>) {
#if defined(__AVX2__) && !defined(EB_SCALAR_ONLY)
    const __m256i zero = _mm256_setzero_si256();
    for (; i + 8 <= n; i += 8) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
      k += 8 - size_t(__builtin_popcount(unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, zero))))));
    }
#endif
  } else if constexpr (kNeonElide<Arch>) {
#if defined(__aarch64__) && !defined(EB_SCALAR_ONLY)
    for (; i + 4 <= n; i += 4) {
      const uint32x4_t v = vreinterpretq_u32_f32(vld1q_f32(x + i));
      k += vaddvq_u32(vshrq_n_u32(vtstq_u32(v, v), 31));
    }
#endif
  }
  for (; i < n; ++i) k += bits_of(x[i]) != 0;
  return k;
}

template <class Arch>
size_t elide_zeros(const float* x, size_t n, uint64_t* masks, float* vals) {
  size_t j = 0;
  for (size_t g = 0; g * 64 < n; ++g) {
    const float* xg = x + g * 64;
    const size_t len = std::min<size_t>(64, n - g * 64);
    uint64_t m = 0;
    size_t i = 0;
    if constexpr (kAvx2Elide<Arch>) {
#if defined(__AVX2__) && !defined(EB_SCALAR_ONLY)
      const __m256i zero = _mm256_setzero_si256();
      for (; i + 8 <= len; i += 8) {
        const __m256 v = _mm256_loadu_ps(xg + i);
        const unsigned bits = ~unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(
                                  _mm256_cmpeq_epi32(_mm256_castps_si256(v), zero)))) & 0xFF;
        const __m256i idx = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(kElideLut.compress[bits])));
        _mm256_storeu_ps(vals + j, _mm256_permutevar8x32_ps(v, idx));
        m |= uint64_t(bits) << i;
        j += size_t(__builtin_popcount(bits));
      }
#endif
    } else if constexpr (kNeonElide<Arch>) {
#if defined(__aarch64__) && !defined(EB_SCALAR_ONLY)
      for (; i + 4 <= len; i += 4) {
        const float32x4_t v = vld1q_f32(xg + i);
        const unsigned bits = neon_sent_bits(vreinterpretq_u32_f32(v));
        const uint8x16_t idx = vld1q_u8(kNeonElideLut.compress[bits]);
        vst1q_f32(vals + j, vreinterpretq_f32_u8(vqtbl1q_u8(vreinterpretq_u8_f32(v), idx)));
        m |= uint64_t(bits) << i;
        j += size_t(__builtin_popcount(bits));
      }
#endif
    }
    for (; i < len; ++i) {
      const float v = xg[i];
      const size_t sent = bits_of(v) != 0;
      vals[j] = v;  // branch-free: overwritten by the next value when not sent
      m |= uint64_t(sent) << i;
      j += sent;
    }
    masks[g] = m;
  }
  return j;
}

template <class Arch>
void expand_zeros(const uint64_t* masks, const float* vals, size_t sent, float* y, size_t n) {
  size_t j = 0;
  for (size_t g = 0; g * 64 < n; ++g) {
    float* yg = y + g * 64;
    const size_t len = std::min<size_t>(64, n - g * 64);
    const uint64_t m = masks[g];
    size_t i = 0;
    if constexpr (kAvx2Elide<Arch>) {
#if defined(__AVX2__) && !defined(EB_SCALAR_ONLY)
      const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
      for (; i + 8 <= len && j + 8 <= sent; i += 8) {  // never reads past vals[sent)
        const unsigned bits = unsigned(m >> i) & 0xFF;
        const __m256i idx = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(kElideLut.expand[bits])));
        const __m256i keep = _mm256_cmpeq_epi32(
            _mm256_and_si256(_mm256_set1_epi32(int(bits)), lane_bit), lane_bit);
        const __m256 v = _mm256_permutevar8x32_ps(_mm256_loadu_ps(vals + j), idx);
        _mm256_storeu_ps(yg + i, _mm256_and_ps(v, _mm256_castsi256_ps(keep)));
        j += size_t(__builtin_popcount(bits));
      }
#endif
    } else if constexpr (kNeonElide<Arch>) {
#if defined(__aarch64__) && !defined(EB_SCALAR_ONLY)
      for (; i + 4 <= len && j + 4 <= sent; i += 4) {
        const unsigned bits = unsigned(m >> i) & 0xF;
        const uint8x16_t idx = vld1q_u8(kNeonElideLut.expand[bits]);
        vst1q_f32(yg + i, vreinterpretq_f32_u8(vqtbl1q_u8(vreinterpretq_u8_f32(vld1q_f32(vals + j)), idx)));
        j += size_t(__builtin_popcount(bits));
      }
#endif
    }
    for (; i < len; ++i) {
      const bool s = (m >> i) & 1;
      yg[i] = s ? vals[j] : 0.0f;
      j += s;
    }
  }
  (void)sent;
}

// Builds a table: GEMM at full width (Arch, MR x NV vectors); the bandwidth-bound depthwise
// and pooling at SmallArch, whose width matches common channel counts. The Winograd transforms
// take Arch's width, then SmallArch's for the channels left (AVX-512 against AVX2 transforms:
// VGG-16's F(4x4) layers 7-15% faster on Zen 5).
template <class Arch, size_t MR, size_t NV, class SmallArch>
KernelTable make_table(Isa isa) {
  KernelTable t{};
  t.isa = isa;
  t.gemm_mr = MR;
  t.gemm_nr = NV * simd::Vec<Arch>::n;
  t.gemm = &gemm_ukernel<Arch, MR, NV>;
  static_assert(MR >= 1 && MR <= kMaxGemmMr, "MR out of range");
  for (size_t m = 1; m <= MR; ++m) {
    t.gemm_rows[m] = gemm_for_rows<MR>(
        m, [](auto r) -> GemmUkernelFn { return &gemm_ukernel<Arch, r(), NV, Prefetch::none>; });
    t.gemm_rows_stream[m] = gemm_for_rows<MR>(
        m, [](auto r) -> GemmUkernelFn { return &gemm_ukernel<Arch, r(), NV, Prefetch::own>; });
    t.gemm_rows_prefetching[m] = gemm_for_rows<MR>(m, [](auto r) -> GemmPrefetchingUkernelFn {
      return &gemm_ukernel_prefetching<Arch, r(), NV>;
    });
  }
  t.gemv_panel = &gemv_panel<Arch, NV>;
  t.dwconv3x3 = &dwconv3x3_row<SmallArch>;
  t.wino_f63_input = &wino_input<Arch, SmallArch, 6>;
  t.wino_f63_output = &wino_output<Arch, SmallArch, 6>;
  t.wino_f43_input = &wino_input<Arch, SmallArch, 4>;
  t.wino_f43_output = &wino_output<Arch, SmallArch, 4>;
  t.wino_f23_input = &wino_input<Arch, SmallArch, 2>;
  t.wino_f23_output = &wino_output<Arch, SmallArch, 2>;
  t.maxpool_row = &pool_row<SmallArch, true>;
  t.avgpool_row = &pool_row<SmallArch, false>;
  t.add = &add_vec<Arch>;
  t.f32_to_f16 = &f32_to_f16<Arch>;
  t.f16_to_f32 = &f16_to_f32<Arch>;
  t.count_sent = &count_sent<SmallArch>;
  t.elide_zeros = &elide_zeros<SmallArch>;
  t.expand_zeros = &expand_zeros<SmallArch>;
  t.elide_lanes = kAvx2Elide<SmallArch> ? 8 : kNeonElide<SmallArch> ? 4 : 1;
  t.fma_probe = &fma_probe<Arch>;
  t.fma_probe_flops = 12 * 2 * simd::Vec<Arch>::n;
  return t;
}

}  // namespace
}  // namespace eb::kernels
