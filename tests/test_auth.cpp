// Security: the libsodium wrappers (key files, the frame cipher), the handshake in both modes on
// loopback, frames forged, altered, replayed, reordered, reflected, truncated or unsealed, no
// plaintext on the wire, safe defaults, and one test per attack of the security review (#22):
// a stranger's claimed frame sizes, unread pings, pre-authentication connections holding slots,
// a host that stops reading, out-of-range HELLO numbers, low-entropy keys, stale documentation.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "dist/runtime/crypto.h"
#include "dist/runtime/handshake.h"
#include "dist/runtime/host.h"
#include "dist/runtime/worker.h"
#include "dist/testbed/cluster.h"
#include "models/zoo.h"
#include "tests/raw_client.h"
#include "tests/reference.h"

using namespace eb;
using namespace eb::dist;

namespace {

std::string temp_path(const std::string& name) {
  return "/tmp/edgeband_test_" + std::to_string(getpid()) + "_" + name;
}

std::string write_file(const std::string& name, const std::string& content, mode_t mode = 0600) {
  const std::string p = temp_path(name);
  std::remove(p.c_str());
  std::ofstream(p, std::ios::binary) << content;
  ::chmod(p.c_str(), mode);
  return p;
}

Credentials psk_creds(uint8_t fill) {
  Credentials c;
  c.psk.key.fill(fill);
  c.psk.key[0] = 0x5a;
  c.psk.set = true;
  return c;
}

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

WorkerOptions with(const Credentials& c) {
  WorkerOptions o;
  o.creds = c;
  return o;
}

using test::RawClient;

const char* kParams = "\"model\":\"mobilenet_v1:0.25:64\",\"wire\":\"fp32\",\"link\":null";

struct Small {
  std::shared_ptr<Graph> g = std::make_shared<Graph>(models::build_synthetic("mobilenet_v1:0.25:64"));
  uint64_t hash = 0;
  Cluster c;
  Small() {
    models::load_model("mobilenet_v1:0.25:64", "", &hash);
    c.link = parse_link("10gbit,0.01ms");
    for (int i = 0; i < 2; ++i) c.devices.push_back(estimate_profile(*g, "d", 5));
  }
  // One image through every scheme: bit-identical to local, no faults.
  void check(HostRuntime& host, const Tensor& im) const {
    for (Scheme sc : {Scheme::modnn, Scheme::dpfp, Scheme::halp}) {
      InferStats st;
      const auto out = host.infer({im, im}, make_plan(*g, c, sc, 2), &st);
      CHECK(st.faults == 0);
      CHECK(ref::bit_equal(out[1], g->forward(im)));
    }
  }
};

long rss_kb(int pid, const char* field) {
  std::ifstream f("/proc/" + (pid ? std::to_string(pid) : std::string("self")) + "/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0) return std::atol(line.c_str() + n + 1);
  return -1;
}

// Shannon entropy of the bytes, bits per byte: ~8 for ciphertext, far less for zeros.
double entropy(const std::vector<uint8_t>& b) {
  double count[256] = {};
  for (uint8_t x : b) ++count[x];
  double h = 0;
  for (double c : count)
    if (c > 0) h -= c / double(b.size()) * std::log2(c / double(b.size()));
  return h;
}
size_t longest_zero_run(const std::vector<uint8_t>& b) {
  size_t best = 0, run = 0;
  for (uint8_t x : b) run = x ? 0 : run + 1, best = std::max(best, run);
  return best;
}

// A TCP relay on loopback that forwards one connection to `target` and records every byte
// that crosses it, both ways.
class Relay {
 public:
  explicit Relay(const std::string& target)
      : acc_(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        target_(target),
        thread_([this] { run(); }) {}
  ~Relay() {
    asio::error_code ec;
    acc_.close(ec);
    thread_.join();
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(acc_.local_endpoint().port()); }
  std::vector<uint8_t> bytes() {
    std::lock_guard<std::mutex> lk(mu_);
    return seen_;
  }

 private:
  void run() {
    asio::ip::tcp::socket a(io_);
    asio::error_code ec;
    acc_.accept(a, ec);
    if (ec) return;
    asio::ip::tcp::socket b = connect_to(io_, target_, std::chrono::milliseconds(5000));
    auto pump = [this](asio::ip::tcp::socket& from, asio::ip::tcp::socket& to) {
      uint8_t buf[65536];
      asio::error_code e;
      while (true) {
        const size_t n = from.read_some(asio::buffer(buf), e);
        if (e) break;
        {
          std::lock_guard<std::mutex> lk(mu_);
          seen_.insert(seen_.end(), buf, buf + n);
        }
        asio::write(to, asio::buffer(buf, n), e);
        if (e) break;
      }
      to.shutdown(asio::ip::tcp::socket::shutdown_send, e);
    };
    std::thread back([&] { pump(b, a); });
    pump(a, b);
    back.join();
  }
  asio::io_context io_;
  asio::ip::tcp::acceptor acc_;
  std::string target_;
  std::mutex mu_;
  std::vector<uint8_t> seen_;
  std::thread thread_;
};

// What a relay between a host and one worker records for two all-zero images.
std::vector<uint8_t> recorded(const Credentials& host, const Credentials& worker) {
  Small s;
  LoggedWorker w(with(worker));
  Relay relay(w.addr);
  {
    RuntimeOptions ro;
    ro.creds = host;
    HostRuntime h(s.g, s.hash, {relay.addr()}, ro);
    Tensor zero(s.g->input);
    std::memset(zero.data(), 0, zero.size() * sizeof(float));
    InferStats st;
    // Both images split (a plan for one image): a batch plan would run them whole, one per
    // device, and the worker's would cross the relay as a single elided-zeros frame.
    const auto out = h.infer({zero, zero}, make_plan(*s.g, s.c, Scheme::halp, 1), &st);
    CHECK(ref::bit_equal(out[0], s.g->forward(zero)));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return relay.bytes();
}

}  // namespace

TEST_CASE("auth: hex, constant-time comparison, key files and public key lists") {
  uint8_t b[4];
  CHECK(from_hex("00fFa5", b, 3));
  CHECK((b[0] == 0 && b[1] == 0xff && b[2] == 0xa5));
  CHECK_FALSE(from_hex("00ff", b, 3));
  CHECK_FALSE(from_hex("0g", b, 1));
  CHECK(to_hex(b, 3) == "00ffa5");
  const uint8_t x[3] = {1, 2, 3}, y[3] = {1, 2, 4};
  CHECK(equal_constant_time(x, x, 3));
  CHECK_FALSE(equal_constant_time(x, y, 3));
  CHECK(std::string(crypto_library_version()).rfind("libsodium ", 0) == 0);

  // Review: "any secret of >= 16 bytes is accepted". Now only 32 random bytes are.
  const std::string good = write_file("psk", new_psk_text());
  CHECK(load_psk_file(good).enabled());
  const std::string b64 = write_file("psk64", "q83vEjRWeJq8zd7vEjRWeJq83e8SNFZ4mrze7xI0Vng=\n");
  CHECK(load_psk_file(b64).enabled());
  const std::string phrase = write_file("phrase", "correct horse battery staple\n");
  CHECK_THROWS_WITH(load_psk_file(phrase), doctest::Contains("passphrases are refused"));
  const std::string open = write_file("open", new_psk_text(), 0644);
  CHECK_THROWS_WITH(load_psk_file(open), doctest::Contains("chmod 600"));
  CHECK_THROWS_WITH(load_psk_file(temp_path("missing")), doctest::Contains("No such file"));
  CHECK(new_psk_text() != new_psk_text());

  const std::string kp = temp_path("dev");
  std::remove(kp.c_str());
  std::remove((kp + ".pub").c_str());
  const KeyPair k = new_key_pair();
  const std::string line = write_key_pair(k, kp, "board-1");
  CHECK(line.find(" board-1") != std::string::npos);
  CHECK_THROWS_WITH(write_key_pair(k, kp, "again"), doctest::Contains("cannot create"));  // never overwrites
  const KeyPair back = load_key_file(kp);
  CHECK(back.pk == k.pk);
  CHECK(back.sk == k.sk);
  struct stat st {};
  ::stat(kp.c_str(), &st);
  CHECK((st.st_mode & 0777) == 0600);
  const std::string list =
      write_file("keys", "# hosts\n\n" + line + "\n" + public_key_text(new_key_pair().pk) + "\n", 0644);
  const auto keys = load_public_keys(list);
  REQUIRE(keys.size() == 2);
  CHECK(keys[0] == k.pk);
  const std::string bad = write_file("bad", line + "\nssh-ed25519 AAAA\n", 0644);
  CHECK_THROWS_WITH(load_public_keys(bad), doctest::Contains(":2:"));
  for (const auto& p : {good, b64, phrase, open, kp, kp + ".pub", list, bad}) std::remove(p.c_str());
}

TEST_CASE("auth: the frame cipher refuses altered, replayed, reordered and reflected messages, and rekeys") {
  Key32 k1{}, k2{};
  k1[0] = 1, k2[0] = 2;
  const uint8_t ad[4] = {1, 2, 3, 4};
  auto sealed = [&](FrameCipher& c, const std::string& m) {
    std::vector<uint8_t> v(m.begin(), m.end());
    std::array<uint8_t, 16> tag;
    c.seal(v.data(), v.data(), v.size(), ad, sizeof ad, tag.data());
    return std::make_pair(v, tag);
  };
  auto opens = [&](FrameCipher& c, std::pair<std::vector<uint8_t>, std::array<uint8_t, 16>> s,
                   const uint8_t* a = nullptr) {
    return c.open(s.first.data(), s.first.size(), a ? a : ad, sizeof ad, s.second.data());
  };
  {
    FrameCipher tx(k1), rx(k1);
    auto m0 = sealed(tx, "first"), m1 = sealed(tx, "second");
    CHECK(m0.first != std::vector<uint8_t>({'f', 'i', 'r', 's', 't'}));
    CHECK(opens(rx, m0));
    CHECK_FALSE(opens(rx, m0));  // replayed: the counter has moved on
  }
  {
    FrameCipher tx(k1), rx(k1);
    auto m0 = sealed(tx, "first"), m1 = sealed(tx, "second");
    CHECK_FALSE(opens(rx, m1));  // reordered (or m0 dropped)
  }
  {
    FrameCipher tx(k1), rx(k1);
    auto m0 = sealed(tx, "first");
    m0.first[2] ^= 1;
    CHECK_FALSE(opens(rx, m0));  // altered
    FrameCipher tx2(k1), rx2(k1);
    const uint8_t other_ad[4] = {1, 2, 3, 5};
    CHECK_FALSE(opens(rx2, sealed(tx2, "x"), other_ad));  // header (type, lengths) altered
  }
  {
    FrameCipher host_tx(k1), worker_tx(k2), host_rx(k2), host_rx2(k2);
    CHECK_FALSE(opens(host_rx, sealed(host_tx, "mine")));  // reflected: the other direction's key
    CHECK(opens(host_rx2, sealed(worker_tx, "theirs")));
  }
  {
    FrameCipher tx(k1, 3), rx(k1, 3), old_key(k1, 1000);
    for (int i = 0; i < 10; ++i) CHECK(opens(rx, sealed(tx, "message " + std::to_string(i))));
    for (int i = 0; i < 10; ++i) sealed(old_key, "x");  // same counter, never rekeyed
    CHECK(rx.messages() == 10);
    FrameCipher rx2(k1, 3);
    for (int i = 0; i < 10; ++i) sealed(rx2, "x");  // a receiver in step opens the 11th ...
    CHECK(opens(rx2, sealed(tx, "eleventh")));
    // ... and the original key no longer opens anything sealed after a rekey.
    CHECK_FALSE(opens(old_key, sealed(tx, "twelfth")));
  }
  CHECK(cipher_mb_per_s(1 << 20, 1) > 0);
}

TEST_CASE("dist auth: pre-shared key: same key works; wrong or missing keys are refused clearly") {
  Small s;
  std::mt19937 rng(3);
  const Tensor im = ref::random_tensor(s.g->input, rng);
  LoggedWorker w(with(psk_creds(7)));
  {
    RuntimeOptions ro;
    ro.creds = psk_creds(7);
    HostRuntime host(s.g, s.hash, {w.addr}, ro);
    s.check(host, im);
  }
  {
    RuntimeOptions ro;
    ro.creds = psk_creds(8);
    CHECK_THROWS_WITH(HostRuntime(s.g, s.hash, {w.addr}, ro), doctest::Contains("same key"));
    CHECK(w.logged("authentication failed"));
  }
  CHECK_THROWS_WITH(HostRuntime(s.g, s.hash, {w.addr}, RuntimeOptions{}),
                    doctest::Contains("requires authentication"));
  // A host with a key does not use a worker that has none.
  LoggedWorker open(WorkerOptions{});
  RuntimeOptions ro;
  ro.creds = psk_creds(7);
  CHECK_THROWS_WITH(HostRuntime(s.g, s.hash, {open.addr}, ro), doctest::Contains("has no key"));
}

TEST_CASE("dist auth: key pairs: authorized hosts only, pinned workers only, revoked by a line") {
  Small s;
  std::mt19937 rng(4);
  const Tensor im = ref::random_tensor(s.g->input, rng);
  const KeyPair host_a = new_key_pair(), host_b = new_key_pair(), worker = new_key_pair(),
                stranger = new_key_pair();
  auto creds = [](const KeyPair& k, std::vector<PublicKey> trusted) {
    Credentials c;
    c.key = k;
    c.trusted = std::move(trusted);
    return c;
  };
  LoggedWorker w(with(creds(worker, {host_a.pk, host_b.pk})));
  for (const KeyPair* h : {&host_a, &host_b}) {
    RuntimeOptions ro;
    ro.creds = creds(*h, {worker.pk});
    HostRuntime host(s.g, s.hash, {w.addr}, ro);
    s.check(host, im);
  }
  RuntimeOptions ro;
  ro.creds = creds(stranger, {worker.pk});
  CHECK_THROWS_WITH(HostRuntime(s.g, s.hash, {w.addr}, ro),
                    doctest::Contains("not among this worker's authorized keys"));
  ro.creds = creds(host_a, {stranger.pk});  // a worker the host has not pinned
  CHECK_THROWS_WITH(HostRuntime(s.g, s.hash, {w.addr}, ro),
                    doctest::Contains("not among this host's worker keys"));
  // host_b's board is stolen: its line is deleted and the worker restarted.
  LoggedWorker revoked(with(creds(worker, {host_a.pk})));
  ro.creds = creds(host_b, {worker.pk});
  CHECK_THROWS_WITH(HostRuntime(s.g, s.hash, {revoked.addr}, ro),
                    doctest::Contains("not among this worker's authorized keys"));
  ro.creds = creds(host_a, {worker.pk});
  HostRuntime ok(s.g, s.hash, {revoked.addr}, ro);
  CHECK(ok.alive() == 1);
  // A key-pair worker and a PSK host (or the reverse) do not talk.
  RuntimeOptions psk;
  psk.creds = psk_creds(1);
  CHECK_THROWS_WITH(HostRuntime(s.g, s.hash, {w.addr}, psk), doctest::Contains("requires authentication (keys)"));
}

TEST_CASE("dist auth: forged, altered, replayed, reflected, truncated and unsealed frames end the connection") {
  const Credentials c = psk_creds(9);
  LoggedWorker w(with(c));
  const std::string plan = "{\"plan\":{},\"device\":1}";
  {
    RawClient cl(w.addr, 5000);  // altered: one ciphertext byte of the JSON flipped
    REQUIRE(cl.handshake(c, kParams));
    auto f = cl.frame(MsgType::ping, "{}", {}, true);
    f[kHeaderBytes] ^= 1;
    cl.write(f.data(), f.size());
    CHECK(cl.closed_by_peer());
  }
  CHECK(w.logged("does not open"));
  {
    RawClient cl(w.addr, 5000);  // header altered (the request id): the tags bind it
    REQUIRE(cl.handshake(c, kParams));
    auto f = cl.frame(MsgType::ping, "{}", {}, true);
    f[8] ^= 1;
    cl.write(f.data(), f.size());
    CHECK(cl.closed_by_peer());
  }
  {
    RawClient cl(w.addr, 5000);  // replayed: a ping sent twice, byte for byte
    REQUIRE(cl.handshake(c, kParams));
    const auto f = cl.frame(MsgType::ping, "{}", {}, true);
    cl.write(f.data(), f.size());
    RawClient::Frame pong;
    CHECK((cl.read(&pong) && pong.h.type == MsgType::pong && pong.opened));
    cl.write(f.data(), f.size());
    CHECK(cl.closed_by_peer());
  }
  {
    RawClient cl(w.addr, 5000);  // reflected: the worker's own sealed PONG sent back to it
    REQUIRE(cl.handshake(c, kParams));
    cl.send(MsgType::ping, "{}", {}, true);
    std::vector<uint8_t> pong(kHeaderBytes);
    asio::error_code ec;
    asio::read(cl.s, asio::buffer(pong), ec);
    const FrameHeader h = decode_header(pong.data());
    REQUIRE(h.type == MsgType::pong);
    pong.resize(kHeaderBytes + h.json_len + h.data_len + 2 * kTagBytes);
    asio::read(cl.s, asio::buffer(pong.data() + kHeaderBytes, pong.size() - kHeaderBytes), ec);
    REQUIRE(!ec);
    cl.write(pong.data(), pong.size());
    CHECK(cl.closed_by_peer());
  }
  {
    RawClient cl(w.addr, 5000);  // unsealed frame after the handshake
    REQUIRE(cl.handshake(c, kParams));
    cl.send(MsgType::plan, plan);
    CHECK(cl.closed_by_peer());
  }
  CHECK(w.logged("unsealed frame on an encrypted connection"));
  {
    RawClient cl(w.addr, 500);  // truncated: a sealed frame cut short, then silence
    REQUIRE(cl.handshake(c, kParams));
    const auto f = cl.frame(MsgType::ping, "{}", std::vector<uint8_t>(100, 1), true);
    cl.write(f.data(), f.size() - 20);
    ::shutdown(cl.s.native_handle(), SHUT_WR);
    CHECK(cl.closed_by_peer());
  }
  CHECK(w.logged("truncated frame"));
  {
    RawClient cl(w.addr, 5000);  // HELLO changed in transit: the keys no longer agree
    cl.handshake(c, kParams, /*lie=*/true);
    CHECK(cl.closed_by_peer());
  }
  CHECK(w.logged("a different key"));
  {
    RawClient cl(w.addr, 5000);  // a sealed frame before the handshake
    cl.tx = FrameCipher(Key32{});
    cl.send(MsgType::hello, "{}", {}, true);
    CHECK(cl.closed_by_peer());
  }
  CHECK(w.logged("sealed frame before the handshake"));
  // And it still serves its real host.
  Small s;
  RuntimeOptions ro;
  ro.creds = c;
  HostRuntime host(s.g, s.hash, {w.addr}, ro);
  CHECK(host.alive() == 1);
}

TEST_CASE("dist security: a relay between host and worker sees no plaintext") {
  // All-zero images: in clear, the stream is mostly zeros; sealed, it is noise.
  const std::vector<uint8_t> clear = recorded(Credentials{}, Credentials{});
  const std::vector<uint8_t> psk = recorded(psk_creds(3), psk_creds(3));
  Credentials h, w;
  const KeyPair hk = new_key_pair(), wk = new_key_pair();
  h.key = hk, h.trusted = {wk.pk};
  w.key = wk, w.trusted = {hk.pk};
  const std::vector<uint8_t> keys = recorded(h, w);
  MESSAGE("recorded ", clear.size(), " bytes in clear (entropy ", entropy(clear),
          " bits/byte, longest zero run ", longest_zero_run(clear), "), ", psk.size(),
          " with a PSK (", entropy(psk), ", ", longest_zero_run(psk), "), ", keys.size(),
          " with key pairs (", entropy(keys), ", ", longest_zero_run(keys), ")");
  REQUIRE(clear.size() > 10000);
  // In clear: the zero input band as it is, JSON, repeated values (compressible); runs of
  // zeros 20 times the longest a sealed stream shows.
  CHECK(entropy(clear) < 7.5);
  CHECK(longest_zero_run(clear) > 640);
  for (const auto* sealed : {&psk, &keys}) {
    REQUIRE(sealed->size() > 10000);
    CHECK(entropy(*sealed) > 7.9);  // noise: only the 40-byte frame headers are in clear
    CHECK(longest_zero_run(*sealed) < 32);
  }
  // The model's name travels sealed too.
  const std::string name = "mobilenet_v1";
  CHECK(std::search(psk.begin(), psk.end(), name.begin(), name.end()) == psk.end());
  CHECK(std::search(clear.begin(), clear.end(), name.begin(), name.end()) != clear.end());
}

TEST_CASE("dist security: without a key a worker listens on loopback only; a host uses loopback only") {
  WorkerOptions o;
  o.listen = "0.0.0.0:0";
  CHECK_THROWS_WITH(WorkerServer{o}, doctest::Contains("--insecure"));
  o.insecure = true;
  CHECK_NOTHROW(WorkerServer{o});
  WorkerOptions keyed = with(psk_creds(1));
  keyed.listen = "0.0.0.0:0";
  CHECK_NOTHROW(WorkerServer{keyed});
  Small s;
  CHECK_THROWS_WITH(HostRuntime(s.g, s.hash, {"192.0.2.1:7070"}, RuntimeOptions{}),
                    doctest::Contains("--insecure"));
  RuntimeOptions ro;
  ro.insecure = true;
  ro.timeout_ms = 200;
  CHECK_THROWS_WITH(HostRuntime(s.g, s.hash, {"192.0.2.1:7070"}, ro),
                    doctest::Contains("192.0.2.1"));  // tried: it timed out instead
}

TEST_CASE("dist limits: handshake timeout, pre-handshake frame size") {
  WorkerOptions wo = with(psk_creds(2));
  wo.handshake_timeout_ms = 300;
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
    std::vector<uint8_t> f = encode_header(MsgType::hello, 0, "{}", nullptr, 0);
    const uint64_t claimed = 100u << 20;
    std::memcpy(f.data() + 24, &claimed, 8);  // the data length field
    c.write(f.data(), f.size());
    CHECK(c.closed_by_peer());
  }
  CHECK(w.logged("exceeds this connection's limit"));
}

// Review: "one claimed frame size commits the whole size" (worker RSS 2 -> 206 -> 407 MiB with
// two connections sending 1 MiB each). 16 connections each claim a 256 MiB frame and send 1 MiB.
TEST_CASE("dist limits: claimed frame sizes commit no memory until the bytes arrive") {
  WorkerProcess worker(EDGEBAND_BIN, 1, "", {"--max-conn", "32", "--max-frame-mb", "256"});
  const long before = rss_kb(worker.pid(), "VmRSS:");
  std::vector<std::unique_ptr<RawClient>> clients;
  const std::vector<uint8_t> mib(1 << 20, 7);
  for (int i = 0; i < 16; ++i) {
    auto c = std::make_unique<RawClient>(worker.addr(), 5000);
    REQUIRE(c->handshake(Credentials{}, kParams));
    std::vector<uint8_t> f = encode_header(MsgType::ping, 1, "{}", nullptr, 0);
    const uint64_t claimed = 256ull << 20;
    std::memcpy(f.data() + 24, &claimed, 8);
    f.insert(f.end(), {'{', '}'});
    c->write(f.data(), f.size());
    c->write(mib.data(), mib.size());
    clients.push_back(std::move(c));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long peak = rss_kb(worker.pid(), "VmHWM:");
  MESSAGE("worker RSS ", before / 1024, " MiB before, peak ", peak / 1024,
          " MiB with 16 connections each claiming 256 MiB and sending 1 MiB");
#ifndef EDGEBAND_SANITIZED  // AddressSanitizer's shadow memory and quarantine add their own
  CHECK(peak - before < 80 * 1024);  // was ~4 GiB: 16 x 256 MiB committed
#endif
}

// Review: "no bound on queued frames per connection" (200k unread pings grew RSS to 59 MiB) and
// "a client that stops reading pins its slot for ever".
TEST_CASE("dist limits: unread pings are bounded and a host that stops reading is dropped") {
  WorkerProcess worker(EDGEBAND_BIN, 1, "", {"--send-timeout", "1", "--max-conn", "1"});
  RawClient c(worker.addr(), 10000, 4096);  // a small window: the worker's pongs back up soon
  REQUIRE(c.handshake(Credentials{}, kParams));
  const long before = rss_kb(worker.pid(), "VmRSS:");
  const timeval send_limit{5, 0};  // our writes fail rather than hang if the worker never drops us
  ::setsockopt(c.s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &send_limit, sizeof send_limit);
  const auto one = c.frame(MsgType::ping, "{}");
  std::vector<uint8_t> burst;
  for (int i = 0; i < 1000; ++i) burst.insert(burst.end(), one.begin(), one.end());
  const auto t0 = std::chrono::steady_clock::now();
  std::thread flood([&] {  // 200k pings, never reading a pong: the writes block, then fail
    for (int i = 0; i < 200 && c.ok; ++i) c.write(burst.data(), burst.size());
  });
  flood.join();
  const double dropped_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long peak = rss_kb(worker.pid(), "VmHWM:");
  MESSAGE("unread pings: worker RSS ", before / 1024, " MiB before, peak ", peak / 1024,
          " MiB; the flood ended after ", dropped_s, " s");
  CHECK_FALSE(c.ok);  // the worker hung up on us
#ifdef EDGEBAND_SANITIZED
  CHECK(dropped_s < 60);  // instrumented workers run 5-20x slower (8.7 s seen under TSan)
#else
  CHECK(dropped_s < 8);
#endif
#ifndef EDGEBAND_SANITIZED  // AddressSanitizer's quarantine keeps every freed message a while
  CHECK(peak - before < 32 * 1024);  // was 59 MiB for 200k pings, and growing with more
#endif
  // The slot is free again: a real host gets in at once.
  Small s;
  HostRuntime host(s.g, s.hash, {worker.addr()}, RuntimeOptions{});
  CHECK(host.alive() == 1);
}

// Review: "pre-authentication connections hold the same --max-conn slots as real hosts" (four
// silent sockets re-opened every 10 s locked the real host out indefinitely).
TEST_CASE("dist limits: silent strangers cannot keep a real host out") {
  const Credentials key = psk_creds(4);
  WorkerOptions wo = with(key);
  wo.max_connections = 4;
  wo.max_pending = 4;
  LoggedWorker w(wo);
  std::atomic<bool> stop{false};
  std::atomic<int> opened{0};
  std::thread attacker([&] {  // keeps 8 silent connections open, re-opening any closed (2.5/s)
    std::vector<std::unique_ptr<RawClient>> socks;
    while (!stop) {
      for (auto& s : socks) {
        pollfd p{s->s.native_handle(), POLLIN, 0};
        if (::poll(&p, 1, 0) > 0) s.reset();
      }
      socks.erase(std::remove(socks.begin(), socks.end(), nullptr), socks.end());
      while (socks.size() < 8) socks.push_back(std::make_unique<RawClient>(w.addr, 100)), ++opened;
      std::this_thread::sleep_for(std::chrono::milliseconds(400));
    }
  });
  // Stopped and joined however the test ends: a host that failed to get in (a slow sanitizer
  // build on busy cores) threw past a joinable thread, and std::terminate hid the failure.
  struct StopAndJoin {
    std::atomic<bool>& stop;
    std::thread& t;
    ~StopAndJoin() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } stop_and_join{stop, attacker};
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Small s;
  RuntimeOptions ro;
  ro.creds = key;
  const auto t0 = std::chrono::steady_clock::now();
  {
    HostRuntime host(s.g, s.hash, {w.addr}, ro);
    const double waited = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("a real host got in after ", waited, " ms beside ", opened.load(),
            " silent stranger connections");
    CHECK(waited < 2000);
    std::mt19937 rng(2);
    s.check(host, ref::random_tensor(s.g->input, rng));
  }
  stop = true;
  attacker.join();
  CHECK(w.logged("handshake pending"));
}

// Review: "unbounded link/channel values in HELLO (1e300s) feed double-to-integer chrono
// conversions": undefined behaviour before authentication.
TEST_CASE("dist limits: every number of the hello params is range-checked") {
  LoggedWorker w{WorkerOptions{}};
  const char* bad[] = {
      "\"model\":\"mobilenet_v1:0.25:64\",\"link\":\"1gbit,1e300s\"",
      "\"model\":\"mobilenet_v1:0.25:64\",\"link\":\"1e-300bit,1ms\"",
      "\"model\":\"mobilenet_v1:0.25:64\",\"link\":\"1gbit,1ms\",\"channel\":{\"t_s\":[0],\"mbit\":[1e300],\"elapsed_s\":0}",
      "\"model\":\"mobilenet_v1:0.25:64\",\"link\":\"1gbit,1ms\",\"channel\":{\"t_s\":[0],\"mbit\":[10],\"elapsed_s\":1e300}",
      "\"model\":\"mobilenet_v1:0.25:64\",\"link\":\"1gbit,1ms\",\"channel\":{\"t_s\":[1e300],\"mbit\":[10],\"elapsed_s\":0}",
      "\"model\":\"mobilenet_v1:0.25:64\",\"wire\":\"fp8\""};
  for (const char* p : bad) {
    RawClient c(w.addr, 5000);
    CHECK_FALSE(c.handshake(Credentials{}, p));
    CHECK(c.closed_by_peer());
  }
  CHECK(w.logged("out of range"));
  RawClient c(w.addr, 5000);
  CHECK(c.handshake(Credentials{}, "\"model\":\"mobilenet_v1:0.25:64\",\"link\":\"100mbit,2ms\""));
}

// Review: "stale documentation" (the README and dist/auth.h said HMAC-SHA256; the code used
// Poly1305). The security documentation names what the code uses.
TEST_CASE("auth: the security documentation names the primitives the code uses") {
  const std::string root = std::string(EDGEBAND_SHARED).substr(0, std::string(EDGEBAND_SHARED).size() - 10);
  auto read = [&](const std::string& p) {
    std::ifstream f(root + "/" + p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  const std::string sec = read("docs/SECURITY.md"), proto = read("dist/runtime/protocol.h"),
                    hs = read("dist/runtime/handshake.h");
  REQUIRE(!sec.empty());
  for (const char* used : {"libsodium", "X25519", "ChaCha20-Poly1305", "Ed25519", "BLAKE2b"})
    CHECK_MESSAGE(sec.find(used) != std::string::npos, "docs/SECURITY.md does not name ", used);
  const std::string readme = read("README.md");
  for (const std::string* doc : {&sec, &proto, &hs, &readme})
    CHECK(doc->find("HMAC-SHA256") == std::string::npos);
  CHECK(proto.find("FrameCipher") != std::string::npos);
}
