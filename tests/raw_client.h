// A hand-driven worker client for tests, the handshake fuzzer and the soak: it writes frames
// byte by byte as a host - or an attacker - would, with or without a valid MAC.
#pragma once
#include <sys/socket.h>

#include "dist/runtime/tcp.h"
#include <optional>
#include <string>
#include <vector>

#include "dist/runtime/auth.h"
#include "dist/runtime/peer.h"
#include "dist/runtime/protocol.h"

namespace eb::test {

class RawClient {
 public:
  struct Frame {
    dist::FrameHeader h{};
    std::vector<uint8_t> header;
    std::string json;
    std::vector<uint8_t> data;
    Tag128 tag{};
  };

  // Reads time out after `timeout_ms`: a worker that fails to answer or close fails the caller.
  RawClient(const std::string& addr, int timeout_ms) {
    asio::error_code ec;
    s.connect(dist::parse_endpoint(addr), ec);
    ok = !ec;
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (ok) ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  void write(const void* p, size_t n) {
    asio::error_code ec;
    asio::write(s, asio::buffer(p, n), ec);
    if (ec) ok = false;
  }

  // One frame with a valid checksum; with `mac`, a valid MAC under `key` at the next sequence
  // number.
  std::vector<uint8_t> frame(dist::MsgType t, const std::string& json,
                             const std::vector<uint8_t>& data = {}, bool mac = false) {
    std::vector<uint8_t> f =
        dist::encode_header(t, 1, json, data.data(), data.size(), mac ? dist::kFlagMac : 0);
    const Tag128 tag =
        mac ? dist::frame_mac(key, 'H', seq++, f.data(), json, data.data(), data.size()) : Tag128{};
    f.insert(f.end(), json.begin(), json.end());
    f.insert(f.end(), data.begin(), data.end());
    if (mac) f.insert(f.end(), tag.begin(), tag.end());
    return f;
  }
  void send(dist::MsgType t, const std::string& json, const std::vector<uint8_t>& data = {},
            bool mac = false) {
    const auto f = frame(t, json, data, mac);
    write(f.data(), f.size());
  }

  // Reads one frame; false on close, timeout or a malformed header.
  bool read(Frame* f) {
    f->header.assign(dist::kHeaderBytes, 0);
    asio::error_code ec;
    asio::read(s, asio::buffer(f->header), ec);
    if (ec) return false;
    try {
      f->h = dist::decode_header(f->header.data());
    } catch (const std::exception&) {
      return false;
    }
    if (f->h.data_len > (64u << 20)) return false;
    f->json.assign(f->h.json_len, '\0');
    f->data.assign(size_t(f->h.data_len), 0);
    asio::read(s, asio::buffer(f->json), ec);
    if (!ec) asio::read(s, asio::buffer(f->data), ec);
    if (!ec && (f->h.flags & dist::kFlagMac)) asio::read(s, asio::buffer(f->tag), ec);
    return !ec;
  }

  // HELLO (`hello_body` plus our nonce), CHALLENGE, AUTH, and HELLO_OK, which is returned.
  // With `lie`, the proof covers other bytes than the HELLO sent (a changed HELLO) and nothing
  // is awaited after AUTH.
  std::optional<Frame> handshake(const dist::Secret& secret, const std::string& hello_body,
                                 bool lie = false) {
    mine = dist::random_nonce();
    const std::string hello =
        "{" + hello_body + ",\"nonce\":\"" + to_hex(mine.data(), mine.size()) + "\"}";
    send(dist::MsgType::hello, hello);
    Frame f;
    if (!read(&f) || f.h.type != dist::MsgType::challenge) return std::nullopt;
    try {
      if (!from_hex(Json::parse(f.json).at("nonce").string(), theirs.data(), theirs.size()))
        return std::nullopt;
    } catch (const std::exception&) {
      return std::nullopt;
    }
    key = dist::session_key(secret, theirs, mine);
    seq = 0;
    const Digest256 proof = dist::host_proof(secret, theirs, mine, lie ? hello + " " : hello);
    send(dist::MsgType::auth, "{\"proof\":\"" + to_hex(proof.data(), proof.size()) + "\"}", {}, true);
    if (lie) return f;
    if (!read(&f) || f.h.type != dist::MsgType::hello_ok) return std::nullopt;
    return f;
  }

  // True when the worker ended the connection (EOF or reset) before the read timeout.
  bool closed_by_peer() {
    uint8_t b[4096];
    asio::error_code ec;
    while (!ec) s.read_some(asio::buffer(b), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

  asio::io_context io;
  asio::ip::tcp::socket s{io};
  bool ok = true;
  Digest256 key{};
  uint64_t seq = 0;
  dist::Nonce mine{}, theirs{};
};

}  // namespace eb::test
