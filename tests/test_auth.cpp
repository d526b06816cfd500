// Authentication: SHA-256 / HMAC-SHA256 against the published vectors, the secret file rules,
// and the worker handshake on loopback - right, wrong and missing secrets, forged, altered,
// replayed and unsigned frames, the handshake timeout and the connection limits.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "dist/runtime/poly1305.h"
#include "dist/runtime/sha256.h"
#include "dist/runtime/auth.h"
#include "dist/runtime/host.h"
#include "dist/runtime/worker.h"
#include "models/zoo.h"
#include "tests/raw_client.h"
#include "tests/reference.h"

using namespace eb;
using namespace eb::dist;

namespace {

std::string hex_of(const Digest256& d, size_t n = 32) { return to_hex(d.data(), n); }

std::string hmac_hex(const std::string& key, const std::string& data, size_t n = 32) {
  return hex_of(hmac_sha256(key.data(), key.size(), data.data(), data.size()), n);
}

std::string temp_path(const std::string& name) {
  return "/tmp/edgeband_test_" + std::to_string(getpid()) + "_" + name;
}

std::string write_secret(const std::string& name, const std::string& content, mode_t mode = 0600) {
  const std::string p = temp_path(name);
  std::ofstream(p, std::ios::binary) << content;
  ::chmod(p.c_str(), mode);
  return p;
}

Secret secret_of(const std::string& s) { return Secret{std::vector<uint8_t>(s.begin(), s.end())}; }

// A worker with a captured log.
struct LoggedWorker {
  std::mutex mu;
  std::vector<std::string> lines;
  std::unique_ptr<WorkerServer> server;
  std::string addr;
  explicit LoggedWorker(WorkerOptions o) {
    o.log = [this](const std::string& s) {
      std::lock_guard<std::mutex> lk(mu);
      lines.push_back(s);
    };
    server = std::make_unique<WorkerServer>(o);
    server->start_background();
    addr = "127.0.0.1:" + std::to_string(server->port());
  }
  // Waits (up to 5 s) for a log line containing `what`.
  bool logged(const std::string& what) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard<std::mutex> lk(mu);
        for (const auto& l : lines)
          if (l.find(what) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
};

using test::RawClient;

// Runs the handshake by hand and checks each step; returns the session key.
Digest256 handshake(RawClient& c, const Secret& s, const std::string& hello_body,
                    bool lie_in_proof = false) {
  const auto ok = c.handshake(s, hello_body, lie_in_proof);
  REQUIRE(ok);
  if (lie_in_proof) return c.key;
  CHECK(ok->h.flags == kFlagMac);
  const Tag128 want = frame_mac(c.key, 'W', 0, ok->header.data(), ok->json, nullptr, 0);
  CHECK(equal_constant_time(want.data(), ok->tag.data(), kMacBytes));
  const Digest256 wp = worker_proof(s, c.theirs, c.mine);
  CHECK(Json::parse(ok->json).at("proof").string() == hex_of(wp));
  return c.key;
}

const char* kHelloBody = "\"model\":\"mobilenet_v1:0.25:64\",\"wire\":\"fp32\",\"link\":null";

}  // namespace

TEST_CASE("auth: SHA-256 matches the FIPS 180-2 examples, for any split of the input") {
  auto hex = [](const std::string& m) { return hex_of(sha256(m.data(), m.size())); };
  CHECK(hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  CHECK(hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Streaming in random pieces (padding crosses block edges at 55, 56, 63, 64 bytes) equals
  // one call.
  std::mt19937 rng(5);
  for (size_t n : {0u, 1u, 55u, 56u, 57u, 63u, 64u, 65u, 119u, 120u, 1000u}) {
    std::string m(n, '\0');
    for (auto& ch : m) ch = char(rng());
    const Digest256 whole = sha256(m.data(), m.size());
    for (int trial = 0; trial < 8; ++trial) {
      Sha256 s;
      size_t at = 0;
      while (at < n) {
        const size_t k = std::min(n - at, size_t(rng() % 70));
        s.update(m.data() + at, k);
        at += k;
      }
      CHECK(s.finish() == whole);
    }
  }
}

TEST_CASE("auth: HMAC-SHA256 matches the RFC 4231 test vectors") {
  CHECK(hmac_hex(std::string(20, '\x0b'), "Hi There") ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(hmac_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(hmac_hex(std::string(20, '\xaa'), std::string(50, '\xdd')) ==
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
  std::string key4;
  for (int i = 1; i <= 25; ++i) key4 += char(i);
  CHECK(hmac_hex(key4, std::string(50, '\xcd')) ==
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
  CHECK(hmac_hex(std::string(20, '\x0c'), "Test With Truncation", 16) ==
        "a3b6167473100ee06e0c796c2955552b");
  CHECK(hmac_hex(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First") ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  CHECK(hmac_hex(std::string(131, '\xaa'),
                 "This is a test using a larger than block-size key and a larger than block-size "
                 "data. The key needs to be hashed before being used by the HMAC algorithm.") ==
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST_CASE("auth: Poly1305 matches RFC 8439 and a big-integer reference, for any split") {
  auto tag_hex = [](const std::vector<uint8_t>& key, const std::vector<uint8_t>& msg) {
    Poly1305 p(key.data());
    p.update(msg.data(), msg.size());
    const Tag128 t = p.finish();
    return to_hex(t.data(), t.size());
  };
  std::vector<uint8_t> rfc_key(32);
  REQUIRE(from_hex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b",
                   rfc_key.data(), 32));
  const std::string rfc_msg = "Cryptographic Forum Research Group";
  CHECK(tag_hex(rfc_key, std::vector<uint8_t>(rfc_msg.begin(), rfc_msg.end())) ==
        "a8061dc1305136c6c22b8baf0c0127a9");
  // Expected tags from a direct big-integer evaluation (Python: ((sum of (block + 2^(8*len)) *
  // r^k) mod 2^130 - 5 + s) mod 2^128) for patterned keys and messages, block edges included;
  // the all-0xff key and message drive every limb to its maximum (carry paths, h >= p).
  struct Case {
    size_t n;
    const char* patterned;
    const char* all_ff;
  };
  const Case cases[] = {
      {0, "5b80a5caef14395e83a8cdf2173c6186", "ffffffffffffffffffffffffffffffff"},
      {1, "addb29683e1162b0e24193817679cbc2", "23feffef23f8ffef23f8ffef23f8ffef"},
      {15, "34cb446945c27237e843c52cdb549337", "fbff27e6030028e6030028e6030028ee"},
      {16, "0e065815a58ea3d72af2cfd7ad544ea1", "fbffff17faffff17faffff17faffff17"},
      {17, "a3469c26659c9a707d0d3678c5e049d7", "7cfe7ff768f81f2763f8bf565df85f86"},
      {31, "0d803ad48eb271a2de0ecf1c1e7ae9ad", "5400a8ed4800481d4300e84c3d008884"},
      {32, "98856c67f899d1f55705b65578126d82", "5400801f3f00204f3900c07e330060ae"},
      {33, "d2132b2fa4cfadfb3e6016d4962f441e", "86fa6a437bf4ec24a274504dc37495bc"},
      {64, "fb8bf24f04d4c4abc276e4953c9aca74", "900fe32bc15fa8d7bca8efe4c7e37eb1"},
      {255, "d4bbf343ef0945c04f3c4ef591127cfe", "c80cb43844f387946e5aa6085bdf67da"},
      {1000, "5c252d4d4268c26362459c2c01c62ca3", "de9406b10e7023bcd692ff687f4cbc7f"}};
  std::vector<uint8_t> key(32), ff_key(32, 0xff);
  for (size_t i = 0; i < 32; ++i) key[i] = uint8_t(i * 37 + 11);
  std::mt19937 rng(8);
  for (const Case& c : cases) {
    std::vector<uint8_t> msg(c.n), ff(c.n, 0xff);
    for (size_t i = 0; i < c.n; ++i) msg[i] = uint8_t(i * 101 + 7);
    CHECK_MESSAGE(tag_hex(key, msg) == c.patterned, "length ", c.n);
    CHECK_MESSAGE(tag_hex(ff_key, ff) == c.all_ff, "length ", c.n);
    for (int trial = 0; trial < 4; ++trial) {  // streamed in random pieces
      Poly1305 p(key.data());
      for (size_t at = 0; at < c.n;) {
        const size_t k = std::min(c.n - at, size_t(rng() % 40));
        p.update(msg.data() + at, k);
        at += k;
      }
      const Tag128 t = p.finish();
      CHECK(to_hex(t.data(), t.size()) == c.patterned);
    }
  }
}

TEST_CASE("auth: hex, constant-time comparison and the secret file rules") {
  uint8_t b[4];
  CHECK(from_hex("00fFa5", b, 3));
  CHECK((b[0] == 0 && b[1] == 0xff && b[2] == 0xa5));
  CHECK_FALSE(from_hex("00ff", b, 3));
  CHECK_FALSE(from_hex("0g", b, 1));
  CHECK(to_hex(b, 3) == "00ffa5");
  const uint8_t x[3] = {1, 2, 3}, y[3] = {1, 2, 4};
  CHECK(equal_constant_time(x, x, 3));
  CHECK_FALSE(equal_constant_time(x, y, 3));

  const std::string ok = write_secret("ok", "0123456789abcdef0123\n");
  CHECK(load_secret_file(ok).key.size() == 20);  // the newline is not part of the secret
  CHECK_THROWS_WITH(load_secret_file(temp_path("missing")), doctest::Contains("No such file"));
  const std::string shortf = write_secret("short", "tooshort");
  CHECK_THROWS_WITH(load_secret_file(shortf), doctest::Contains("at least 16"));
  const std::string open = write_secret("open", "0123456789abcdef0123", 0644);
  CHECK_THROWS_WITH(load_secret_file(open), doctest::Contains("chmod 600"));
  for (const auto& p : {ok, shortf, open}) std::remove(p.c_str());
  // Nonces differ (a fixed nonce would let a recorded handshake be replayed).
  CHECK(random_nonce() != random_nonce());
}

TEST_CASE("dist auth: same secret works; wrong or missing secrets are refused with clear errors") {
  const Secret s = secret_of("correct horse battery staple");
  WorkerOptions wo;
  wo.secret = s;
  LoggedWorker w(wo);
  auto g = std::make_shared<Graph>(models::build_synthetic("mobilenet_v1:0.25:64"));
  uint64_t hash = 0;
  models::load_model("mobilenet_v1:0.25:64", "", &hash);
  std::mt19937 rng(3);
  const Tensor im = ref::random_tensor(g->input, rng);
  Cluster c;
  c.link = parse_link("10gbit,0.01ms");
  for (int i = 0; i < 2; ++i) c.devices.push_back(estimate_profile(*g, "d", 5));
  {
    RuntimeOptions ro;
    ro.secret = s;
    HostRuntime host(g, hash, {w.addr}, ro);
    for (Scheme sc : {Scheme::modnn, Scheme::dpfp, Scheme::halp}) {
      InferStats st;
      const auto out = host.infer({im, im}, make_plan(*g, c, sc, 2), &st);
      CHECK(st.faults == 0);
      CHECK(ref::bit_equal(out[1], g->forward(im)));
      CHECK(st.bytes_sent > 0);
    }
  }
  {
    RuntimeOptions ro;
    ro.secret = secret_of("correct horse battery stapler");
    CHECK_THROWS_WITH(HostRuntime(g, hash, {w.addr}, ro), doctest::Contains("same secret"));
    CHECK(w.logged("authentication failed"));
  }
  CHECK_THROWS_WITH(HostRuntime(g, hash, {w.addr}, RuntimeOptions{}),
                    doctest::Contains("requires authentication"));
  CHECK(w.logged("sent no credentials"));
  // A host with a secret does not trust a worker that cannot prove it has the secret.
  LoggedWorker open(WorkerOptions{});
  RuntimeOptions ro;
  ro.secret = s;
  CHECK_THROWS_WITH(HostRuntime(g, hash, {open.addr}, ro), doctest::Contains("does not authenticate"));
}

TEST_CASE("dist auth: forged, altered, replayed and unsigned frames end the connection") {
  const Secret s = secret_of("0123456789abcdef-shared");
  WorkerOptions wo;
  wo.secret = s;
  LoggedWorker w(wo);
  const std::string plan = "{\"plan\":{},\"device\":1}";
  {
    RawClient c(w.addr, 5000);  // altered: one JSON byte changed after the MAC was computed
    handshake(c, s, kHelloBody);
    auto f = c.frame(MsgType::plan, plan, {}, true);
    f[kHeaderBytes + 3] ^= 1;
    c.write(f.data(), f.size());
    CHECK(c.closed_by_peer());
  }
  CHECK(w.logged("checksum mismatch"));  // the checksum catches it first; the MAC too below
  {
    RawClient c(w.addr, 5000);  // altered with the checksum fixed up: only the MAC can tell
    handshake(c, s, kHelloBody);
    std::string other = plan;
    other[3] ^= 1;
    auto f = c.frame(MsgType::plan, other, {}, true);
    --c.seq;
    const auto good = c.frame(MsgType::plan, plan, {}, true);
    std::copy(good.end() - kMacBytes, good.end(), f.end() - kMacBytes);  // the original's tag
    c.write(f.data(), f.size());
    CHECK(c.closed_by_peer());
  }
  CHECK(w.logged("MAC mismatch"));
  {
    RawClient c(w.addr, 5000);  // replayed: the AUTH frame (sequence 0) sent again
    handshake(c, s, kHelloBody);
    c.seq = 0;
    c.send(MsgType::auth, "{\"proof\":\"00\"}", {}, true);
    CHECK(c.closed_by_peer());
  }
  {
    RawClient c(w.addr, 5000);  // unsigned frame after the handshake
    handshake(c, s, kHelloBody);
    c.send(MsgType::plan, plan);
    CHECK(c.closed_by_peer());
  }
  CHECK(w.logged("without a MAC"));
  {
    RawClient c(w.addr, 5000);  // HELLO changed in transit: the proof does not cover what arrived
    handshake(c, s, kHelloBody, /*lie_in_proof=*/true);
    CHECK(c.closed_by_peer());
  }
  CHECK(w.logged("bad proof"));
  {
    RawClient c(w.addr, 5000);  // a MAC before the handshake
    c.send(MsgType::hello, "{}", {}, true);
    CHECK(c.closed_by_peer());
  }
  CHECK(w.logged("MAC on a frame before the handshake"));
  // And it still serves its real host.
  auto g = std::make_shared<Graph>(models::build_synthetic("mobilenet_v1:0.25:64"));
  uint64_t hash = 0;
  models::load_model("mobilenet_v1:0.25:64", "", &hash);
  RuntimeOptions ro;
  ro.secret = s;
  HostRuntime host(g, hash, {w.addr}, ro);
  CHECK(host.alive() == 1);
}

TEST_CASE("dist limits: handshake timeout, pre-handshake frame size, connection count") {
  WorkerOptions wo;
  wo.handshake_timeout_ms = 300;
  wo.max_connections = 2;
  LoggedWorker w(wo);
  {
    RawClient c(w.addr, 5000);  // says nothing
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(c.closed_by_peer());
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
  }
  CHECK(w.logged("handshake not completed"));
  {
    RawClient c(w.addr, 5000);  // claims 100 MB of data before any HELLO: dropped without reading it
    const std::string j = "{}";
    std::vector<uint8_t> f = encode_header(MsgType::hello, 0, j, nullptr, 0);
    const uint64_t claimed = 100u << 20;
    std::memcpy(f.data() + 24, &claimed, 8);  // the data length field
    c.write(f.data(), f.size());
    CHECK(c.closed_by_peer());
  }
  CHECK(w.logged("exceeds this connection's limit"));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the sessions above have ended
  {
    RawClient a(w.addr, 5000), b(w.addr, 5000);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    RawClient third(w.addr, 5000);  // over --max-conn: closed at once
    CHECK(third.closed_by_peer());
    CHECK(w.logged("connections already"));
  }
}
