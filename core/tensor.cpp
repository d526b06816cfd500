#include "core/tensor.h"

#include "core/buffer_cache.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include <sys/resource.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace eb {

// VmHWM, this address space's own high-water mark: ru_maxrss is not, since Linux carries the
// pre-exec image's peak across execve, so a worker spawned by a 750 MB `cluster` host read
// 750 MB before it had loaded anything.
long peak_rss_kb() {
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    long kb = -1;
    while (kb < 0 && std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "VmHWM:", 6) == 0) kb = std::strtol(line + 6, nullptr, 10);
    std::fclose(f);
    if (kb >= 0) return kb;
  }
  struct rusage ru {};
  return getrusage(RUSAGE_SELF, &ru) == 0 ? long(ru.ru_maxrss) : 0;
}

RowRange RowRange::clip(int h) const {
  RowRange r{std::max(begin, 0), std::min(end, h)};
  if (r.end < r.begin) r.end = r.begin;
  return r;
}

RowRange RowRange::unite(const RowRange& o) const {
  if (empty()) return o;
  if (o.empty()) return *this;
  return {std::min(begin, o.begin), std::max(end, o.end)};
}

std::string Shape::str() const {
  return std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c);
}

void release_free_heap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

void release_free_memory() {
  release_cached_buffers();
  release_free_heap();
}

float* aligned_alloc_floats(size_t n, bool zero) {
  size_t bytes = std::max<size_t>(64, (n * sizeof(float) + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  if (zero) std::memset(p, 0, bytes);
  return static_cast<float*>(p);
}

void AlignedFree::operator()(float* p) const { std::free(p); }

namespace {
// Large tensors come from the buffer cache (core/buffer_cache.h), small ones from the heap.
std::shared_ptr<float> tensor_storage(size_t n, bool zero) {
  const size_t bytes = n * sizeof(float);
  if (!buffer_cached(bytes)) return std::shared_ptr<float>(aligned_alloc_floats(n, zero), AlignedFree{});
  const MappedBuffer b = take_buffer(bytes, zero);
  return std::shared_ptr<float>(static_cast<float*>(b.data), [b](float*) { give_buffer(b); });
}
}  // namespace

Tensor::Tensor(Shape s) : shape_(s) {
  if (s.h < 0 || s.w < 0 || s.c < 0) throw std::invalid_argument("negative tensor shape " + s.str());
  storage_ = tensor_storage(s.size(), true);
  ptr_ = storage_.get();
}

Tensor Tensor::uninitialized(Shape s) {
  if (s.h < 0 || s.w < 0 || s.c < 0) throw std::invalid_argument("negative tensor shape " + s.str());
  Tensor t;
  t.shape_ = s;
  t.storage_ = tensor_storage(s.size(), false);
  t.ptr_ = t.storage_.get();
  return t;
}

bool Tensor::sole_owner() const {
  if (storage_.use_count() != 1) return false;
  // That read is relaxed and orders nothing (nor would ThreadSanitizer see a fence). Copying
  // the pointer is an acquire-release on the count (libstdc++) that reads the last other
  // owner's release, so its reads, before it let go on its thread, happen before our writes.
  const std::shared_ptr<float> probe = storage_;
  return true;
}

Tensor Tensor::sparse(Shape s) {
  if (s.h < 0 || s.w < 0 || s.c < 0) throw std::invalid_argument("negative tensor shape " + s.str());
  const size_t bytes = s.size() * sizeof(float);
  if (!buffer_cached(bytes)) return uninitialized(s);
  Tensor t;
  t.shape_ = s;
  const MappedBuffer b = take_fresh_buffer(bytes);
  t.storage_ = std::shared_ptr<float>(static_cast<float*>(b.data), [b](float*) { unmap_buffer(b); });
  t.ptr_ = t.storage_.get();
  return t;
}

Tensor Tensor::rows(RowRange r) const {
  if (r.begin < 0 || r.end > shape_.h || r.end < r.begin)
    throw std::out_of_range("row view out of range");
  Tensor v = *this;
  v.shape_.h = r.size();
  v.ptr_ = ptr_ + size_t(r.begin) * shape_.row_size();
  return v;
}

Tensor Tensor::clone() const {
  Tensor t(shape_);
  if (size()) std::memcpy(t.data(), ptr_, size() * sizeof(float));
  return t;
}

Tensor Tensor::reshaped(Shape s) const {
  if (s.size() != size()) throw std::invalid_argument("reshape " + shape_.str() + " -> " + s.str());
  Tensor v = *this;
  v.shape_ = s;
  return v;
}

}  // namespace eb
