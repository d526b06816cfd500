#include "kernels/cache.h"

#include <cstdint>
#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#endif

namespace eb::kernels {

void evict_from_caches(const void* p, size_t bytes) {
  if (!p || bytes == 0) return;
  constexpr uintptr_t kLine = 64;  // the smallest line of the CPUs we build for: flushing more often is harmless
  const uintptr_t end = uintptr_t(p) + bytes;
#if defined(__x86_64__) || defined(__i386__)
  for (uintptr_t a = uintptr_t(p) & ~(kLine - 1); a < end; a += kLine) _mm_clflush(reinterpret_cast<const void*>(a));
  _mm_mfence();
#elif defined(__aarch64__)
  for (uintptr_t a = uintptr_t(p) & ~(kLine - 1); a < end; a += kLine) asm volatile("dc civac, %0" ::"r"(a) : "memory");
  asm volatile("dsb ish" ::: "memory");
#else
  (void)end;
#endif
}

}  // namespace eb::kernels
