// libFuzzer target: a live worker (in this process, with a secret and one model) and one
// connection per input. The input is a script of client steps, so the fuzzer gets past the
// checksum and the MAC and reaches every stage of the session:
//   0 LEN BYTES...          raw bytes, as they are
//   1 TYPE JLEN JSON DLEN DATA   a frame with a valid checksum and no MAC
//   2 TYPE JLEN JSON DLEN DATA   the same sealed under the current session key
//   3                        a correct HELLO / CHALLENGE / AUTH / HELLO_OK exchange (PSK)
// (LEN: one byte; JLEN, DLEN: two bytes, little-endian). The worker must never crash or leak; its replies are read
// and dropped. ASan + UBSan watch the worker's threads, which run in this process.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "core/weights_io.h"
#include "dist/runtime/handshake.h"
#include "dist/runtime/peer.h"
#include "dist/runtime/worker.h"
#include "models/zoo.h"
#include "tests/raw_client.h"
#include "tests/fuzz/target.h"

using namespace eb;
using namespace eb::dist;

namespace {

Credentials fuzz_key() {
  Credentials c;
  c.psk.key.fill(0x42);
  c.psk.set = true;
  return c;
}

struct Fixture {
  std::string weights = "/dev/shm/edgeband_fuzz_hs_" + std::to_string(::getpid()) + ".ebw";
  std::unique_ptr<WorkerServer> server;
  std::string addr;
  Fixture() {
    Graph g = models::build_synthetic("mobilenet_v1:0.25:32");
    save_weights(g, weights);
    WorkerOptions o;
    o.listen = "127.0.0.1:0";
    o.weights = weights;  // one model: a hostile HELLO cannot make it build others
    o.threads = 1;
    o.handshake_timeout_ms = 300;
    o.idle_timeout_ms = 300;
    o.max_frame_bytes = 1 << 20;
    o.creds = fuzz_key();
    o.log = [](const std::string&) {};
    server = std::make_unique<WorkerServer>(o);
    server->start_background();
    addr = "127.0.0.1:" + std::to_string(server->port());
  }
};

}  // namespace

EB_FUZZ_TARGET(handshake) {
  static Fixture fx;
  static const Credentials secret = fuzz_key();
  test::RawClient c(fx.addr, 300);
  size_t at = 0;
  auto byte = [&]() -> size_t { return at < size ? data[at++] : 0; };
  auto bytes = [&](size_t n) {
    n = std::min(n, size - at);
    std::string s(reinterpret_cast<const char*>(data + at), n);
    at += n;
    return s;
  };
  while (c.ok && at < size) {
    const size_t op = byte() % 4;
    if (op == 0) {
      const std::string raw = bytes(byte());
      c.write(raw.data(), raw.size());
    } else if (op == 1 || op == 2) {
      const auto type = MsgType(1 + byte() % kMaxMsgType);
      const std::string json = bytes(byte() | byte() << 8);
      const std::string d = bytes(byte() | byte() << 8);
      try {  // a sealed frame before the handshake: the test client itself refuses to send it
        c.send(type, json, std::vector<uint8_t>(d.begin(), d.end()), op == 2);
      } catch (const std::logic_error&) {
      }
    } else {
      c.handshake(secret, "\"model\":\"mobilenet_v1:0.25:32\",\"wire\":\"fp32\"");
    }
  }
  asio::error_code ec;
  c.s.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  uint8_t buf[4096];
  while (!ec) c.s.read_some(asio::buffer(buf), ec);  // until the worker closes (or 300 ms)
  return 0;
}
