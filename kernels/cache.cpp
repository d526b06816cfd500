#include "kernels/cache.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <string>
#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#endif

namespace eb::kernels {

namespace {
std::atomic<size_t> g_evicted{0};
std::atomic<size_t> g_sweeps{0};

// The largest cache level's size: glibc's sysconf where it knows (x86), and every level sysfs
// lists (AArch64, where sysconf reads 0).
size_t largest_cache_bytes() {
  long most = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
  most = std::max({most, sysconf(_SC_LEVEL2_CACHE_SIZE), sysconf(_SC_LEVEL3_CACHE_SIZE)});
#endif
  for (int i = 0; i < 8; ++i) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
    std::string size;
    if (f >> size) most = std::max(most, long(parse_cache_size(size)));
  }
  return most > 0 ? size_t(most) : size_t(4) << 20;
}
}  // namespace

size_t parse_cache_size(const std::string& text) {
  size_t i = 0, n = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    n = n * 10 + size_t(text[i] - '0');
    if (n > (size_t(1) << 30)) return 0;  // no cache is a billion of any unit (and no overflow)
  }
  if (i == 0) return 0;
  const std::string unit = text.substr(i);
  if (unit.empty()) return n;
  if (unit == "K") return n << 10;
  if (unit == "M") return n << 20;
  if (unit == "G") return n << 30;
  return 0;
}

size_t cache_sweep_bytes() {
  static const size_t bytes = std::clamp(2 * largest_cache_bytes(), size_t(2) << 20, size_t(64) << 20);
  return bytes;
}

void sweep_caches() {
  // Written once, so that every page is its own (an untouched one reads the shared zero page);
  // never freed, so that no thread sweeps freed memory while the process exits.
  const size_t words = cache_sweep_bytes() / 8;
  static const uint64_t* const buf = [words] {
    uint64_t* b = new uint64_t[words];
    std::fill_n(b, words, 1);
    return b;
  }();
  uint64_t sum = 0;
  for (size_t i = 0; i < words; i += 8) sum += buf[i];  // a word per line
  static std::atomic<uint64_t> sink;
  sink.store(sum, std::memory_order_relaxed);
  g_sweeps.fetch_add(1, std::memory_order_relaxed);
}

void read_into_caches(const void* p, size_t bytes) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  unsigned sum = 0;
  for (size_t i = 0; c && i < bytes; i += 64) sum += c[i];
  static std::atomic<unsigned> sink;
  sink.store(sum, std::memory_order_relaxed);
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
