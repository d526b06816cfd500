// Compiled with -mavx512f -mfma: used only when the CPU reports AVX-512F.
#include "kernels/microkernels_impl.h"

namespace eb::kernels {
const KernelTable* avx512_table() {
  // 12x32: 24 zmm accumulators + 2 weight vectors + broadcast fit the 32 registers.
  static const KernelTable t = make_table<xsimd::avx512f, 12, 2, xsimd::fma3<xsimd::avx2>>(Isa::avx512);
  return &t;
}
}  // namespace eb::kernels
