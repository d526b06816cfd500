#include "dist/runtime/sparse_wire.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "dist/runtime/protocol.h"

namespace eb::dist {
namespace {
uint32_t bits_of(const float* v) {
  uint32_t b;
  std::memcpy(&b, v, sizeof b);
  return b;
}
size_t mask_words(size_t n) {
  return (n + 63) / 64;
}
}  // namespace

size_t count_sent_values(const float* v, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; ++i) k += bits_of(v + i) != 0;
  return k;
}

size_t sparse_bytes(size_t n, size_t sent) {
  return mask_words(n) * 8 + sent * sizeof(float);
}

std::vector<uint8_t> sparse_encode(const float* v, size_t n, size_t sent) {
  const size_t words = mask_words(n);
  // One spare value: the branch-free loop stores every value and advances past it only when
  // it is sent, so the store after the last sent value lands in the spare.
  std::vector<uint8_t> out(sparse_bytes(n, sent) + sizeof(float));
  uint8_t* vals = out.data() + words * 8;
  size_t j = 0;
  for (size_t w = 0; w < words; ++w) {
    uint64_t m = 0;
    const size_t end = std::min<size_t>(64, n - w * 64);
    for (size_t i = 0; i < end; ++i) {
      const uint32_t b = bits_of(v + w * 64 + i);
      const size_t nz = b != 0;
      m |= uint64_t(nz) << i;
      std::memcpy(vals + std::min(j, sent) * sizeof(float), &b, sizeof b);
      j += nz;
    }
    for (int k = 0; k < 8; ++k) out[w * 8 + size_t(k)] = uint8_t(m >> (8 * k));
  }
  if (j != sent) throw std::logic_error("sparse_encode: sent count does not match the values");
  out.resize(out.size() - sizeof(float));
  return out;
}

void sparse_decode(const uint8_t* in, size_t bytes, float* dst, size_t n) {
  const size_t words = mask_words(n);
  if (bytes < words * 8) throw ProtocolError("sparse rows shorter than their masks");
  std::vector<uint64_t> masks(words);
  size_t sent = 0;
  for (size_t w = 0; w < words; ++w) {
    uint64_t m = 0;
    for (int k = 0; k < 8; ++k) m |= uint64_t(in[w * 8 + size_t(k)]) << (8 * k);
    masks[w] = m;
    sent += size_t(__builtin_popcountll(m));
  }
  if (n % 64 && (masks.back() >> (n % 64)) != 0)
    throw ProtocolError("sparse mask bits past the rows");
  if (bytes != sparse_bytes(n, sent)) throw ProtocolError("sparse rows do not match their masks");
  const uint8_t* vals = in + words * 8;
  size_t j = 0;
  for (size_t w = 0; w < words; ++w) {
    const uint64_t m = masks[w];
    const size_t end = std::min<size_t>(64, n - w * 64);
    for (size_t i = 0; i < end; ++i) {
      const size_t nz = (m >> i) & 1;
      // Branch-free: read the next sent value (clamped: none may be left), keep it if sent.
      uint32_t b = 0;
      if (sent) std::memcpy(&b, vals + std::min(j, sent - 1) * sizeof(float), sizeof b);
      b = nz ? b : 0;
      std::memcpy(dst + w * 64 + i, &b, sizeof b);
      j += nz;
    }
  }
}

}  // namespace eb::dist
