// Band-native convolution and pooling operators. Every operator computes the output rows
// [out.row0, out.row0 + out.rows) from an input band holding at least the rows they need;
// the full image is just the one-band case.
#pragma once
#include <cstddef>
#include <vector>

#include "kernels/gemm.h"

namespace eb::kernels {

struct ConvGeom {
  long in_h, in_w, cin, cout;
  long kh, kw, sh, sw;
  long pad_t, pad_l;  // bottom/right padding is implied by out_h/out_w
  long out_h, out_w;
};

// Rows [row0, row0 + rows) of an NHWC image of width w and c channels, rows contiguous.
struct InBand {
  const float* data;
  long row0, rows;
  // Row y of the image, nullptr when y lies outside the image (padding). Throws if y is inside
  // the image but not in the band: that is a receptive-field bug, never silently zero.
  const float* row(long y, long in_h, size_t row_floats) const;
};
struct OutBand {
  float* data;
  long row0, rows;
};

// im2col fused into the GEMM's A tiles; weights packed from OHWI (k = (ky*kw + kx)*cin + ci).
void conv_im2col(const ConvGeom& g, InBand in, OutBand out, const PackedB& w, const MinMax* mm);
// 1x1, stride 1, no padding: the input rows are the GEMM's A directly.
void conv_1x1(const ConvGeom& g, InBand in, OutBand out, const PackedB& w, const MinMax* mm);

// Winograd F(m x m,3x3), stride 1, m = tile: 6 (64 transform positions, 5.1x fewer multiplies
// than direct), 4 (36 positions, 4x) or 2 (16 positions, 2.25x, and 16/36 of F(4x4)'s
// transformed weights to read a call: for small maps, where F(4x4) pads 14 rows to 16 and each
// call of a thin band streams 38 MB of a 512x512 layer's matrices for a few tiles). Output
// tiles are aligned to absolute multiples of m rows so that a band computes bit-identical
// values to the full image; winograd_tile_rows says which rows that needs.
struct WinogradWeights {
  int tile = 4;            // m: output rows (and columns) per tile
  std::vector<PackedB> u;  // (m+2)^2 matrices [cin x cout], U = G g G^T
  std::vector<float> bias;
};
WinogradWeights pack_winograd(int tile, const float* w_ohwi, long cout, long cin, const float* bias);
void conv3x3_winograd(const ConvGeom& g, InBand in, OutBand out, const WinogradWeights& w,
                      const MinMax* mm);
// How conv3x3_winograd splits one call's tiles: per-thread blocks (each thread transforms,
// multiplies and inverse-transforms its own tiles) or shared blocks (the threads split each
// stage). Either way every output gets the same value.
struct WinoSchedule {
  bool per_thread;
  size_t tiles_per_block;
  long blocks;
};
WinoSchedule winograd_schedule(int tile, size_t ntiles, size_t cin, size_t cout, size_t mr, int threads);
// Output tile rows covering [r0, r1), as absolute rows [first, last).
void winograd_tile_rows(int tile, long r0, long r1, long* first, long* last);

// Depthwise 3x3 (cin == cout), any stride; w is [9][c].
void dwconv3x3(const ConvGeom& g, InBand in, OutBand out, const float* w9c, const float* bias,
               const MinMax* mm);

enum class PoolKind { max, average };
void pool2d(PoolKind kind, const ConvGeom& g, InBand in, OutBand out);

}  // namespace eb::kernels
