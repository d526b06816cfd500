// Microkernels: small pure functions, one table per instruction set. Each has a plain reference
// twin in tests/. Operators (kernels/*.cpp drivers, core/layers) only pack weights and call these.
#pragma once
#include <cstddef>
#include <cstdint>

namespace eb::kernels {

struct MinMax {
  float lo, hi;
};

enum class Isa { scalar, avx2, avx512, neon };
const char* isa_name(Isa isa);

// C[mr x nc] = (bias ? bias : C) + A[mr x kc] * W[kc x NR], then clamp if mm != nullptr.
// A rows are a_stride apart; W is one packed panel (kc rows of NR floats, zero padded).
// mr <= MR, nc <= NR.
using GemmUkernelFn = void (*)(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                               const float* w, float* c, size_t c_stride, const float* bias,
                               const MinMax* mm);
// The same, prefetching `lines` cache lines from `ahead` on, spread evenly over its kc steps:
// the weights a later call will read, fetched while this one computes on cached weights.
using GemmPrefetchingUkernelFn = void (*)(size_t mr, size_t nc, size_t kc, const float* a,
                                          size_t a_stride, const float* w, float* c,
                                          size_t c_stride, const float* bias, const MinMax* mm,
                                          const void* ahead, size_t lines);
// y[NR] = bias[NR] + x[k] * W[k x NR] (one packed panel).
using GemvPanelFn = void (*)(size_t k, const float* x, const float* w, const float* bias, float* y);
// One output row of a 3x3 depthwise convolution over NHWC rows. rows[ky] is nullptr for a
// padding row. w is [9][channels], bias [channels].
using Dwconv3x3RowFn = void (*)(const float* const rows[3], size_t in_w, size_t channels,
                                size_t stride, size_t pad_left, const float* w, const float* bias,
                                float* out, size_t out_w, const MinMax* mm);
// Winograd F(m x m,3x3) input transform of one (m+2)x(m+2) tile, all channels, m = 6, 4 or 2
// ((m+2)^2 positions: 64, 36, 16), from rows[0..m+1]. rows[i] is nullptr where the tile row
// lies outside the available input; columns outside [0,in_w) read as zero.
// Writes v[xi * v_stride + c] for the transform positions xi.
using WinoInputFn = void (*)(const float* const rows[8], long x0, size_t in_w, size_t channels,
                             float* v, size_t v_stride);
// Inverse transform of one tile: m[xi * m_stride + c] -> out_rows[p][(x0 + q) * channels + c]
// for p < m and q < ncols, skipping rows whose pointer is nullptr.
using WinoOutputFn = void (*)(const float* m, size_t m_stride, size_t channels, const float* bias,
                              const MinMax* mm, float* const out_rows[6], size_t x0, size_t ncols);
// One output row of max/avg pooling over nrows input rows (padding excluded from the window).
using PoolRowFn = void (*)(const float* const* rows, size_t nrows, size_t in_w, size_t channels,
                           size_t kw, size_t stride, size_t pad_left, float* out, size_t out_w);
// out[i] = clamp(a[i] + b[i]); mm may be nullptr.
using AddFn = void (*)(const float* a, const float* b, float* out, size_t n, const MinMax* mm);
// IEEE half <-> float over n values, round to nearest even: the fp16 wire format, identical on
// every ISA (kernels/half.h is the scalar twin; only NaN payloads may differ).
using F32ToF16Fn = void (*)(const float* x, uint16_t* y, size_t n);
using F16ToF32Fn = void (*)(const uint16_t* x, float* y, size_t n);

// Zero elision, the exact fp32 wire (dist/runtime/sparse_wire.h): a value is elided when all its
// bits are zero (+0.0; -0.0 and NaNs are sent). Values go in groups of 64 (the last may be
// shorter); bit i of mask word g is set where value 64g + i is sent.
// How many of x[0, n) are sent.
using CountSentFn = size_t (*)(const float* x, size_t n);
// Writes masks[0, ceil(n / 64)) and the sent values of x[0, n), in order, to vals; returns their
// count. vals needs room for kElideSlack floats past that count: vector stores write past it.
using ElideZerosFn = size_t (*)(const float* x, size_t n, uint64_t* masks, float* vals);
// The inverse: y[i] is the next of vals[0, sent) where bit i is set, else +0.0. sent must be the
// masks' population count; nothing past vals[sent) is read.
using ExpandZerosFn = void (*)(const uint64_t* masks, const float* vals, size_t sent, float* y, size_t n);
constexpr size_t kElideSlack = 8;

// The widest GEMM tile of any table: bounds KernelTable::gemm_rows.
constexpr size_t kMaxGemmMr = 16;

struct KernelTable {
  Isa isa;
  size_t gemm_mr, gemm_nr;
  GemmUkernelFn gemm;  // MR = gemm_mr rows
  // gemm_rows[m], 1 <= m <= gemm_mr: a kernel with the fewest rows >= m. A remainder of m rows
  // run by the full kernel still pays gemm_mr rows of FMAs (extra rows alias the last one), which
  // dominates small bands: a 4-tile Winograd band did 3x its work at MR = 12. Every variant does
  // the same FMAs in the same order per output, so which one computes a row never changes its
  // value (bands stay bit-identical to the full image).
  GemmUkernelFn gemm_rows[kMaxGemmMr + 1];
  // The same kernels, prefetching their weights ahead: for the first row tile over a weight
  // slice, which reads it from memory (later tiles find it in cache, where the prefetches only
  // cost issue slots: 5-8% on 112x112x128 layers). Same arithmetic, same values.
  GemmUkernelFn gemm_rows_stream[kMaxGemmMr + 1];
  // The same kernels, prefetching other weights (the next slice) while they compute on cached
  // ones, so that weight traffic overlaps FMAs instead of stalling a first row tile. Same values.
  GemmPrefetchingUkernelFn gemm_rows_prefetching[kMaxGemmMr + 1];
  GemvPanelFn gemv_panel;
  Dwconv3x3RowFn dwconv3x3;
  WinoInputFn wino_f63_input;
  WinoOutputFn wino_f63_output;
  WinoInputFn wino_f43_input;
  WinoOutputFn wino_f43_output;
  WinoInputFn wino_f23_input;
  WinoOutputFn wino_f23_output;
  PoolRowFn maxpool_row;
  PoolRowFn avgpool_row;
  AddFn add;
  F32ToF16Fn f32_to_f16;
  F16ToF32Fn f16_to_f32;
  CountSentFn count_sent;
  ElideZerosFn elide_zeros;
  ExpandZerosFn expand_zeros;
  size_t elide_lanes;  // values those three take per step (1: the plain loop)
  // fma_probe(iters) does iters * fma_probe_flops FLOPs of pure FMAs at the GEMM's width: the
  // core's peak, against which bench --layers reports each layer.
  float (*fma_probe)(size_t iters);
  size_t fma_probe_flops;
};

// A table's Winograd transform pair for F(tile x tile,3x3), tile 6, 4 or 2: the one place a
// tile picks its kernels (the driver, kernels/conv.cpp, and the tests).
inline WinoInputFn wino_input_fn(const KernelTable& kt, int tile) {
  return tile == 6 ? kt.wino_f63_input : tile == 4 ? kt.wino_f43_input : kt.wino_f23_input;
}
inline WinoOutputFn wino_output_fn(const KernelTable& kt, int tile) {
  return tile == 6 ? kt.wino_f63_output : tile == 4 ? kt.wino_f43_output : kt.wino_f23_output;
}

// Tables compiled into this binary (nullptr where the ISA was not built).
const KernelTable* scalar_table();
const KernelTable* avx2_table();
const KernelTable* avx512_table();
const KernelTable* neon_table();

// The table for an ISA if this binary has it and this CPU runs it, else nullptr.
const KernelTable* table_for(Isa isa);
// The table in use: the best the CPU supports, or EDGEBAND_ISA=scalar|avx2|avx512|neon.
const KernelTable& active();
// Override (tests, benchmarks); throws if the ISA is unavailable here.
void set_active(Isa isa);
// One core's peak in GFLOP/s for a table's FMAs, timed over about `seconds` (best of 5 tries).
double measure_fma_peak_gflops(const KernelTable& t, double seconds = 0.05);
// Parse an ISA name; throws on an unknown one.
Isa parse_isa(const char* name);

}  // namespace eb::kernels
