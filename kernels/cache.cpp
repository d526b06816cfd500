#include "kernels/cache.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#endif

namespace eb::kernels {

namespace {
std::atomic<size_t> g_evicted{0};
std::atomic<size_t> g_sweeps{0};

// The largest cache level's size: glibc's sysconf where it knows (x86), else sysfs (AArch64).
size_t largest_cache_bytes() {
  long most = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
  most = std::max({most, sysconf(_SC_LEVEL2_CACHE_SIZE), sysconf(_SC_LEVEL3_CACHE_SIZE)});
#endif
  for (int i = 0; most <= 0 && i < 8; ++i) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
    long kb = 0;
    char unit = 0;
    if (f >> kb >> unit) most = std::max(most, kb << (unit == 'M' ? 20 : 10));
  }
  return most > 0 ? size_t(most) : size_t(4) << 20;
}
}  // namespace

size_t cache_sweep_bytes() {
  static const size_t bytes = std::clamp(2 * largest_cache_bytes(), size_t(2) << 20, size_t(64) << 20);
  return bytes;
}

void sweep_caches() {
  // Written once, so that every page is its own (an untouched one reads the shared zero page).
  static const std::unique_ptr<uint64_t[]> buf = [] {
    std::unique_ptr<uint64_t[]> b(new uint64_t[cache_sweep_bytes() / 8]);
    std::fill_n(b.get(), cache_sweep_bytes() / 8, 1);
    return b;
  }();
  uint64_t sum = 0;
  for (size_t i = 0; i < cache_sweep_bytes() / 8; i += 8) sum += buf[i];  // a word per line
  static std::atomic<uint64_t> sink;
  sink.store(sum, std::memory_order_relaxed);
  g_sweeps.fetch_add(1, std::memory_order_relaxed);
}

size_t sweep_count() { return g_sweeps.load(std::memory_order_relaxed); }

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
