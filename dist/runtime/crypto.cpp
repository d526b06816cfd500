#include "dist/runtime/crypto.h"

#include <sodium.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "dist/plan/stats.h"

namespace eb {

bool equal_constant_time(const void* a, const void* b, size_t n) {
  return sodium_memcmp(a, b, n) == 0;
}

std::string to_hex(const uint8_t* p, size_t n) {
  std::string s(2 * n + 1, '\0');
  sodium_bin2hex(s.data(), s.size(), p, n);
  s.pop_back();
  return s;
}

bool from_hex(const std::string& s, uint8_t* out, size_t n) {
  if (s.size() != 2 * n) return false;
  size_t got = 0;
  const char* end = nullptr;
  return sodium_hex2bin(out, n, s.data(), s.size(), nullptr, &got, &end) == 0 && got == n &&
         end == s.data() + s.size();
}

}  // namespace eb

namespace eb::dist {

void crypto_init() {
  static std::once_flag once;
  static int rc = 0;
  std::call_once(once, [] { rc = sodium_init(); });
  if (rc < 0) throw std::runtime_error("libsodium failed to initialise");
}

const char* crypto_library_version() {
  static const std::string v = std::string("libsodium ") + sodium_version_string();
  return v.c_str();
}

namespace {
// The file's text, refused unless it is a regular file only its owner may read.
std::string read_private_file(const std::string& path, const char* what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw std::runtime_error(std::string(what) + " " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw std::runtime_error(std::string(what) + " " + path + " is not a regular file");
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw std::runtime_error(std::string(what) + " " + path +
                             " is accessible by group or others; run: chmod 600 " + path);
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(std::string("cannot read ") + what + " " + path);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  std::FILE* f = std::fopen(path.c_str(), "wx");  // never overwrites a key
  if (!f) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  ::chmod(path.c_str(), mode);
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) throw std::runtime_error("cannot write " + path);
}
}  // namespace

Psk load_psk_file(const std::string& path) {
  crypto_init();
  const std::string s = read_private_file(path, "key file");
  Psk p;
  size_t got = 0;
  if (from_hex(s, p.key.data(), p.key.size()) ||
      (s.size() == 44 &&
       sodium_base642bin(p.key.data(), p.key.size(), s.data(), s.size(), nullptr, &got, nullptr,
                         sodium_base64_VARIANT_ORIGINAL) == 0 &&
       got == p.key.size())) {
    p.set = true;
    return p;
  }
  throw std::runtime_error("key file " + path +
                           " does not hold a 32-byte random key (64 hex digits or 44 characters "
                           "of base64); passphrases are refused. Create one with: edgeband "
                           "keygen --psk -o " + path);
}

std::string new_psk_text() {
  crypto_init();
  Key32 k;
  randombytes_buf(k.data(), k.size());
  const std::string s = to_hex(k.data(), k.size()) + "\n";
  sodium_memzero(k.data(), k.size());
  return s;
}

KeyPair new_key_pair() {
  crypto_init();
  KeyPair k;
  crypto_sign_keypair(k.pk.data(), k.sk.data());
  return k;
}

std::string public_key_text(const PublicKey& pk) { return "ebpk1-" + to_hex(pk.data(), pk.size()); }

bool parse_public_key(const std::string& text, PublicKey* out) {
  return text.rfind("ebpk1-", 0) == 0 && from_hex(text.substr(6), out->data(), out->size());
}

std::string write_key_pair(const KeyPair& k, const std::string& path, const std::string& name) {
  std::array<uint8_t, 32> seed;
  crypto_sign_ed25519_sk_to_seed(seed.data(), k.sk.data());
  const std::string pub = public_key_text(k.pk) + " " + name;
  write_file(path, "ebsk1-" + to_hex(seed.data(), seed.size()) + "\n", 0600);
  sodium_memzero(seed.data(), seed.size());
  write_file(path + ".pub", pub + "\n", 0644);
  return pub;
}

KeyPair load_key_file(const std::string& path) {
  crypto_init();
  const std::string s = read_private_file(path, "key file");
  std::array<uint8_t, 32> seed;
  if (s.rfind("ebsk1-", 0) != 0 || !from_hex(s.substr(6), seed.data(), seed.size()))
    throw std::runtime_error("key file " + path +
                             " is not an edgeband secret key (create one with: edgeband keygen -o "
                             "NAME)");
  KeyPair k;
  crypto_sign_seed_keypair(k.pk.data(), k.sk.data(), seed.data());
  sodium_memzero(seed.data(), seed.size());
  return k;
}

std::vector<PublicKey> load_public_keys(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read public keys " + path + ": " + std::strerror(errno));
  std::vector<PublicKey> keys;
  std::string line;
  for (int n = 1; std::getline(f, line); ++n) {
    std::istringstream words(line);
    std::string first;
    if (!(words >> first) || first[0] == '#') continue;
    PublicKey pk;
    if (!parse_public_key(first, &pk))
      throw std::runtime_error(path + ":" + std::to_string(n) +
                               ": not a public key (expected ebpk1-<64 hex digits> [name])");
    keys.push_back(pk);
  }
  if (keys.empty()) throw std::runtime_error("public keys file " + path + " lists no key");
  return keys;
}

FrameCipher::FrameCipher(const Key32& key, uint64_t rekey_every)
    : key_(key), rekey_every_(rekey_every ? rekey_every : kRekeyEvery), on_(true) {
  crypto_init();
}

FrameCipher::~FrameCipher() { sodium_memzero(key_.data(), key_.size()); }

void FrameCipher::advance() {
  if (++counter_ % rekey_every_ != 0) return;
  Key32 next;
  static const char label[] = "edgeband/4 rekey";
  crypto_generichash(next.data(), next.size(), reinterpret_cast<const uint8_t*>(label),
                     sizeof label, key_.data(), key_.size());
  key_ = next;
  sodium_memzero(next.data(), next.size());
}

namespace {
void nonce_of(uint64_t counter, uint8_t n[crypto_aead_chacha20poly1305_IETF_NPUBBYTES]) {
  std::memset(n, 0, crypto_aead_chacha20poly1305_IETF_NPUBBYTES);
  std::memcpy(n + 4, &counter, 8);  // little-endian targets only (protocol.cpp asserts it)
}
}  // namespace

void FrameCipher::seal(const uint8_t* src, uint8_t* dst, size_t n, const uint8_t* ad,
                       size_t ad_len, uint8_t tag[16]) {
  if (!on_) throw std::logic_error("FrameCipher::seal without a key");
  uint8_t empty = 0;  // libsodium takes no null pointers, even for no bytes
  if (n == 0) src = dst = &empty;
  uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
  nonce_of(counter_, nonce);
  unsigned long long tag_len = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(dst, tag, &tag_len, src, n, ad, ad_len,
                                                      nullptr, nonce, key_.data());
  advance();
}

bool FrameCipher::open(uint8_t* buf, size_t n, const uint8_t* ad, size_t ad_len,
                       const uint8_t tag[16]) {
  if (!on_) throw std::logic_error("FrameCipher::open without a key");
  uint8_t empty = 0;
  if (n == 0) buf = &empty;
  uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
  nonce_of(counter_, nonce);
  const bool ok = crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                      buf, nullptr, buf, n, tag, ad, ad_len, nonce, key_.data()) == 0;
  advance();
  return ok;
}

double cipher_mb_per_s(size_t bytes, int reps) {
  std::vector<uint8_t> buf(bytes), out(bytes);
  for (size_t i = 0; i < bytes; ++i) buf[i] = uint8_t(i * 131);
  Key32 key{};
  key[0] = 1;
  FrameCipher tx(key), rx(key);
  std::vector<double> mbs;
  for (int r = 0; r < reps; ++r) {
    uint8_t ad[40] = {}, tag[16];
    const auto t0 = std::chrono::steady_clock::now();
    tx.seal(buf.data(), out.data(), bytes, ad, sizeof ad, tag);
    const bool ok = rx.open(out.data(), bytes, ad, sizeof ad, tag);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!ok) throw std::logic_error("cipher self-test failed");
    mbs.push_back(double(bytes) / 1e6 / s);
  }
  return median(mbs);
}

}  // namespace eb::dist
