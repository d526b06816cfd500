#include "dist/runtime/handshake.h"

#include <sodium.h>

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "dist/plan/link.h"

namespace eb::dist {

const char* auth_mode_name(AuthMode m) {
  switch (m) {
    case AuthMode::none: return "none";
    case AuthMode::psk: return "psk";
    case AuthMode::keys: return "keys";
  }
  return "?";
}

AuthMode Credentials::mode() const {
  if (psk.enabled() && key) throw std::invalid_argument("give a pre-shared key or a key pair, not both");
  if (key && trusted.empty())
    throw std::invalid_argument("a key pair needs the other side's public keys too");
  if (!key && !trusted.empty())
    throw std::invalid_argument("public keys of the other side need this device's own key too");
  return psk.enabled() ? AuthMode::psk : key ? AuthMode::keys : AuthMode::none;
}

Handshake::Handshake(const Credentials& c, bool host_side) : c_(c), mode_(c.mode()), host_(host_side) {
  crypto_init();
  if (mode_ != AuthMode::none) crypto_kx_keypair(eph_pk_.data(), eph_sk_.data());
}

Handshake::~Handshake() {
  sodium_memzero(eph_sk_.data(), eph_sk_.size());
  sodium_memzero(&keys_, sizeof keys_);
}

namespace {
std::string hex_field(const Json& j, const char* name, uint8_t* out, size_t n) {
  if (!j.is_object() || !j.has(name) || !j.at(name).is_string() ||
      !from_hex(j.at(name).string(), out, n))
    throw HandshakeError(std::string("malformed or missing '") + name + "' in the handshake");
  return j.at(name).string();
}
AuthMode parse_mode(const Json& hello) {
  const std::string m = hello.is_object() && hello.has("auth") && hello.at("auth").is_string()
                            ? hello.at("auth").string()
                            : "";
  if (m == "none") return AuthMode::none;
  if (m == "psk") return AuthMode::psk;
  if (m == "keys") return AuthMode::keys;
  throw HandshakeError("HELLO names no known authentication mode (protocol 4 expected)");
}
const char* how_to_match(AuthMode m) {
  switch (m) {
    case AuthMode::none: return "start the host without a key";
    case AuthMode::psk: return "start the host with --secret-file (the same pre-shared key)";
    case AuthMode::keys: return "start the host with --key and --worker-keys";
  }
  return "";
}
}  // namespace

Json Handshake::host_hello(const Json& params) {
  Json h = Json::object();
  h["auth"] = auth_mode_name(mode_);
  if (mode_ == AuthMode::none)
    h["params"] = params;
  else
    h["kx"] = to_hex(eph_pk_.data(), eph_pk_.size());
  return h;
}

std::optional<Json> Handshake::worker_challenge(const std::string& hello_text, const Json& hello) {
  const AuthMode theirs = parse_mode(hello);
  if (theirs != mode_) {
    if (mode_ == AuthMode::none)
      throw HandshakeError(std::string("this worker has no key (host offers ") +
                           auth_mode_name(theirs) + "): start it with the host's kind of key");
    throw HandshakeError(std::string("this worker requires authentication (") +
                         auth_mode_name(mode_) + "): " + how_to_match(mode_));
  }
  if (mode_ == AuthMode::none) return std::nullopt;
  PublicKey host_eph;
  hex_field(hello, "kx", host_eph.data(), host_eph.size());
  Json c = Json::object();
  c["kx"] = to_hex(eph_pk_.data(), eph_pk_.size());
  derive(hello_text, c.dump(), host_eph);
  return c;
}

Json Handshake::host_auth(const std::string& hello_text, const std::string& challenge_text,
                          const Json& challenge, const Json& params) {
  if (mode_ == AuthMode::none)
    throw HandshakeError("the worker requires authentication: give this host its key (--secret-file, or --key and --worker-keys)");
  PublicKey worker_eph;
  hex_field(challenge, "kx", worker_eph.data(), worker_eph.size());
  derive(hello_text, challenge_text, worker_eph);
  Json a = mode_ == AuthMode::keys ? sign("host") : Json::object();
  a["params"] = params;
  return a;
}

Json Handshake::worker_accept(const Json& auth) {
  if (mode_ == AuthMode::keys) verify(auth, "host");
  if (!auth.is_object() || !auth.has("params")) throw HandshakeError("AUTH without params");
  return auth.at("params");
}

void Handshake::worker_sign(Json& ok) const {
  if (mode_ != AuthMode::keys) return;
  const Json s = sign("worker");
  ok["id"] = s.at("id");
  ok["sig"] = s.at("sig");
}

void Handshake::host_verify(const Json& ok, bool sealed) const {
  if (mode_ == AuthMode::none) return;
  if (!sealed) throw HandshakeError("answered without authentication (a worker started without a key?)");
  if (mode_ == AuthMode::keys) verify(ok, "worker");
}

// Session keys: crypto_kx's two keys (X25519 of both ephemeral keys, hashed with both public
// keys), each hashed again with the transcript of HELLO and CHALLENGE (a man in the middle who
// alters either leaves the two ends with different keys) and, in psk mode, keyed by the PSK.
void Handshake::derive(const std::string& hello_text, const std::string& challenge_text,
                       const PublicKey& theirs) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, transcript_.size());
  for (const std::string* part : {&hello_text, &challenge_text}) {
    const uint64_t n = part->size();
    crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(&n), sizeof n);
    crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(part->data()), n);
  }
  crypto_generichash_final(&st, transcript_.data(), transcript_.size());
  Key32 rx, tx;
  const int rc = host_ ? crypto_kx_client_session_keys(rx.data(), tx.data(), eph_pk_.data(),
                                                        eph_sk_.data(), theirs.data())
                       : crypto_kx_server_session_keys(rx.data(), tx.data(), eph_pk_.data(),
                                                        eph_sk_.data(), theirs.data());
  sodium_memzero(eph_sk_.data(), eph_sk_.size());  // used once
  if (rc != 0) throw HandshakeError("invalid key exchange value");
  // Host tx = worker rx: label by direction, so both ends label the same key the same way.
  auto finish = [&](const Key32& k, const char* label, Key32* out) {
    crypto_generichash_state s;
    const bool psk = mode_ == AuthMode::psk;
    crypto_generichash_init(&s, psk ? c_.psk.key.data() : nullptr, psk ? c_.psk.key.size() : 0,
                            out->size());
    crypto_generichash_update(&s, reinterpret_cast<const uint8_t*>(label), std::strlen(label) + 1);
    crypto_generichash_update(&s, k.data(), k.size());
    crypto_generichash_update(&s, transcript_.data(), transcript_.size());
    crypto_generichash_final(&s, out->data(), out->size());
  };
  finish(host_ ? tx : rx, "edgeband/4 host->worker", host_ ? &keys_.send : &keys_.recv);
  finish(host_ ? rx : tx, "edgeband/4 worker->host", host_ ? &keys_.recv : &keys_.send);
  sodium_memzero(rx.data(), rx.size());
  sodium_memzero(tx.data(), tx.size());
}

namespace {
std::vector<uint8_t> signed_text(const char* role, const std::array<uint8_t, 32>& transcript) {
  const std::string label = std::string("edgeband/4 ") + role;
  std::vector<uint8_t> m(label.begin(), label.end());
  m.push_back(0);
  m.insert(m.end(), transcript.begin(), transcript.end());
  return m;
}
}  // namespace

Json Handshake::sign(const char* role) const {
  const std::vector<uint8_t> m = signed_text(role, transcript_);
  std::array<uint8_t, crypto_sign_BYTES> sig;
  crypto_sign_detached(sig.data(), nullptr, m.data(), m.size(), c_.key->sk.data());
  Json j = Json::object();
  j["id"] = public_key_text(c_.key->pk);
  j["sig"] = to_hex(sig.data(), sig.size());
  return j;
}

void Handshake::verify(const Json& j, const char* role) const {
  PublicKey id;
  if (!j.is_object() || !j.has("id") || !j.at("id").is_string() ||
      !parse_public_key(j.at("id").string(), &id))
    throw HandshakeError(std::string("the ") + role + " sent no public key");
  bool known = false;
  for (const PublicKey& k : c_.trusted) known = known || equal_constant_time(k.data(), id.data(), id.size());
  if (!known)
    throw HandshakeError(std::string("the ") + role + "'s key " + public_key_text(id) +
                         (host_ ? " is not among this host's worker keys"
                                : " is not among this worker's authorized keys"));
  std::array<uint8_t, crypto_sign_BYTES> sig;
  hex_field(j, "sig", sig.data(), sig.size());
  const std::vector<uint8_t> m = signed_text(role, transcript_);
  if (crypto_sign_verify_detached(sig.data(), m.data(), m.size(), id.data()) != 0)
    throw HandshakeError(std::string("the ") + role + "'s signature does not verify");
}

void check_params(const Json& p) {
  if (!p.is_object()) throw HandshakeError("params are not an object");
  if (p.has("link") && !p.at("link").is_null()) {
    LinkModel l;
    try {
      l = parse_link(p.at("link").string("link"));
    } catch (const std::exception& e) {
      throw HandshakeError(std::string("link: ") + e.what());
    }
    if (!(l.bits_per_s >= 1e3 && l.bits_per_s <= 1e12) || !(l.latency_s >= 0 && l.latency_s <= 10))
      throw HandshakeError("link out of range (rate 1 kbit/s to 1 Tbit/s, delay 0 to 10 s)");
  }
  if (p.has("channel")) {
    const Json& c = p.at("channel");
    if (!c.is_object() || !c.has("t_s") || !c.has("mbit") || !c.has("elapsed_s") ||
        !c.at("t_s").is_array() || !c.at("mbit").is_array() || !c.at("elapsed_s").is_number())
      throw HandshakeError("malformed channel");
    const Json::Array &t = c.at("t_s").items(), &r = c.at("mbit").items();
    if (t.size() != r.size() || t.empty() || t.size() > 100000)
      throw HandshakeError("channel: 1 to 100000 samples");
    for (size_t i = 0; i < t.size(); ++i)
      if (!t[i].is_number() || !r[i].is_number() || !(t[i].number() >= 0 && t[i].number() <= 1e6) ||
          !(r[i].number() >= 1e-3 && r[i].number() <= 1e6))
        throw HandshakeError("channel sample out of range (0 to 1e6 s, 0.001 to 1e6 Mbit/s)");
    const double e = c.at("elapsed_s").number();
    if (!(e >= 0 && e <= 1e6)) throw HandshakeError("channel elapsed_s out of range");
  }
  if (p.has("wire") && (!p.at("wire").is_string() ||
                        (p.at("wire").string() != "fp32" && p.at("wire").string() != "fp16")))
    throw HandshakeError("wire must be fp32 or fp16");
  if (!p.has("model") || !p.at("model").is_string() || p.at("model").string().size() > 256)
    throw HandshakeError("params name no model");
}

}  // namespace eb::dist
