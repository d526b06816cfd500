// Portable fallback with no SIMD assumptions; also the reference for the dispatch tests.
#define EB_SCALAR_ONLY
#include "kernels/microkernels_impl.h"

namespace eb::kernels {
const KernelTable* scalar_table() {
  static const KernelTable t = make_table<simd::scalar_arch, 4, 8, simd::scalar_arch>(Isa::scalar);
  return &t;
}
}  // namespace eb::kernels
