// The cryptography of the wire, all of it libsodium's (statically linked; no primitive here is
// written by hand): key files, the frame cipher, hex. The handshake that agrees on the keys is
// dist/runtime/handshake.h; docs/SECURITY.md says what is protected and how keys are managed.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace eb {

// Compares without an early exit (sodium_memcmp).
bool equal_constant_time(const void* a, const void* b, size_t n);
std::string to_hex(const uint8_t* p, size_t n);
// Exactly `n` bytes of hex (either case); false on anything else.
bool from_hex(const std::string& s, uint8_t* out, size_t n);

}  // namespace eb

namespace eb::dist {

// sodium_init() once per process (thread-safe); throws if libsodium cannot start.
void crypto_init();
const char* crypto_library_version();  // "libsodium 1.0.18"

using Key32 = std::array<uint8_t, 32>;
using PublicKey = std::array<uint8_t, 32>;  // Ed25519
using Tag16 = std::array<uint8_t, 16>;

// A pre-shared key: exactly 32 random bytes (`edgeband keygen --psk -o FILE` writes them as 64
// hex digits; 44 characters of base64 - `head -c 32 /dev/urandom | base64` - are read too). A
// passphrase is refused: a recorded handshake must not let anyone test guesses offline.
struct Psk {
  Key32 key{};
  bool set = false;
  bool enabled() const { return set; }
};
// Refuses a missing file, one its group or others may read (chmod 600), and anything but
// 32 bytes of key, each with a message saying what to do.
Psk load_psk_file(const std::string& path);
std::string new_psk_text();  // 64 hex digits and a newline

// A device's own key pair (Ed25519, crypto_sign): the secret key file holds "ebsk1-" and the
// 32-byte seed in hex, the public key file "ebpk1-" and the key in hex, then a name.
struct KeyPair {
  PublicKey pk{};
  std::array<uint8_t, 64> sk{};
};
KeyPair new_key_pair();
// Writes PATH (mode 600, refused if it exists) and PATH.pub; returns the public key's line.
std::string write_key_pair(const KeyPair& k, const std::string& path, const std::string& name);
KeyPair load_key_file(const std::string& path);  // same file rules as load_psk_file
std::string public_key_text(const PublicKey& pk);  // "ebpk1-<64 hex>"
bool parse_public_key(const std::string& text, PublicKey* out);
// An authorized-keys / worker-keys file: one public key per line, optionally followed by a name;
// blank lines and lines starting with '#' are skipped. Throws on a malformed line (with its
// number) or a file without keys. A key is revoked by deleting its line.
std::vector<PublicKey> load_public_keys(const std::string& path);

// One direction of a connection: ChaCha20-Poly1305 (IETF, libsodium's AEAD) under its own key,
// the nonce a counter, so every sealed message is used once and in order: a replayed, reordered,
// dropped or reflected (other direction's key) message fails to open. After every
// `rekey_every` messages the key is replaced by a hash of itself and the old one erased, so a
// key taken from a long session's memory does not open its earlier traffic.
class FrameCipher {
 public:
  static constexpr uint64_t kRekeyEvery = 1u << 20;
  FrameCipher() = default;
  explicit FrameCipher(const Key32& key, uint64_t rekey_every = kRekeyEvery);
  ~FrameCipher();
  FrameCipher(const FrameCipher&) = default;
  FrameCipher& operator=(const FrameCipher&) = default;
  bool on() const { return on_; }
  // Encrypts n bytes from src into dst (dst may equal src), binding `ad`; writes the tag.
  void seal(const uint8_t* src, uint8_t* dst, size_t n, const uint8_t* ad, size_t ad_len,
            uint8_t tag[16]);
  // Decrypts in place; false (buffer unspecified) if the tag does not match.
  bool open(uint8_t* buf, size_t n, const uint8_t* ad, size_t ad_len, const uint8_t tag[16]);
  uint64_t messages() const { return counter_; }

 private:
  void advance();
  Key32 key_{};
  uint64_t counter_ = 0, rekey_every_ = kRekeyEvery;
  bool on_ = false;
};

// Sealing plus opening throughput of one core, MB/s of frame data (median of `reps` passes).
double cipher_mb_per_s(size_t bytes = 16u << 20, int reps = 5);

}  // namespace eb::dist
