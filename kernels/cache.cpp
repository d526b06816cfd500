#include "kernels/cache.h"

#include <atomic>
#include <cstdint>
#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#endif

namespace eb::kernels {

namespace {
std::atomic<size_t> g_evicted{0};
}  // namespace

size_t evicted_bytes() { return g_evicted.load(std::memory_order_relaxed); }

void evict_from_caches(const void* p, size_t bytes) {
  if (!p || bytes == 0) return;
  g_evicted.fetch_add(bytes, std::memory_order_relaxed);
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
