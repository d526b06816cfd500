// Poly1305 (RFC 8439 section 2.5), our own implementation with 44-bit limbs and 128-bit
// products: a one-time authenticator at several GB/s in portable C++, so authenticated frames
// keep up with gigabit links on boards without SHA instructions (the Raspberry Pi 4's
// Cortex-A72 has none). Each key must authenticate one message only; dist/runtime/protocol.cpp derives a
// fresh key per frame with HMAC-SHA256. Checked against RFC 8439 and an independent big-integer
// implementation (tests/test_auth.cpp).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace eb {

using Tag128 = std::array<uint8_t, 16>;

class Poly1305 {
 public:
  explicit Poly1305(const uint8_t key[32]);
  void update(const void* data, size_t n);
  Tag128 finish();  // the object is spent afterwards

 private:
  void blocks(const uint8_t* p, size_t n, uint64_t hibit);
  uint64_t r_[3], h_[3] = {0, 0, 0}, pad_[2];
  uint8_t buf_[16];
  size_t buffered_ = 0;
};

// Throughput of the frame MAC's bulk part (Poly1305) on one core, MB/s (median of `reps` passes
// over `bytes` bytes): what authenticated frames cost per byte sent or received.
double frame_mac_mb_per_s(size_t bytes = 64u << 20, int reps = 5);

}  // namespace eb
