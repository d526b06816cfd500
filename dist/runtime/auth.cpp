#include "dist/runtime/auth.h"

#include <sys/random.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace eb::dist {

Secret load_secret_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw std::runtime_error("secret file " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw std::runtime_error("secret file " + path + " is not a regular file");
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw std::runtime_error("secret file " + path +
                             " is accessible by group or others; run: chmod 600 " + path);
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read secret file " + path);
  Secret s;
  s.key.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  while (!s.key.empty() && (s.key.back() == '\n' || s.key.back() == '\r')) s.key.pop_back();
  if (s.key.size() < kMinSecretBytes)
    throw std::runtime_error("secret file " + path + " holds " + std::to_string(s.key.size()) +
                             " bytes; at least " + std::to_string(kMinSecretBytes) +
                             " are needed (e.g. head -c 32 /dev/urandom | base64 > " + path + ")");
  return s;
}

Nonce random_nonce() {
  Nonce n;
  size_t got = 0;
  while (got < n.size()) {
    const ssize_t r = ::getrandom(n.data() + got, n.size() - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("getrandom failed: ") + std::strerror(errno));
    }
    got += size_t(r);
  }
  return n;
}

namespace {
Digest256 keyed(const Secret& s, const char* label, const Nonce& w, const Nonce& h,
                const Digest256* extra) {
  HmacSha256 mac(s.key.data(), s.key.size());
  mac.update(label, std::strlen(label) + 1);  // with its NUL: labels cannot run into the nonces
  mac.update(w.data(), w.size());
  mac.update(h.data(), h.size());
  if (extra) mac.update(extra->data(), extra->size());
  return mac.finish();
}
}  // namespace

Digest256 host_proof(const Secret& s, const Nonce& worker, const Nonce& host,
                     const std::string& hello_text) {
  const Digest256 hello = sha256(hello_text.data(), hello_text.size());
  return keyed(s, "edgeband/2 host", worker, host, &hello);
}

Digest256 worker_proof(const Secret& s, const Nonce& worker, const Nonce& host) {
  return keyed(s, "edgeband/2 worker", worker, host, nullptr);
}

Digest256 session_key(const Secret& s, const Nonce& worker, const Nonce& host) {
  return keyed(s, "edgeband/2 session", worker, host, nullptr);
}

}  // namespace eb::dist
