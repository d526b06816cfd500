// The handshake, written once for both ends (host = client, worker = server), protocol 4:
//
//   host   -> worker  HELLO      {"auth": MODE, "kx": host ephemeral X25519 key}   in clear
//   worker -> host    CHALLENGE  {"kx": worker ephemeral X25519 key}               in clear
//   host   -> worker  AUTH       {"params": {model, wire, link, ...}, [keys: "id", "sig"]}  sealed
//   worker -> host    HELLO_OK   {model, hash, isa, [keys: "id", "sig"]}                    sealed
//
// Both ends derive one key per direction from crypto_kx (X25519 of the two ephemeral keys,
// fresh per connection: forward secrecy), hashed (BLAKE2b) with the transcript of HELLO and
// CHALLENGE and, in pre-shared key mode, keyed by the PSK. From AUTH on, every frame either way
// is encrypted and authenticated (FrameCipher, dist/runtime/crypto.h). MODE is
//   "psk":  both hold the same 32-byte random key; whoever opens AUTH (worker) or HELLO_OK
//           (host) holds it too, since the session keys depend on it;
//   "keys": each device has its own Ed25519 key pair and signs the transcript; the worker
//           accepts only host keys listed in its authorized keys, the host only worker keys it
//           pinned (revoking one device is deleting one line);
//   "none": no keys (loopback, or --insecure): HELLO carries the params and HELLO_OK answers in
//           clear; a worker with keys refuses it, and a host with keys refuses such a worker.
// A worker loads no model and allocates nothing large before AUTH checks out; every numeric
// field of the params is range-checked (check_params).
#pragma once
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/json.h"
#include "dist/runtime/crypto.h"

namespace eb::dist {

enum class AuthMode { none, psk, keys };
const char* auth_mode_name(AuthMode m);

// What one device holds: a pre-shared key, or its own key pair and the keys of the other side
// it trusts (a worker: the hosts'; a host: the workers').
struct Credentials {
  Psk psk;
  std::optional<KeyPair> key;
  std::vector<PublicKey> trusted;
  AuthMode mode() const;  // throws if inconsistent (both modes, or a key pair without peers)
  bool enabled() const { return mode() != AuthMode::none; }
};

// A handshake failure with a sentence for the log and, for the worker, for the host.
struct HandshakeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SessionKeys {
  Key32 send{}, recv{};
};

class Handshake {
 public:
  Handshake(const Credentials& c, bool host_side);
  ~Handshake();
  Handshake(const Handshake&) = delete;
  Handshake& operator=(const Handshake&) = delete;
  AuthMode mode() const { return mode_; }

  // Host: the HELLO; `params` ride in it only in mode none (else in AUTH).
  Json host_hello(const Json& params);
  // Worker: checks HELLO's mode against ours (HandshakeError, to be told to the host); with
  // keys, returns the CHALLENGE to send and keys() holds the session keys. In mode none the
  // params are in HELLO itself (nullopt: answer HELLO_OK at once).
  std::optional<Json> worker_challenge(const std::string& hello_text, const Json& hello);
  // Host: the CHALLENGE answered: keys() is set; returns AUTH (send it sealed).
  Json host_auth(const std::string& hello_text, const std::string& challenge_text,
                 const Json& challenge, const Json& params);
  // Worker: AUTH opened; checks the host's identity (keys mode) and returns the params.
  Json worker_accept(const Json& auth);
  // Worker: adds our identity to HELLO_OK (keys mode).
  void worker_sign(Json& ok) const;
  // Host: checks HELLO_OK's identity (keys mode) and that it arrived sealed when it had to.
  void host_verify(const Json& ok, bool sealed) const;
  const SessionKeys& keys() const { return keys_; }

 private:
  void derive(const std::string& hello_text, const std::string& challenge_text,
              const PublicKey& theirs);
  Json sign(const char* role) const;
  void verify(const Json& j, const char* role) const;
  const Credentials& c_;
  AuthMode mode_;
  bool host_;
  std::array<uint8_t, 32> eph_pk_{}, eph_sk_{};
  std::array<uint8_t, 32> transcript_{};
  SessionKeys keys_;
};

// Range checks of the params a host sends (link rate and delay, channel samples), so that no
// number reaches a chrono conversion out of range; throws HandshakeError naming the field.
void check_params(const Json& params);

}  // namespace eb::dist
