#include "kernels/conv.h"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace eb::kernels {

const float* InBand::row(long y, long in_h, size_t row_floats) const {
  if (y < 0 || y >= in_h) return nullptr;
  if (y < row0 || y >= row0 + rows)
    throw std::logic_error("input row " + std::to_string(y) + " missing from band [" +
                           std::to_string(row0) + "," + std::to_string(row0 + rows) + ")");
  return data + size_t(y - row0) * row_floats;
}

namespace {

class Im2colA : public ASource {
 public:
  Im2colA(const ConvGeom& g, const InBand& in, long out_row0) : g_(g), in_(in), r0_(out_row0) {}
  const float* rows(size_t m0, size_t mc, float* scratch, size_t* stride) const override {
    const size_t k = size_t(g_.kh * g_.kw * g_.cin), rf = size_t(g_.in_w * g_.cin);
    *stride = k;
    for (size_t i = 0; i < mc; ++i) {
      const long m = long(m0 + i);
      const long oy = r0_ + m / g_.out_w, ox = m % g_.out_w;
      float* dst = scratch + i * k;
      const long ix0 = ox * g_.sw - g_.pad_l;
      const bool inside = ix0 >= 0 && ix0 + g_.kw <= g_.in_w;
      for (long ky = 0; ky < g_.kh; ++ky) {
        const float* src = in_.row(oy * g_.sh - g_.pad_t + ky, g_.in_h, rf);
        if (src && inside) {  // the kw pixels are contiguous in NHWC: one span
          std::copy(src + ix0 * g_.cin, src + (ix0 + g_.kw) * g_.cin, dst);
          dst += g_.kw * g_.cin;
          continue;
        }
        for (long kx = 0; kx < g_.kw; ++kx, dst += g_.cin) {
          const long ix = ox * g_.sw - g_.pad_l + kx;
          if (!src || ix < 0 || ix >= g_.in_w)
            std::fill(dst, dst + g_.cin, 0.0f);
          else
            std::copy(src + ix * g_.cin, src + (ix + 1) * g_.cin, dst);
        }
      }
    }
    return scratch;
  }

 private:
  const ConvGeom& g_;
  const InBand& in_;
  long r0_;
};

}  // namespace

void conv_im2col(const ConvGeom& g, InBand in, OutBand out, const PackedB& w, const MinMax* mm) {
  Im2colA a(g, in, out.row0);
  gemm(size_t(out.rows * g.out_w), a, w, out.data, size_t(g.cout), mm);
}

void conv_1x1(const ConvGeom& g, InBand in, OutBand out, const PackedB& w, const MinMax* mm) {
  const size_t rf = size_t(g.in_w * g.cin);
  const float* first = in.row(out.row0, g.in_h, rf);
  if (out.rows > 0) in.row(out.row0 + out.rows - 1, g.in_h, rf);  // whole range present
  StridedA a(first, size_t(g.cin));
  gemm(size_t(out.rows * g.out_w), a, w, out.data, size_t(g.cout), mm);
}

// --- Winograd F(6x6,3x3), F(4x4,3x3) and F(2x2,3x3) ----------------------------------------------

namespace {
int positions(int tile) { return (tile + 2) * (tile + 2); }
}  // namespace

WinogradWeights pack_winograd(int tile, const float* w, long cout, long cin, const float* bias) {
  // G's rows: the 3 filter taps evaluated at each interpolation point, scaled to match B and A
  // (microkernels_impl.h); the last row is the point at infinity.
  static const double G6[8][3] = {{1, 0, 0},
                                  {-2.0 / 9, -2.0 / 9, -2.0 / 9},
                                  {-2.0 / 9, 2.0 / 9, -2.0 / 9},
                                  {1.0 / 90, 1.0 / 45, 2.0 / 45},
                                  {1.0 / 90, -1.0 / 45, 2.0 / 45},
                                  {32.0 / 45, 16.0 / 45, 8.0 / 45},
                                  {32.0 / 45, -16.0 / 45, 8.0 / 45},
                                  {0, 0, 1}};
  static const double G4[6][3] = {{1.0 / 4, 0, 0},
                                  {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                  {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                  {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                  {0, 0, 1}};
  static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  if (tile != 6 && tile != 4 && tile != 2)
    throw std::logic_error("Winograd tiles are 6, 4 or 2 rows");
  const int a = tile + 2;
  auto G = [tile](int i, int k) { return tile == 6 ? G6[i][k] : tile == 4 ? G4[i][k] : G2[i][k]; };
  // U = G g G^T per (co, ci), as a*a matrices u_xi[ci][co], xi = i*a + j, packed one row i of
  // G at a time: a of them exist unpacked at once, not all (for a 512x512 layer at F(4x4),
  // 6 MB beside its packing instead of 38 MB).
  WinogradWeights out;
  out.tile = tile;
  out.u.reserve(size_t(a * a));
  std::vector<float> u(size_t(a) * cin * cout);
  for (int i = 0; i < a; ++i) {
    for (long co = 0; co < cout; ++co)
      for (long ci = 0; ci < cin; ++ci) {
        double t[3];  // row i of G g
        for (int b = 0; b < 3; ++b)
          t[b] = G(i, 0) * w[((co * 3 + 0) * 3 + b) * cin + ci] + G(i, 1) * w[((co * 3 + 1) * 3 + b) * cin + ci] +
                 G(i, 2) * w[((co * 3 + 2) * 3 + b) * cin + ci];
        for (int j = 0; j < a; ++j)
          u[(size_t(j) * cin + ci) * cout + co] = float(t[0] * G(j, 0) + t[1] * G(j, 1) + t[2] * G(j, 2));
      }
    for (int j = 0; j < a; ++j)
      out.u.push_back(pack_b(u.data() + size_t(j) * cin * cout, size_t(cin), size_t(cout), size_t(cout), nullptr));
  }
  out.bias.assign(bias, bias + cout);
  return out;
}

void winograd_tile_rows(int tile, long r0, long r1, long* first, long* last) {
  *first = r0 / tile * tile;
  *last = (r1 + tile - 1) / tile * tile;
}

namespace {

// The tiles [b0, b0 + nb) of one Winograd layer call, numbered row-major over the tile grid.
struct WinoTiles {
  const ConvGeom& g;
  const InBand& in;
  const OutBand& out;
  const WinogradWeights& w;
  const MinMax* mm;
  long t0, ntx;  // first absolute tile row, tiles per row
};

void wino_input_tiles(const KernelTable& kt, const WinoTiles& L, long b0, long t_begin, long t_end,
                      float* v, size_t v_stride) {
  const size_t rf = size_t(L.g.in_w * L.g.cin);
  const int m = L.w.tile;
  const WinoInputFn fn = wino_input_fn(kt, m);
  for (long t = t_begin; t < t_end; ++t) {
    const long ty = (b0 + t) / L.ntx, tx = (b0 + t) % L.ntx;
    const float* rows[8] = {};
    for (int i = 0; i < m + 2; ++i) rows[i] = L.in.row(L.t0 + ty * m - L.g.pad_t + i, L.g.in_h, rf);
    fn(rows, tx * m - L.g.pad_l, size_t(L.g.in_w), size_t(L.g.cin), v + size_t(t) * size_t(L.g.cin), v_stride);
  }
}

void wino_output_tiles(const KernelTable& kt, const WinoTiles& L, long b0, long t_begin, long t_end,
                       const float* m, size_t m_stride) {
  const size_t K = size_t(L.g.cout);
  const long r0 = L.out.row0, r1 = L.out.row0 + L.out.rows;
  const int tm = L.w.tile;
  const WinoOutputFn fn = wino_output_fn(kt, tm);
  for (long t = t_begin; t < t_end; ++t) {
    const long ty = (b0 + t) / L.ntx, tx = (b0 + t) % L.ntx;
    float* orow[6] = {};
    for (int p = 0; p < tm; ++p) {
      const long y = L.t0 + ty * tm + p;
      orow[p] = (y >= r0 && y < r1) ? L.out.data + size_t(y - r0) * L.g.out_w * K : nullptr;
    }
    fn(m + size_t(t) * K, m_stride, K, L.w.bias.data(), L.mm, orow, size_t(tx * tm),
       size_t(std::min<long>(tm, L.g.out_w - tx * tm)));
  }
}

// Transform buffers live as long as the calling thread and only grow: a fresh multi-MB
// zero-filled allocation per call cost page faults and a memset every layer (and under the
// sanitizers' allocators far more). Every element read is written first in each block.
float* wino_buffer(std::vector<float>& b, size_t n) {
  if (b.size() < n) b.resize(n);
  return b.data();
}
thread_local std::vector<float> t_wino_v, t_wino_m;

}  // namespace

WinoSchedule winograd_schedule(int tile, size_t ntiles, size_t C, size_t K, size_t mr, int threads) {
  const size_t P = size_t(positions(tile));
  // Each block of tiles streams all P weight matrices once; a block needs at least
  // C*K / (2 (C + K)) tiles for that to cost less than half its transform buffers' traffic.
  const size_t reuse_tiles = C * K / (2 * (C + K));
  const size_t nt = size_t(std::max(1, threads));
  // Many tiles (the early, wide layers): every thread takes whole blocks and runs all three
  // stages on them, so a tile's transforms never leave the core that made them and no barrier
  // separates the stages (VGG-16's conv1-conv3 ran 10-25% faster on 2 threads). Blocks fit
  // about 1 MB of buffers, and their count is a multiple of the threads, so each thread gets as
  // many tiles.
  if (nt > 1 && ntiles >= nt * std::max(mr, reuse_tiles / 2)) {
    const size_t tile_bytes = P * sizeof(float) * (C + K);
    const size_t want = std::max({mr, (size_t(1) << 20) / tile_bytes, reuse_tiles});
    const size_t blocks = (ntiles + nt * want - 1) / (nt * want) * nt;
    return {true, (ntiles + blocks - 1) / blocks, long(blocks)};
  }
  // Few tiles (deep layers, thin bands): the threads share each block, stage by stage, and split
  // its GEMMs over weight panels too. Blocks of about 2 MB of buffers, or more where the
  // weights would then cost more traffic per tile than the buffers (a 28x28x512 layer took three
  // weight passes and spent a quarter of its time on them).
  size_t tb = std::max((size_t(2) << 20) / (P * sizeof(float) * std::max(C, K)), reuse_tiles);
  tb = std::max(mr, tb / mr * mr);
  tb = std::min(tb, (ntiles + mr - 1) / mr * mr);
  return {false, tb, long((ntiles + tb - 1) / tb)};
}

void conv3x3_winograd(const ConvGeom& g, InBand in, OutBand out, const WinogradWeights& w,
                      const MinMax* mm) {
  if (out.rows <= 0) return;
  const KernelTable& kt = active();
  const int tm = w.tile;
  const size_t P = size_t(positions(tm));
  long t0, t1;
  winograd_tile_rows(tm, out.row0, out.row0 + out.rows, &t0, &t1);
  const WinoTiles L{g, in, out, w, mm, t0, (g.out_w + tm - 1) / tm};
  const long ntiles = (t1 - t0) / tm * L.ntx;
  const size_t C = size_t(g.cin), K = size_t(g.cout);
  const WinoSchedule ws =
      winograd_schedule(tm, size_t(ntiles), C, K, kt.gemm_mr, omp_get_max_threads());
  const size_t tb = ws.tiles_per_block;
  if (ws.per_thread) {
#pragma omp parallel for schedule(dynamic, 1)
    for (long bi = 0; bi < ws.blocks; ++bi) {
      const long b0 = bi * long(tb), nb = std::min(long(tb), ntiles - b0);
      if (nb <= 0) continue;
      float* v = wino_buffer(t_wino_v, P * tb * C);
      float* m = wino_buffer(t_wino_m, P * tb * K);
      wino_input_tiles(kt, L, b0, 0, nb, v, tb * C);
      for (size_t xi = 0; xi < P; ++xi) {
        StridedA a(v + xi * tb * C, C);
        gemm_panels(size_t(nb), a, w.u[xi], 0, w.u[xi].panels, m + xi * tb * K, K, nullptr);
      }
      wino_output_tiles(kt, L, b0, 0, nb, m, tb * K);
    }
    return;
  }
  // Pointers, not the thread_local names: inside the parallel region those would name each
  // OpenMP thread's own (empty) buffers.
  float* const v = wino_buffer(t_wino_v, P * tb * C);
  float* const m = wino_buffer(t_wino_m, P * tb * K);
  for (long b0 = 0; b0 < ntiles; b0 += long(tb)) {
    const long nb = std::min(long(tb), ntiles - b0);
#pragma omp parallel
    {
      const int nt = omp_get_num_threads(), id = omp_get_thread_num();
      wino_input_tiles(kt, L, b0, nb * id / nt, nb * (id + 1) / nt, v, tb * C);
#pragma omp barrier
      const PackedB& u0 = w.u[0];
      const size_t split = std::min<size_t>(u0.panels, 4);
      const size_t per = (u0.panels + split - 1) / split;
#pragma omp for schedule(dynamic, 1)
      for (long job = 0; job < long(P * split); ++job) {
        const size_t xi = size_t(job) / split, p0 = (size_t(job) % split) * per;
        const size_t p1 = std::min(u0.panels, p0 + per);
        if (p0 >= p1) continue;
        StridedA a(v + xi * tb * C, C);
        gemm_panels(size_t(nb), a, w.u[xi], p0, p1, m + xi * tb * K, K, nullptr);
      }
      wino_output_tiles(kt, L, b0, nb * id / nt, nb * (id + 1) / nt, m, tb * K);
    }
  }
}

// --- depthwise and pooling -------------------------------------------------------------

void dwconv3x3(const ConvGeom& g, InBand in, OutBand out, const float* w9c, const float* bias,
               const MinMax* mm) {
  const KernelTable& kt = active();
  const size_t rf = size_t(g.in_w * g.cin);
#pragma omp parallel for schedule(static)
  for (long r = 0; r < out.rows; ++r) {
    const long oy = out.row0 + r;
    const float* rows[3];
    for (int ky = 0; ky < 3; ++ky) rows[ky] = in.row(oy * g.sh - g.pad_t + ky, g.in_h, rf);
    kt.dwconv3x3(rows, size_t(g.in_w), size_t(g.cin), size_t(g.sw), size_t(g.pad_l), w9c, bias,
                 out.data + size_t(r) * g.out_w * g.cout, size_t(g.out_w), mm);
  }
}

void pool2d(PoolKind kind, const ConvGeom& g, InBand in, OutBand out) {
  const KernelTable& kt = active();
  const size_t rf = size_t(g.in_w * g.cin);
  const PoolRowFn fn = kind == PoolKind::max ? kt.maxpool_row : kt.avgpool_row;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < out.rows; ++r) {
    const long oy = out.row0 + r;
    std::vector<const float*> rows;
    for (long ky = 0; ky < g.kh; ++ky)
      if (const float* p = in.row(oy * g.sh - g.pad_t + ky, g.in_h, rf)) rows.push_back(p);
    fn(rows.data(), rows.size(), size_t(g.in_w), size_t(g.cin), size_t(g.kw), size_t(g.sw),
       size_t(g.pad_l), out.data + size_t(r) * g.out_w * g.cout, size_t(g.out_w));
  }
}

}  // namespace eb::kernels
