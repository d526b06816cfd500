// A hand-driven worker client for tests, the handshake fuzzer and the soak: it writes frames
// byte by byte as a host - or an attacker - would, sealed or not.
#pragma once
#include <sys/socket.h>

#include "dist/runtime/tcp.h"
#include <optional>
#include <string>
#include <vector>

#include "dist/runtime/handshake.h"
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
    bool opened = false;  // sealed, and opened with our receive key
  };

  // Reads time out after `timeout_ms`: a worker that fails to answer or close fails the caller.
  // rcvbuf > 0: the receive buffer, set before connecting so that the window never exceeds it
  // (shrunk after the handshake, the kernel had already promised a larger window: it then
  // accepted a trickle beyond the buffer, and a worker writing to a client that never reads
  // took minutes instead of its send timeout to give up).
  RawClient(const std::string& addr, int timeout_ms, int rcvbuf = 0) {
    asio::error_code ec;
    const asio::ip::tcp::endpoint ep = dist::parse_endpoint(addr);
    if (rcvbuf > 0) {
      s.open(ep.protocol(), ec);
      if (!ec) ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    s.connect(ep, ec);
    ok = !ec;
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (ok) ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  void write(const void* p, size_t n) {
    asio::error_code ec;
    asio::write(s, asio::buffer(p, n), ec);
    if (ec) ok = false;
  }

  // One frame with a valid checksum or, with `seal`, sealed with the next message of `tx`.
  // `id`: the frame's id (a ROWS frame's image).
  std::vector<uint8_t> frame(dist::MsgType t, const std::string& json,
                             const std::vector<uint8_t>& data = {}, bool seal = false, uint64_t id = 1) {
    std::vector<uint8_t> f = dist::encode_header(t, id, json, data.data(), data.size(),
                                                 seal ? dist::kFlagSealed : 0);
    const size_t h = f.size();
    f.insert(f.end(), json.begin(), json.end());
    if (seal) {
      uint8_t tag[dist::kTagBytes];
      tx.seal(f.data() + h, f.data() + h, json.size(), f.data(), h, tag);
      f.insert(f.end(), tag, tag + dist::kTagBytes);
    }
    const size_t d = f.size();
    f.insert(f.end(), data.begin(), data.end());
    if (seal) {
      uint8_t tag[dist::kTagBytes];
      tx.seal(f.data() + d, f.data() + d, data.size(), f.data(), h, tag);
      f.insert(f.end(), tag, tag + dist::kTagBytes);
    }
    return f;
  }
  void send(dist::MsgType t, const std::string& json, const std::vector<uint8_t>& data = {},
            bool seal = false, uint64_t id = 1) {
    const auto f = frame(t, json, data, seal, id);
    write(f.data(), f.size());
  }

  // Reads one frame (opening it if sealed); false on close, timeout or a malformed frame.
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
    const bool sealed = f->h.flags & dist::kFlagSealed;
    uint8_t tags[2][dist::kTagBytes];
    f->json.assign(f->h.json_len, '\0');
    f->data.assign(size_t(f->h.data_len), 0);
    asio::read(s, asio::buffer(f->json), ec);
    if (!ec && sealed) asio::read(s, asio::buffer(tags[0], dist::kTagBytes), ec);
    if (!ec) asio::read(s, asio::buffer(f->data), ec);
    if (!ec && sealed) asio::read(s, asio::buffer(tags[1], dist::kTagBytes), ec);
    if (ec) return false;
    f->opened = false;
    if (sealed) {
      if (!rx.on()) return false;
      auto* j = reinterpret_cast<uint8_t*>(f->json.data());
      f->opened = rx.open(j, f->json.size(), f->header.data(), dist::kHeaderBytes, tags[0]) &&
                  rx.open(f->data.data(), f->data.size(), f->header.data(), dist::kHeaderBytes,
                          tags[1]);
      return f->opened;
    }
    return true;
  }

  // The host's side of the handshake with `creds` and the params `params_body` (JSON members
  // without braces); returns HELLO_OK. With `lie`, the keys are derived from other HELLO bytes
  // than those sent (a HELLO changed in transit) and nothing is awaited after AUTH.
  std::optional<Frame> handshake(const dist::Credentials& creds, const std::string& params_body,
                                 bool lie = false) {
    dist::Handshake hs(creds, true);
    const Json params = Json::parse("{" + params_body + "}");
    const Json hello = hs.host_hello(params);
    const std::string text = hello.dump();
    send(dist::MsgType::hello, text);
    Frame f;
    if (hs.mode() == dist::AuthMode::none) {
      if (!read(&f) || f.h.type != dist::MsgType::hello_ok) return std::nullopt;
      return f;
    }
    if (!read(&f) || f.h.type != dist::MsgType::challenge) return std::nullopt;
    try {
      const Json auth = hs.host_auth(lie ? text + " " : text, f.json, Json::parse(f.json), params);
      tx = dist::FrameCipher(hs.keys().send);
      rx = dist::FrameCipher(hs.keys().recv);
      send(dist::MsgType::auth, auth.dump(), {}, true);
    } catch (const std::exception&) {
      return std::nullopt;
    }
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
  dist::FrameCipher tx, rx;
};

}  // namespace eb::test
