// Compiled with -mavx2 -mfma: the path for AVX2-only CPUs and for valgrind (no AVX-512 there).
#include "kernels/microkernels_impl.h"

namespace eb::kernels {
const KernelTable* avx2_table() {
  // 6x16: 12 ymm accumulators + 2 weight vectors + broadcast out of 16 registers.
  static const KernelTable t =
      make_table<xsimd::fma3<xsimd::avx2>, 6, 2, xsimd::fma3<xsimd::avx2>>(Isa::avx2);
  return &t;
}
}  // namespace eb::kernels
