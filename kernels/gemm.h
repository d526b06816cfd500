// SGEMM driver over the packed-panel microkernels: C[m x n] = A[m x k] * B[k x n] + bias.
// B (the weights) is packed once into NR-wide panels; A is produced tile by tile by an ASource,
// so im2col or the Winograd transform never materialise a whole matrix.
#pragma once
#include <cstddef>
#include <memory>

#include "kernels/microkernels.h"

namespace eb::kernels {

struct PackedB {
  size_t k = 0, n = 0, nr = 0, panels = 0;
  Isa isa = Isa::scalar;
  std::shared_ptr<float> w;     // [panels][k][nr], zero padded
  std::shared_ptr<float> bias;  // [panels * nr], zero padded
  const float* panel(size_t p) const { return w.get() + p * k * nr; }
  const float* panel_bias(size_t p) const { return bias.get() + p * nr; }
  size_t weight_floats() const { return panels * nr * k; }  // what `w` holds
  size_t bias_floats() const { return panels * nr; }        // what `bias` holds
};

// Drops a packed operand (its panels, and its bias of panels * nr floats) from every cache level
// (kernels/cache.h).
void evict_from_caches(const PackedB& b);

// B given row-major [k][n] (ldb floats apart) or, transposed, as [n][k] (OHWI weights).
PackedB pack_b(const float* b, size_t k, size_t n, size_t ldb, const float* bias);
PackedB pack_b_transposed(const float* bt, size_t k, size_t n, const float* bias);

// Supplies rows [m0, m0 + mc) of A (k wide). It may return a pointer into its own storage or
// fill scratch (room for mc * k floats); *stride receives the distance between rows.
class ASource {
 public:
  virtual ~ASource() = default;
  virtual const float* rows(size_t m0, size_t mc, float* scratch, size_t* stride) const = 0;
};

// A plain strided matrix.
class StridedA : public ASource {
 public:
  StridedA(const float* a, size_t stride) : a_(a), stride_(stride) {}
  const float* rows(size_t m0, size_t, float*, size_t* stride) const override {
    *stride = stride_;
    return a_ + m0 * stride_;
  }

 private:
  const float* a_;
  size_t stride_;
};

// C = A * B + bias, clamped by mm (nullptr: no clamp). Parallel over OpenMP threads unless
// parallel is false (for callers already inside a parallel region).
void gemm(size_t m, const ASource& a, const PackedB& b, float* c, size_t ldc, const MinMax* mm,
          bool parallel = true);
// Same on panels [p0, p1) only, single-threaded.
void gemm_panels(size_t m, const ASource& a, const PackedB& b, size_t p0, size_t p1, float* c,
                 size_t ldc, const MinMax* mm);
// The rows of A that gemm takes per block: whole row tiles of mr rows, about 8 of them (6-10
// where there are several blocks, up to 11 in one; an A block of that many rows by one k slice
// stays in L2), balanced over the blocks, whose count is rounded to nearest. Each block reads
// all of its weights again: by a ceiling, 49 rows (a 28x28 map's Winograd tiles, a 7x7 map's
// pixels) made a second block of 1 row that streamed the layer's weights again. Whole tiles:
// only the last block has a remainder tile, which runs fewer independent sums per weight.
size_t row_block(size_t m, size_t mr);

// The cache lines of the weight slice gemm reads after the one at k block k0 of a panel (k rows
// of nr floats): the panel's next k block, or the next panel's first (more_panels), or none. It
// starts where the slice at k0 ends (panels are contiguous), which is where tiles prefetch it.
size_t next_slice_lines(size_t k, size_t nr, size_t k0, bool more_panels);

// What the row tile at row i of an mc-row block (tiles of mr rows) prefetches while it runs over
// one weight slice: its own slice (`own`: nobody fetched it, it comes from memory) or lines
// [first, end) of the next slice's `next_lines` (the slice is in cache). The tiles that do not
// stream their own slice share the next one by rows, so its memory traffic spreads over all of
// this slice's FMAs. Requires i < mc, i a multiple of mr.
struct TilePrefetch {
  bool own;
  size_t first, end;
};
TilePrefetch tile_prefetch(size_t i, size_t mc, size_t mr, bool slice_in_cache, size_t next_lines);

// y[n] = x[k] * B + bias (one row: the fully-connected layer at batch 1).
void gemv(const float* x, const PackedB& b, float* y, const MinMax* mm);
// Outputs [n0, n1) of the same into y[0, n1 - n0): bit-identical to those of gemv (every output
// is its own dot product), so devices can each compute a slice of one layer.
void gemv_range(const float* x, const PackedB& b, size_t n0, size_t n1, float* y, const MinMax* mm);

}  // namespace eb::kernels
