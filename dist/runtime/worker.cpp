#include "dist/runtime/worker.h"

#include <omp.h>
#include <pthread.h>
#include <sys/socket.h>

#include <cstdio>
#include <map>

#include "core/weights_io.h"
#include "dist/runtime/executor.h"
#include "dist/runtime/peer.h"
#include "dist/runtime/protocol.h"
#include "dist/runtime/tcp.h"
#include "kernels/microkernels.h"
#include "models/zoo.h"

namespace eb::dist {

namespace {
constexpr size_t kMaxImagesInFlight = 16;
}

struct WorkerServer::Listener {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor{io};
};

WorkerServer::WorkerServer(WorkerOptions o) : opt_(std::move(o)), net_(std::make_unique<Listener>()) {
  asio::ip::tcp::acceptor& acceptor = net_->acceptor;
  const auto ep = parse_endpoint(opt_.listen);
  acceptor.open(ep.protocol());
  acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  asio::error_code ec;
  acceptor.bind(ep, ec);
  if (ec) throw std::runtime_error("cannot listen on " + opt_.listen + ": " + ec.message());
  acceptor.listen();
  port_ = acceptor.local_endpoint().port();
  listen_fd_ = acceptor.native_handle();
  if (!opt_.weights.empty()) model_for("");  // load and verify the file up front
}

WorkerServer::~WorkerServer() {
  stop();
  if (bg_.joinable()) bg_.join();
  std::lock_guard<std::mutex> lk(threads_mu_);
  for (auto& s : threads_)
    if (s.t.joinable()) s.t.join();
}

void WorkerServer::log(const std::string& s) {
  if (opt_.log)
    opt_.log(s);
  else
    std::fprintf(stderr, "edgeband worker: %s\n", s.c_str());
}

void WorkerServer::stop() {
  if (stopping_.exchange(true)) return;
  // close() alone does not wake a thread blocked in accept(); shutdown() on the listening socket
  // does (accept fails with EINVAL).
  {
    std::lock_guard<std::mutex> lk(acceptor_mu_);
    if (!acceptor_closed_) ::shutdown(listen_fd_, SHUT_RDWR);
  }
  std::lock_guard<std::mutex> lk(threads_mu_);
  for (auto& w : sockets_)
    if (auto p = w.lock()) static_cast<Peer*>(p.get())->close();
}

size_t WorkerServer::session_threads() {
  std::lock_guard<std::mutex> lk(threads_mu_);
  return threads_.size();
}

void WorkerServer::start_background() {
  bg_ = std::thread([this] { run(); });
}

WorkerServer::Model WorkerServer::model_for(const std::string& name) {
  std::lock_guard<std::mutex> lk(models_mu_);
  if (!opt_.weights.empty()) {
    if (models_.empty()) {
      uint64_t h = 0;
      auto g = std::make_shared<Graph>(load_weights(opt_.weights, &h));
      models_.push_back({g->model, {g, h}});
    }
    const Model& m = models_.front().second;
    if (!name.empty() && name != m.graph->model)
      throw std::runtime_error("this worker serves model '" + m.graph->model + "' (" +
                               opt_.weights + "), not '" + name + "'");
    return m;
  }
  for (auto& kv : models_)
    if (kv.first == name) return kv.second;
  // A synthetic model is a function of its name alone: one copy per process, shared by every
  // server in it (the tests run many; a VGG-16 build takes seconds under the sanitizers).
  static std::mutex synthetic_mu;
  static std::map<std::string, Model> synthetic;
  std::lock_guard<std::mutex> lk_synthetic(synthetic_mu);
  auto it = synthetic.find(name);
  if (it == synthetic.end()) {
    uint64_t h = 0;
    auto g = std::make_shared<Graph>(models::load_model(name, "", &h));
    it = synthetic.emplace(name, Model{g, h}).first;
  }
  models_.push_back({name, it->second});
  return models_.back().second;
}

void WorkerServer::run() {
  struct Closer {
    WorkerServer& w;
    ~Closer() {
      std::lock_guard<std::mutex> lk(w.acceptor_mu_);
      asio::error_code ec;
      w.net_->acceptor.close(ec);
      w.acceptor_closed_ = true;
    }
  } closer{*this};
  while (!stopping_) {
    asio::ip::tcp::socket sock(net_->io);
    asio::error_code ec;
    net_->acceptor.accept(sock, ec);
    if (ec) {
      if (stopping_) break;
      continue;
    }
    if (stopping_) break;
    std::string who = "?";
    auto rep = sock.remote_endpoint(ec);
    if (!ec) who = rep.address().to_string() + ":" + std::to_string(rep.port());
    if (active_ >= opt_.max_connections) {
      log("refusing " + who + ": " + std::to_string(opt_.max_connections) + " connections already");
      sock.close(ec);
      continue;
    }
    ++active_;
    std::lock_guard<std::mutex> lk(threads_mu_);
    for (auto it = threads_.begin(); it != threads_.end();) {  // reap finished sessions
      if (*it->done) {
        it->t.join();
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = sockets_.begin(); it != sockets_.end();)
      it = it->expired() ? sockets_.erase(it) : std::next(it);
    auto done = std::make_shared<std::atomic<bool>>(false);
    threads_.push_back({std::thread([this, s = std::make_unique<TcpSocket>(std::move(sock)), who,
                                     done]() mutable {
                          session(std::move(s), who);
                          *done = true;
                        }),
                        done});
  }
}

void WorkerServer::session(std::unique_ptr<TcpSocket> sock, std::string who) {
  pthread_setname_np(pthread_self(), "eb-session");
  // The OpenMP thread count is per thread: without this, sessions would run default-size teams.
  if (opt_.threads > 0) omp_set_num_threads(opt_.threads);
  auto inbox = std::make_shared<Inbox>();
  auto peer = std::make_shared<Peer>(std::move(sock), inbox, 0, who);
  {
    std::lock_guard<std::mutex> lk(threads_mu_);
    sockets_.push_back(std::static_pointer_cast<void>(peer));
  }
  if (stopping_) peer->close();
  // The pre-handshake limits must hold from the first byte: set before the reader starts, or
  // the reader could take a stranger's first frame under the defaults (a race TSan's timing hit).
  peer->set_limits({kMaxJson, 0});
  peer->start_reader();
  std::shared_ptr<const Graph> g;
  std::unique_ptr<FeatureStore> store;
  Plan plan;
  bool have_plan = false, fp16 = false;
  int me = -1;
  std::map<uint64_t, int> next_block;  // per image
  std::map<uint64_t, std::vector<bool>> sent_by_image;  // plan transfers already queued
  // Compute spans not yet reported: each rides on the next frame out, whichever it is, so a
  // block that sends nothing still appears in the host's trace (bounded: a trace, not state).
  Json spans = Json::array();
  auto add_span = [&](int block, uint64_t image, int64_t t0) {
    if (spans.size() >= 64) return;
    Json sp = Json::array();
    sp.push_back(block);
    sp.push_back(double(image));
    sp.push_back(double(t0));
    sp.push_back(double(now_us()));
    spans.push_back(sp);
  };
  auto take_spans = [&] {
    Json extra = Json::object();
    if (spans.size() == 0) return extra;
    extra["spans"] = std::move(spans);
    spans = Json::array();
    return extra;
  };
  // Handshake: HELLO, then (with a secret) CHALLENGE out and AUTH in; only then HELLO_OK.
  enum class Stage { hello, auth, ready } stage = Stage::hello;
  const bool secure = opt_.secret.enabled();
  Nonce worker_nonce{}, host_nonce{};
  Message hello;
  const auto handshake_deadline = Clock::now() + std::chrono::milliseconds(opt_.handshake_timeout_ms);
  auto refuse = [&](const std::string& tell_host, const std::string& why) {
    Json err = Json::object();
    err["message"] = tell_host;
    peer->send(MsgType::error, 0, err);
    throw std::runtime_error("refusing " + who + ": " + why);
  };
  // Loads the model HELLO names and answers HELLO_OK (with our proof when authenticating).
  auto accept_hello = [&] {
    Model model;
    try {
      model = model_for(hello.json.at("model").string("model"));
    } catch (const std::exception& e) {
      refuse(e.what(), std::string("hello refused: ") + e.what());
    }
    g = model.graph;
    store = std::make_unique<FeatureStore>(*g);
    Shaping sh;
    if (hello.json.has("link") && !hello.json.at("link").is_null()) {
      sh.enabled = true;
      sh.link = parse_link(hello.json.at("link").string("link"));
      if (hello.json.has("channel"))
        sh.channel = std::make_shared<BandwidthTrace>(
            channel_from_wire(hello.json.at("channel"), sh.epoch));
    }
    peer->set_shaping(sh);
    fp16 = hello.json.has("wire") && hello.json.at("wire").string("wire") == "fp16";
    Json ok = Json::object();
    ok["model"] = g->model;
    char hex[32];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(model.hash));
    ok["hash"] = hex;
    ok["isa"] = kernels::isa_name(kernels::active().isa);
    if (secure) {
      const Digest256 proof = worker_proof(opt_.secret, worker_nonce, host_nonce);
      ok["proof"] = to_hex(proof.data(), proof.size());
    }
    peer->set_limits({kMaxJson, opt_.max_frame_bytes});
    peer->send(MsgType::hello_ok, hello.id, ok);
    stage = Stage::ready;
  };
  try {
    while (true) {
      const auto wait = stage == Stage::ready
                            ? std::chrono::milliseconds(opt_.idle_timeout_ms)
                            : std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::max(handshake_deadline - Clock::now(), Clock::duration(0)));
      std::optional<Message> m = inbox->pop(wait);
      if (!m)
        throw std::runtime_error(stage == Stage::ready ? "idle timeout"
                                                       : "handshake not completed in time");
      if (!m->failure.empty()) {
        if (stage == Stage::auth)
          throw std::runtime_error("refusing " + who + ": authentication failed (" + m->failure +
                                   "); wrong secret?");
        if (m->failure != "closed" && m->failure != "connection closed by peer")
          log(who + ": " + m->failure);
        break;
      }
      if (stage != Stage::ready && m->type != MsgType::hello && m->type != MsgType::auth)
        throw ProtocolError(std::string(msg_name(m->type)) + " before the handshake");
      if (secure && stage != Stage::hello && !m->authenticated)
        throw ProtocolError("unauthenticated frame");  // read before the MAC was switched on
      switch (m->type) {
        case MsgType::hello: {
          if (stage != Stage::hello) throw ProtocolError("second hello");
          hello = std::move(*m);
          if (!secure) {
            accept_hello();
            break;
          }
          if (!hello.json.has("nonce") ||
              !from_hex(hello.json.at("nonce").string("nonce"), host_nonce.data(), host_nonce.size()))
            refuse("this worker requires authentication: start the host with --secret-file",
                   "the host sent no credentials (no --secret-file?)");
          worker_nonce = random_nonce();
          peer->enable_mac(session_key(opt_.secret, worker_nonce, host_nonce), false);
          Json c = Json::object();
          c["nonce"] = to_hex(worker_nonce.data(), worker_nonce.size());
          peer->send(MsgType::challenge, 0, c);
          stage = Stage::auth;
          break;
        }
        case MsgType::auth: {
          if (stage != Stage::auth) throw ProtocolError("unexpected auth");
          const Digest256 want = host_proof(opt_.secret, worker_nonce, host_nonce, hello.text);
          Digest256 got{};
          if (!m->json.has("proof") || !from_hex(m->json.at("proof").string("proof"), got.data(), got.size()) ||
              !equal_constant_time(got.data(), want.data(), got.size()))
            throw std::runtime_error("refusing " + who + ": authentication failed (bad proof)");
          peer->sign_sends();
          accept_hello();
          break;
        }
        case MsgType::plan: {
          if (!g) throw ProtocolError("plan before hello");
          plan = plan_from_wire(m->json.at("plan"), *g);
          me = int(m->json.at("device").integer("device"));
          if (me < 1 || me >= plan.devices) throw ProtocolError("device index out of range");
          have_plan = true;
          store->clear();
          next_block.clear();
          sent_by_image.clear();
          spans = Json::array();
          break;
        }
        case MsgType::rows: {
          if (!have_plan) throw ProtocolError("rows before a plan");
          const uint64_t image = m->id;
          if (!next_block.count(image) && next_block.size() >= kMaxImagesInFlight)
            throw ProtocolError("too many images in flight");
          store->put_wire(image, m->json, m->data);
          int& b = next_block[image];
          const int nb = int(plan.blocks.size()), stages = nb + plan.split_tail;
          while (b < stages) {
            if (b >= nb) {  // our channel slice of split tail layer j, once its input is here
              const int j = b - nb;
              auto slice = std::make_shared<std::vector<float>>();
              const int64_t t0 = now_us();
              if (!compute_tail_slice(*g, plan, me, j, image, *store, slice.get())) break;
              if (!slice->empty()) {
                add_span(b, image, t0);
                send_slice(*peer, image, plan.tail_first + j,
                           plan.tail_slices[size_t(j)][size_t(me)], slice, fp16, take_spans());
              }
              ++b;
              continue;
            }
            ComputeSpan span{};
            if (!plan.blocks[size_t(b)].zones[size_t(me)].empty()) {
              // Send each outgoing transfer as soon as its rows exist (edge-first plans make
              // that before the interior of the zone is computed).
              // Per image, not per attempt: an overlap block is computed over several calls.
              std::vector<bool>& sent = sent_by_image[image];
              sent.resize(plan.transfers.size(), false);
              // Each piece computed is a span, sent with the next frame out (usually its own rows).
              int64_t piece_start = now_us();
              auto flush = [&] {
                add_span(b, image, piece_start);
                for (size_t k = 0; k < plan.transfers.size(); ++k) {
                  const Transfer& t = plan.transfers[k];
                  if (sent[k] || t.block != b + 1 || t.src != me ||
                      !store->holds(image, t.node, t.rows))
                    continue;
                  send_rows(*peer, image, t, *store, fp16, take_spans());
                  sent[k] = true;
                }
                piece_start = now_us();
              };
              if (!compute_zones(*g, plan, me, b, image, *store, &span, flush)) break;
            }
            ++b;
          }
          if (b == stages) {
            store->drop(image);
            next_block.erase(image);
            sent_by_image.erase(image);
          }
          break;
        }
        case MsgType::ping:  // answered in turn: a pong also says every earlier frame is handled
          peer->send(MsgType::pong, m->id, Json::object());
          break;
        case MsgType::bye:
          throw std::runtime_error("");
        default:
          throw ProtocolError(std::string("unexpected ") + msg_name(m->type) + " message");
      }
    }
  } catch (const std::exception& e) {
    const std::string why = e.what();
    if (why.rfind("refusing ", 0) == 0)
      log(why);
    else if (!why.empty())
      log("dropping " + who + ": " + why);
  }
  peer->close();
  ++served_;
  --active_;
}

}  // namespace eb::dist
