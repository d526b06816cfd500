// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), our own small implementation: the worker
// authentication needs only these two, on x86-64 and aarch64 alike, inside one static binary.
// Checked against the FIPS 180-2 examples and the RFC 4231 test vectors (tests/test_auth.cpp).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace eb {

using Digest256 = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  Digest256 finish();  // the object is spent afterwards

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

Digest256 sha256(const void* data, size_t n);

class HmacSha256 {
 public:
  HmacSha256(const void* key, size_t key_len);
  void update(const void* data, size_t n) { inner_.update(data, n); }
  Digest256 finish();

 private:
  Sha256 inner_, outer_;
};

Digest256 hmac_sha256(const void* key, size_t key_len, const void* data, size_t n);

// Compares without an early exit, so the time taken does not reveal where a forged MAC differs.
bool equal_constant_time(const void* a, const void* b, size_t n);

std::string to_hex(const uint8_t* p, size_t n);
// Strict lowercase/uppercase hex of exactly `n` bytes; false on anything else.
bool from_hex(const std::string& s, uint8_t* out, size_t n);

}  // namespace eb
