// Large tensor buffers (a layer's output band, which lives one inference; also a large wire
// frame while it is in flight, dist/runtime/sparse_wire.h) in their own mappings, kept after
// they are freed and handed out again, as ncnn's pool allocator does.
// In the heap, each inference's differently sized bands, with the weights that loading and
// streaming put between them, left holes the next run grew around: a MobileNet-V1 host read
// 38 MB for 26 MB in use. Fresh mappings each time avoid that, but their page faults made
// MobileNet's forward take 1.8x as long.
#pragma once
#include <cstddef>

namespace eb {

struct BufferCacheStats {
  size_t live_bytes = 0;     // handed out now
  size_t cached_bytes = 0;   // freed, kept mapped for reuse
  size_t live_peak = 0;      // most handed out at once
  size_t reused = 0, mapped = 0;
};

// Smaller buffers come from the heap, as do all of them under AddressSanitizer (whose redzones
// around heap blocks catch a kernel writing past its band).
constexpr size_t kCachedBufferMin = size_t(256) << 10;
// Whether take() serves `bytes` from the cache (else the caller uses the heap).
bool buffer_cached(size_t bytes);
struct MappedBuffer {
  void* data = nullptr;
  size_t size = 0;  // mapped bytes
};
// A page-aligned buffer of at least `bytes`, zero-filled if `zero`: a cached one of up to twice
// the size, or a new mapping. Thread-safe.
MappedBuffer take_buffer(size_t bytes, bool zero);
// Caches it. Handed out and cached together stay within kCachedWorkingSets times the most ever
// handed out at once: take_buffer() unmaps the oldest cached before it maps beyond that.
void give_buffer(MappedBuffer b) noexcept;
constexpr size_t kCachedWorkingSets = 2;
// A fresh mapping outside the cache, for a buffer mostly left unwritten (a device's FeatureStore
// holds whole maps and writes its rows): only pages written become resident, where a cached
// buffer was written whole by its last user. unmap_buffer() it.
MappedBuffer take_fresh_buffer(size_t bytes);
void unmap_buffer(MappedBuffer b) noexcept;
// Sets glibc's heap for a process that runs graphs (once; take_buffer and Graph's loading call
// it): allocations from 256 KB up (weights) in their own mappings.
void tune_heap_for_inference();
// Unmaps every cached buffer (before a device loads a plan's share of the weights).
void release_cached_buffers();
BufferCacheStats buffer_cache_stats();

}  // namespace eb
