#include "dist/runtime/poly1305.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "dist/plan/stats.h"

namespace eb {

namespace {
using u128 = unsigned __int128;
constexpr uint64_t kMask44 = 0xfffffffffffull, kMask42 = 0x3ffffffffffull;
inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);  // little-endian targets only (static_assert in dist/runtime/protocol.cpp)
  return v;
}
}  // namespace

Poly1305::Poly1305(const uint8_t key[32]) {
  // r is "clamped" (RFC 8439 2.5.1) and split into 44/44/42-bit limbs.
  const uint64_t t0 = load_le64(key), t1 = load_le64(key + 8);
  r_[0] = t0 & 0xffc0fffffffull;
  r_[1] = ((t0 >> 44) | (t1 << 20)) & 0xfffffc0ffffull;
  r_[2] = (t1 >> 24) & 0x00ffffffc0full;
  pad_[0] = load_le64(key + 16);
  pad_[1] = load_le64(key + 24);
}

void Poly1305::blocks(const uint8_t* p, size_t n, uint64_t hibit) {
  const uint64_t r0 = r_[0], r1 = r_[1], r2 = r_[2];
  const uint64_t s1 = r1 * (5 << 2), s2 = r2 * (5 << 2);  // 2^132 = 4 * 5 mod 2^130 - 5
  uint64_t h0 = h_[0], h1 = h_[1], h2 = h_[2];
  for (; n >= 16; p += 16, n -= 16) {
    const uint64_t t0 = load_le64(p), t1 = load_le64(p + 8);
    h0 += t0 & kMask44;
    h1 += ((t0 >> 44) | (t1 << 20)) & kMask44;
    h2 += ((t1 >> 24) & kMask42) | hibit;
    const u128 d0 = u128(h0) * r0 + u128(h1) * s2 + u128(h2) * s1;
    u128 d1 = u128(h0) * r1 + u128(h1) * r0 + u128(h2) * s2;
    u128 d2 = u128(h0) * r2 + u128(h1) * r1 + u128(h2) * r0;
    uint64_t c = uint64_t(d0 >> 44);
    h0 = uint64_t(d0) & kMask44;
    d1 += c;
    c = uint64_t(d1 >> 44);
    h1 = uint64_t(d1) & kMask44;
    d2 += c;
    c = uint64_t(d2 >> 42);
    h2 = uint64_t(d2) & kMask42;
    h0 += c * 5;
    c = h0 >> 44;
    h0 &= kMask44;
    h1 += c;
  }
  h_[0] = h0, h_[1] = h1, h_[2] = h2;
}

void Poly1305::update(const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  if (buffered_) {
    const size_t take = std::min(n, 16 - buffered_);
    std::memcpy(buf_ + buffered_, p, take);
    buffered_ += take, p += take, n -= take;
    if (buffered_ < 16) return;
    blocks(buf_, 16, 1ull << 40);
    buffered_ = 0;
  }
  const size_t whole = n & ~size_t(15);
  if (whole) blocks(p, whole, 1ull << 40);
  p += whole, n -= whole;
  if (n) std::memcpy(buf_, p, n);
  buffered_ = n;
}

Tag128 Poly1305::finish() {
  if (buffered_) {  // the last partial block carries its 1 bit inside the block
    buf_[buffered_] = 1;
    std::memset(buf_ + buffered_ + 1, 0, 16 - buffered_ - 1);
    blocks(buf_, 16, 0);
  }
  uint64_t h0 = h_[0], h1 = h_[1], h2 = h_[2];
  // Carry fully (two passes: the wrap from h2 into h0 can carry once more), then subtract
  // p = 2^130 - 5 if h >= p, in constant time.
  uint64_t c = 0;
  for (int pass = 0; pass < 2; ++pass) {
    c = h1 >> 44;
    h1 &= kMask44;
    h2 += c;
    c = h2 >> 42;
    h2 &= kMask42;
    h0 += c * 5;
    c = h0 >> 44;
    h0 &= kMask44;
    h1 += c;
  }
  uint64_t g0 = h0 + 5;
  c = g0 >> 44;
  g0 &= kMask44;
  uint64_t g1 = h1 + c;
  c = g1 >> 44;
  g1 &= kMask44;
  uint64_t g2 = h2 + c - (1ull << 42);
  c = (g2 >> 63) - 1;  // all ones when h >= p (no borrow)
  g0 &= c, g1 &= c, g2 &= c;
  c = ~c;
  h0 = (h0 & c) | g0;
  h1 = (h1 & c) | g1;
  h2 = (h2 & c) | g2;
  // h + s mod 2^128.
  const uint64_t t0 = pad_[0], t1 = pad_[1];
  h0 += t0 & kMask44;
  c = h0 >> 44;
  h0 &= kMask44;
  h1 += (((t0 >> 44) | (t1 << 20)) & kMask44) + c;
  c = h1 >> 44;
  h1 &= kMask44;
  h2 += ((t1 >> 24) & kMask42) + c;
  h2 &= kMask42;
  const uint64_t lo = h0 | (h1 << 44), hi = (h1 >> 20) | (h2 << 24);
  Tag128 out;
  std::memcpy(out.data(), &lo, 8);
  std::memcpy(out.data() + 8, &hi, 8);
  return out;
}

double frame_mac_mb_per_s(size_t bytes, int reps) {
  std::vector<uint8_t> buf(bytes);
  for (size_t i = 0; i < bytes; ++i) buf[i] = uint8_t(i * 131);
  const uint8_t key[32] = {1};
  std::vector<double> mbs;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    Poly1305 mac(key);
    mac.update(buf.data(), buf.size());
    const Tag128 d = mac.finish();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    buf[0] ^= d[0];  // keeps the result used
    mbs.push_back(double(bytes) / 1e6 / s);
  }
  return median(mbs);
}

}  // namespace eb
