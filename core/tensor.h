// Tensors are H-major (HWC, batch handled by the caller): every row of a feature map is one
// contiguous slice, so a band of rows [r0, r1) is a single pointer range that can be computed,
// sent or received without copies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace eb {

// Half-open range of image rows [begin, end).
struct RowRange {
  int begin = 0;
  int end = 0;
  int size() const { return end > begin ? end - begin : 0; }
  bool empty() const { return end <= begin; }
  bool contains(const RowRange& o) const { return o.empty() || (begin <= o.begin && o.end <= end); }
  RowRange clip(int h) const;
  RowRange unite(const RowRange& o) const;  // smallest range holding both
  bool operator==(const RowRange& o) const { return begin == o.begin && end == o.end; }
  bool operator!=(const RowRange& o) const { return !(*this == o); }
};

struct Shape {
  int h = 0, w = 0, c = 0;
  size_t size() const { return size_t(h) * w * c; }
  size_t row_size() const { return size_t(w) * c; }
  bool operator==(const Shape& o) const { return h == o.h && w == o.w && c == o.c; }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;
};

float* aligned_alloc_floats(size_t n, bool zero = true);  // 64-byte aligned
// This process's peak resident memory in KiB: VmHWM where /proc has it, else ru_maxrss.
long peak_rss_kb();
// Hands the pages the heap holds free back to the system (glibc's malloc_trim; elsewhere
// nothing): what whole-model runs streamed through the heap would otherwise stay resident
// beside the share a device loads next.
void release_free_heap();
// That, and the large tensor buffers cached for reuse (core/buffer_cache.h): before a device
// loads a plan's share.
void release_free_memory();
struct AlignedFree {
  void operator()(float* p) const;
};

// A float HWC tensor; copies share storage (views), clone() deep-copies.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape s);
  // Storage left uninitialised: for outputs that a layer overwrites completely.
  static Tensor uninitialized(Shape s);
  // Uninitialised too, and a large one freshly mapped rather than from the buffer cache: only
  // the rows written become resident (a device's FeatureStore keeps whole maps, writes its rows).
  static Tensor sparse(Shape s);
  Tensor(int h, int w, int c) : Tensor(Shape{h, w, c}) {}

  const Shape& shape() const { return shape_; }
  int h() const { return shape_.h; }
  int w() const { return shape_.w; }
  int c() const { return shape_.c; }
  size_t size() const { return shape_.size(); }
  bool empty() const { return size() == 0; }
  float* data() { return ptr_; }
  const float* data() const { return ptr_; }
  float* row(int y) { return ptr_ + size_t(y) * shape_.row_size(); }
  const float* row(int y) const { return ptr_ + size_t(y) * shape_.row_size(); }
  float& at(int y, int x, int ch) { return ptr_[(size_t(y) * shape_.w + x) * shape_.c + ch]; }
  float at(int y, int x, int ch) const { return ptr_[(size_t(y) * shape_.w + x) * shape_.c + ch]; }

  // View of rows [r.begin, r.end) sharing storage.
  Tensor rows(RowRange r) const;
  Tensor clone() const;
  // The buffer this tensor (or view) lives in: holding it keeps data() valid.
  std::shared_ptr<const float> storage() const { return storage_; }
  // No view, copy or storage() holder of this buffer is left elsewhere: writing it changes
  // nothing another owner reads (a frame in flight).
  bool sole_owner() const;
  // Reinterpret with a new shape of the same element count (shares storage).
  Tensor reshaped(Shape s) const;

 private:
  Shape shape_;
  std::shared_ptr<float> storage_;
  float* ptr_ = nullptr;
};

// A band: the rows [row0, row0 + t.h()) of a feature map whose full height is full_h.
struct Band {
  Tensor t;
  int row0 = 0;
  RowRange rows() const { return {row0, row0 + t.h()}; }
  // Pointer to absolute row y (must lie inside the band).
  const float* row(int y) const { return t.row(y - row0); }
  float* row(int y) { return t.row(y - row0); }
};

}  // namespace eb
