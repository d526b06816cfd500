// Lossless zero elision for fp32 rows on the wire. Activations after ReLU are about half zeros
// (VGG-16 and MobileNet-V1 here), so a band sent as a bitmap of its non-zero values plus those
// values moves about 53% of the raw bytes, with every bit of every value kept.
//
// Layout: ceil(n / 64) little-endian 64-bit mask words (bit i of word w: value 64w + i is
// sent), then the sent values in order as raw fp32. A value is elided only when all its bits
// are zero: -0.0 and NaNs travel as they are. Mask bits past n are zero.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/buffer_cache.h"

namespace eb::dist {

// Values of v[0, n) that are not +0.0 (what a sparse frame carries).
size_t count_sent_values(const float* v, size_t n);
// Bytes of the sparse form of n values of which `sent` are not +0.0.
size_t sparse_bytes(size_t n, size_t sent);
// The sparse form of v[0, n): sparse_bytes(n, count_sent_values(v, n)) bytes.
std::vector<uint8_t> sparse_encode(const float* v, size_t n);
// The sparse form in a buffer of its own, for a frame in flight: a large one from the tensor
// buffer cache (core/buffer_cache.h), a small one from the heap, neither zero-filled first. A
// fresh mapping per frame cost more than the encoding: 0.70 against 0.15 ns per byte for a
// 1 MiB band.
class SparseFrame {
 public:
  // The frame, or null where the sparse form would not save an eighth of the raw fp32 bytes:
  // raw rows then cost nothing to encode or decode. Counts the values once, itself, so no count
  // from a caller can disagree with what the kernel writes.
  static std::unique_ptr<SparseFrame> encode_if_smaller(const float* v, size_t n);
  ~SparseFrame();
  SparseFrame(const SparseFrame&) = delete;
  SparseFrame& operator=(const SparseFrame&) = delete;
  const uint8_t* data() const { return p_; }
  size_t size() const { return size_; }

 private:
  SparseFrame(const float* v, size_t n, size_t sent);
  MappedBuffer mapped_;
  std::unique_ptr<uint8_t[]> heap_;
  uint8_t* p_ = nullptr;
  size_t size_ = 0;
};
// Decodes a sparse form of n values into dst; throws ProtocolError (dist/runtime/protocol.h) when its
// size does not match its masks or a mask bit past n is set. dst is untouched then.
void sparse_decode(const uint8_t* in, size_t bytes, float* dst, size_t n);

}  // namespace eb::dist
