#include "core/buffer_cache.h"

#include <sys/mman.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

namespace eb {

namespace {
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

constexpr size_t kPage = 4096;

struct Cache {
  std::mutex mu;
  std::vector<MappedBuffer> free;  // oldest first
  BufferCacheStats st;
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: tensors may outlive static destructors
  return *c;
}

void unmap(const std::vector<MappedBuffer>& bs) {
  for (const MappedBuffer& b : bs) munmap(b.data, b.size);
}

}  // namespace

void tune_heap_for_inference() {
#if defined(__GLIBC__)
  // With large tensors here, what remains large in the heap is weights: a layer's source, freed
  // once packed, and its packed panels. Those get their own mappings too (a fixed threshold:
  // glibc's own rises after the first free, putting the next source back in the heap) and go
  // back to the system whole when freed, instead of leaving holes that the next layer's
  // weights grow around.
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_THRESHOLD, int(kCachedBufferMin));
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
  });
#endif
}

bool buffer_cached(size_t bytes) { return !kSanitized && bytes >= kCachedBufferMin; }

MappedBuffer take_buffer(size_t bytes, bool zero) {
  tune_heap_for_inference();
  const size_t size = std::max<size_t>(kPage, (bytes + kPage - 1) / kPage * kPage);
  Cache& c = cache();
  MappedBuffer b;
  std::vector<MappedBuffer> drop;
  {
    std::lock_guard<std::mutex> lk(c.mu);
    drop.reserve(c.free.size());  // nothing below throws once the cache is changed
    // Best fit among those at most twice the size: a small band never pins a large buffer.
    auto best = c.free.end();
    for (auto it = c.free.begin(); it != c.free.end(); ++it)
      if (it->size >= size && it->size <= 2 * size && (best == c.free.end() || it->size < best->size))
        best = it;
    if (best != c.free.end()) {
      b = *best;
      c.free.erase(best);
      c.st.cached_bytes -= b.size;
      c.st.live_bytes += b.size;
      c.st.live_peak = std::max(c.st.live_peak, c.st.live_bytes);
      ++c.st.reused;
    } else {
      // Mapped buffers, handed out and cached, stay within twice the most handed out at once:
      // room for a chain's sizes (halving from layer to layer, each handed out again on the
      // next run), while the oldest cached (a whole image's bands that a local run left, when
      // a plan's bands are asked for) are unmapped. Within once, MobileNet-V1 mapped afresh
      // six buffers a run and took 35% longer.
      const size_t budget = std::max(kCachedWorkingSets * c.st.live_peak, c.st.live_bytes + size);
      while (!c.free.empty() && c.st.live_bytes + c.st.cached_bytes + size > budget) {
        drop.push_back(c.free.front());
        c.st.cached_bytes -= c.free.front().size;
        c.free.erase(c.free.begin());
      }
    }
  }
  unmap(drop);
  if (b.data) {
    // Only what was asked for: pages of a larger buffer beyond it stay as they are.
    if (zero) std::memset(b.data, 0, std::min(b.size, (bytes + 63) / 64 * 64));
    return b;
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {  // an address-space limit (ulimit -v): the cached ones may be in the way
    release_cached_buffers();
    p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
  }
  std::lock_guard<std::mutex> lk(c.mu);
  c.st.live_bytes += size;
  c.st.live_peak = std::max(c.st.live_peak, c.st.live_bytes);
  ++c.st.mapped;
  return {p, size};  // zero-filled by the kernel
}

// Runs in a tensor's deleter: never throws.
void give_buffer(MappedBuffer b) noexcept {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  c.st.live_bytes -= b.size;
  try {
    c.free.push_back(b);
  } catch (...) {
    munmap(b.data, b.size);
    return;
  }
  c.st.cached_bytes += b.size;
}

MappedBuffer take_fresh_buffer(size_t bytes) {
  const size_t size = std::max<size_t>(kPage, (bytes + kPage - 1) / kPage * kPage);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return {p, size};
}

void unmap_buffer(MappedBuffer b) noexcept { munmap(b.data, b.size); }

void release_cached_buffers() {
  Cache& c = cache();
  std::vector<MappedBuffer> drop;
  {
    std::lock_guard<std::mutex> lk(c.mu);
    drop.swap(c.free);
    c.st.cached_bytes = 0;
    c.st.live_peak = c.st.live_bytes;  // a new share, a new working set
  }
  unmap(drop);
}

BufferCacheStats buffer_cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  return c.st;
}

}  // namespace eb
