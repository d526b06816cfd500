#include "dist/runtime/sparse_wire.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "dist/plan/link.h"
#include "dist/runtime/protocol.h"
#include "kernels/microkernels.h"

namespace eb::dist {
namespace {
size_t mask_words(size_t n) {
  return (n + 63) / 64;
}
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "mask words are little-endian on the wire and in memory");
}  // namespace

// The loops are microkernels (KernelTable::count_sent, elide_zeros, expand_zeros): vector code
// per ISA, checked against a plain twin in tests/test_microkernels.cpp.
size_t count_sent_values(const float* v, size_t n) {
  return kernels::active().count_sent(v, n);
}

size_t sparse_bytes(size_t n, size_t sent) {
  return mask_words(n) * 8 + sent * sizeof(float);
}

namespace {
// Room for the sparse form plus the slack past its last value, where the kernel's vector stores
// write (garbage).
size_t encode_room(size_t n, size_t sent) {
  return sparse_bytes(n, sent) + kernels::kElideSlack * sizeof(float);
}
// Writes the sparse form of v[0, n), of which `sent` are not +0.0, to out (encode_room bytes,
// 8-byte aligned: for the mask words, and so for the values after them). The kernel writes as
// many values as it finds: only counts taken here, from the same values, reach it.
void encode_into(const float* v, size_t n, uint8_t* out) {
  kernels::active().elide_zeros(v, n, reinterpret_cast<uint64_t*>(out),
                                reinterpret_cast<float*>(out + mask_words(n) * 8));
}
}  // namespace

std::vector<uint8_t> sparse_encode(const float* v, size_t n) {
  const size_t sent = count_sent_values(v, n);
  std::vector<uint8_t> out(encode_room(n, sent));
  encode_into(v, n, out.data());
  out.resize(sparse_bytes(n, sent));
  return out;
}

std::unique_ptr<SparseFrame> SparseFrame::encode_if_smaller(const float* v, size_t n) {
  const size_t sent = count_sent_values(v, n);
  if (!compact_form_pays(sparse_bytes(n, sent), n * sizeof(float))) return nullptr;
  return std::unique_ptr<SparseFrame>(new SparseFrame(v, n, sent));
}

SparseFrame::SparseFrame(const float* v, size_t n, size_t sent) : size_(sparse_bytes(n, sent)) {
  const size_t room = encode_room(n, sent);
  if (buffer_cached(room)) {
    mapped_ = take_buffer(room, false);
    p_ = static_cast<uint8_t*>(mapped_.data);
  } else {
    heap_.reset(new uint8_t[room]);  // not value-initialised: no zero fill
    p_ = heap_.get();
  }
  encode_into(v, n, p_);
}

SparseFrame::~SparseFrame() {
  if (mapped_.data) give_buffer(mapped_);
}

void sparse_decode(const uint8_t* in, size_t bytes, float* dst, size_t n) {
  const size_t words = mask_words(n);
  if (bytes < words * 8) throw ProtocolError("sparse rows shorter than their masks");
  std::vector<uint64_t> masks(words);
  if (words) std::memcpy(masks.data(), in, words * 8);
  size_t sent = 0;
  for (uint64_t m : masks) sent += size_t(__builtin_popcountll(m));
  if (n % 64 && (masks.back() >> (n % 64)) != 0)
    throw ProtocolError("sparse mask bits past the rows");
  if (bytes != sparse_bytes(n, sent)) throw ProtocolError("sparse rows do not match their masks");
  const uint8_t* vals = in + words * 8;
  std::unique_ptr<float[]> aligned;  // a frame's payload is a heap buffer; a caller's may not be
  if (reinterpret_cast<uintptr_t>(vals) % alignof(float) != 0) {
    aligned.reset(new float[sent]);
    if (sent) std::memcpy(aligned.get(), vals, sent * sizeof(float));
    vals = reinterpret_cast<const uint8_t*>(aligned.get());
  }
  kernels::active().expand_zeros(masks.data(), reinterpret_cast<const float*>(vals), sent, dst, n);
}

}  // namespace eb::dist
