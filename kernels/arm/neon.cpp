// aarch64 Advanced SIMD: 32 q registers of 4 floats.
#include "kernels/microkernels_impl.h"

namespace eb::kernels {
const KernelTable* neon_table() {
  // 8x12: 24 accumulators + 3 weight vectors + broadcast within the 32 registers.
  static const KernelTable t = make_table<xsimd::neon64, 8, 3, xsimd::neon64>(Isa::neon);
  return &t;
}
}  // namespace eb::kernels
