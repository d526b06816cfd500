// Worker authentication: a shared secret (a file readable by its owner only) and a
// challenge-response handshake with HMAC-SHA256; afterwards every frame carries a MAC under a
// per-connection session key.
//
//   host   -> worker  HELLO      {model, ..., "nonce": Nh}
//   worker -> host    CHALLENGE  {"nonce": Nw}                      (a worker without a secret
//   host   -> worker  AUTH       {"proof": HMAC(K, "edgeband/2 host" | Nw | Nh | SHA256(hello))}
//   worker -> host    HELLO_OK   {..., "proof": HMAC(K, "edgeband/2 worker" | Nw | Nh)}  + MAC
//                                                                    answers HELLO_OK at once)
// Session key = HMAC(K, "edgeband/2 session" | Nw | Nh). Frame MAC = HMAC(session key,
// direction | sequence number | header | JSON | data): a frame cannot be forged, changed,
// replayed, reordered or reflected back to its sender. Both nonces are fresh per connection, so
// a recorded handshake does not authenticate a second time; the host proof covers the HELLO
// text, so a man in the middle cannot change the model, link or wire format the host asked for.
// The worker loads no model and allocates no large buffer before the proof checks out.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "dist/runtime/sha256.h"

namespace eb::dist {

struct Secret {
  std::vector<uint8_t> key;
  bool enabled() const { return !key.empty(); }
};

constexpr size_t kMinSecretBytes = 16;

// Reads the whole file (a trailing newline is dropped). Refuses a missing, short (< 16 bytes)
// file, or one that its group or others may read (chmod 600), with a message saying so.
Secret load_secret_file(const std::string& path);

using Nonce = std::array<uint8_t, 32>;
Nonce random_nonce();  // getrandom(2): the kernel's CSPRNG

Digest256 host_proof(const Secret& s, const Nonce& worker, const Nonce& host,
                     const std::string& hello_text);
Digest256 worker_proof(const Secret& s, const Nonce& worker, const Nonce& host);
Digest256 session_key(const Secret& s, const Nonce& worker, const Nonce& host);

}  // namespace eb::dist
