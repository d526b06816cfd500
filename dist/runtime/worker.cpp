#include "dist/runtime/worker.h"

#include <omp.h>
#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
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

// One connection: its socket, its thread, and whether it has passed the handshake (pending
// connections may be dropped for newer ones; a host's never are).
struct WorkerServer::Conn {
  std::shared_ptr<Inbox> inbox = std::make_shared<Inbox>();
  std::unique_ptr<Peer> peer;
  std::string who;
  std::thread t;
  std::atomic<bool> authed{false}, done{false};
};

struct WorkerServer::Listener {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor{io};
};

// One host's connection, from the handshake to BYE (or a fault): the thread's whole life.
class WorkerServer::Session {
 public:
  Session(WorkerServer& w, Conn& c) : w_(w), c_(c), peer_(*c.peer) {}
  void run();

 private:
  struct Refusal : std::runtime_error {  // a failed handshake: logged as "refusing ..."
    using std::runtime_error::runtime_error;
  };
  Message next(std::chrono::milliseconds wait, bool handshake);
  [[noreturn]] void refuse(const std::string& tell_host, const std::string& why);
  void handshake();
  void accept_params(const Json& params, const Handshake& hs);
  bool serve(Message& m);  // false: BYE
  void on_plan(const Message& m);
  void on_rows(const Message& m);
  bool advance(uint64_t image);  // runs the image's ready stages; true: it is done here
  const Plan& plan_of(uint64_t image, const Json& meta);  // the image's plan (Plan::for_image)
  bool run_block(const Plan& p, uint64_t image, int b);       // false: an input row is missing
  bool run_tail_layer(const Plan& p, uint64_t image, int j);  // the same, for split tail layer j
  void add_span(Stage stage, uint64_t image, int64_t t0);
  Json take_spans();

  WorkerServer& w_;
  Conn& c_;
  Peer& peer_;
  bool slot_ = false;
  std::shared_ptr<const Graph> g_;
  std::unique_ptr<FeatureStore> store_;
  Plan plan_;
  bool have_plan_ = false, fp16_ = false;
  std::string plan_text_;  // the last PLAN message
  int me_ = -1;
  std::map<uint64_t, Stage> next_stage_;  // per image: the next stage to run
  std::map<uint64_t, std::vector<bool>> sent_;  // plan transfers already queued, per image
  std::map<uint64_t, size_t> image_plan_;  // per image: its Plan::image_plans index, as the host says
  std::vector<uint64_t> arrival_;  // a batch plan's unfinished images, in the order they came
  // Compute spans not yet reported: each rides on the next frame out, whichever it is, so a
  // block that sends nothing still appears in the host's trace (bounded: a trace, not state).
  Json spans_ = Json::array();
};

WorkerServer::WorkerServer(WorkerOptions o) : opt_(std::move(o)), net_(std::make_unique<Listener>()) {
  asio::ip::tcp::acceptor& acceptor = net_->acceptor;
  const auto ep = parse_endpoint(opt_.listen);
  if (!opt_.creds.enabled() && !opt_.insecure && !ep.address().is_loopback())
    throw std::invalid_argument(
        "refusing to listen on " + opt_.listen +
        " without a key: anyone on the network could send work and read the images. Give the "
        "worker a key (--secret-file, or --key and --authorized-keys; docs/SECURITY.md), listen "
        "on 127.0.0.1, or pass --insecure on a network you trust");
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
  std::vector<std::shared_ptr<Conn>> conns;
  {
    std::lock_guard<std::mutex> lk(threads_mu_);  // not held while joining: sessions take it to end
    conns = conns_;
  }
  for (auto& c : conns)
    if (c->t.joinable()) c->t.join();
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
  for (auto& c : conns_)
    if (c->peer) c->peer->close();
}

size_t WorkerServer::session_threads() {
  std::lock_guard<std::mutex> lk(threads_mu_);
  return conns_.size();
}

void WorkerServer::start_background() {
  bg_ = std::thread([this] { run(); });
}

bool WorkerServer::take_slot() {
  if (hosts_.fetch_add(1) < opt_.max_connections) return true;
  --hosts_;
  return false;
}

void WorkerServer::release_slot() { --hosts_; }

WorkerServer::Model WorkerServer::model_for(const std::string& name) {
  std::lock_guard<std::mutex> lk(models_mu_);
  if (!opt_.weights.empty()) {
    if (models_.empty()) {
      uint64_t h = 0;
      // Lazy: the worker reads from the file only the layers and FC slices its plans give it.
      auto g = std::make_shared<Graph>(load_weights_lazy(opt_.weights, &h));
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
  if (models_.size() >= kMaxModels)
    throw std::runtime_error("this worker already holds " + std::to_string(kMaxModels) +
                             " models built by name; restart it to serve '" + name + "'");
  // A synthetic model is a function of its name alone: one copy per process, shared by every
  // server in it (the tests run many; a VGG-16 build takes seconds under the sanitizers).
  static std::mutex synthetic_mu;
  static std::map<std::string, Model> synthetic;
  std::lock_guard<std::mutex> lk_synthetic(synthetic_mu);
  auto it = synthetic.find(name);
  if (it == synthetic.end()) {
    uint64_t h = 0;
    std::shared_ptr<Graph> g;
    try {
      // Lazy: a worker packs only the layers and FC slices its plans give it (on_plan).
      g = std::make_shared<Graph>(models::load_model(name, "", &h, models::Hold::lazy));
    } catch (const std::invalid_argument& e) {  // a converted model: this worker needs its file
      throw std::runtime_error(std::string(e.what()) + "; this worker has no --weights: start it " +
                               "with --weights FILE, the .ebw the host runs");
    }
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
    reap_and_evict();
    spawn(std::make_unique<TcpSocket>(std::move(sock)), who);
  }
}

void WorkerServer::reap_and_evict() {
  std::lock_guard<std::mutex> lk(threads_mu_);
  for (auto it = conns_.begin(); it != conns_.end();) {
    if ((*it)->done) {
      (*it)->t.join();  // done: past its last use of threads_mu_
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
  int pending = 0;
  for (auto& c : conns_) pending += !c->authed;
  // The pending pool is full: drop the oldest connection still in its handshake. A real host
  // completes it in milliseconds; a stranger holding sockets open loses them to newer ones.
  for (auto& c : conns_) {
    if (pending < opt_.max_pending) break;
    if (c->authed || !c->peer || c->peer->closed()) continue;
    log("dropping " + c->who + ": handshake pending while " + std::to_string(opt_.max_pending) +
        " connections wait (--max-pending)");
    c->peer->close();
    --pending;
  }
}

void WorkerServer::spawn(std::unique_ptr<TcpSocket> sock, const std::string& who) {
  auto c = std::make_shared<Conn>();
  c->who = who;
  c->peer = std::make_unique<Peer>(std::move(sock), c->inbox, 0, who);
  std::lock_guard<std::mutex> lk(threads_mu_);
  conns_.push_back(c);
  c->t = std::thread([this, c] {
    pthread_setname_np(pthread_self(), "eb-session");
    Session(*this, *c).run();
    // Closes the socket now (a peer still sending gets a reset, not a stalled window) and
    // frees the connection's buffers; the thread is joined at a later accept.
    std::unique_ptr<Peer> gone;
    {
      std::lock_guard<std::mutex> lk_conns(threads_mu_);
      gone = std::move(c->peer);
    }
    gone.reset();
    ++served_;
    c->done = true;
  });
}

void WorkerServer::Session::run() {
  // The OpenMP thread count is per thread: without this, sessions would run default-size teams.
  if (w_.opt_.threads > 0) omp_set_num_threads(w_.opt_.threads);
  if (w_.stopping_) peer_.close();
  // The pre-handshake limits must hold from the first byte: set before the reader starts, or
  // the reader could take a stranger's first frame under the defaults (a race TSan's timing hit).
  peer_.set_limits({kMaxJson, 0});
  peer_.set_send_timeout(std::chrono::milliseconds(w_.opt_.send_timeout_ms));
  peer_.start_reader();
  try {
    handshake();
    while (true) {
      Message m = next(std::chrono::milliseconds(w_.opt_.idle_timeout_ms), false);
      if (!m.failure.empty()) {
        if (m.failure != "closed" && m.failure != "connection closed by peer")
          w_.log(c_.who + ": " + m.failure);
        break;
      }
      if (!serve(m)) break;
    }
  } catch (const Refusal& e) {
    w_.log(e.what());
  } catch (const std::exception& e) {
    if (*e.what()) w_.log("dropping " + c_.who + ": " + e.what());
  }
  peer_.close();
  if (slot_) w_.release_slot();
}

Message WorkerServer::Session::next(std::chrono::milliseconds wait, bool handshake) {
  std::optional<Message> m = c_.inbox->pop(wait);
  if (!m) throw std::runtime_error(handshake ? "handshake not completed in time" : "idle timeout");
  return std::move(*m);
}

void WorkerServer::Session::refuse(const std::string& tell_host, const std::string& why) {
  Json err = Json::object();
  err["message"] = tell_host;
  try {
    peer_.send(MsgType::error, 0, err);
  } catch (const std::exception&) {
  }
  throw Refusal("refusing " + c_.who + ": " + why);
}

// HELLO, then (with a key) CHALLENGE out and AUTH in; only then a host slot, the model and
// HELLO_OK. A failure before that point costs this worker a small frame and a thread.
void WorkerServer::Session::handshake() {
  const auto deadline = Clock::now() + std::chrono::milliseconds(w_.opt_.handshake_timeout_ms);
  auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(deadline - Clock::now(), Clock::duration(0)));
  };
  Message hello = next(left(), true);
  if (!hello.failure.empty()) throw std::runtime_error(hello.failure == "closed" ? "" : hello.failure);
  if (hello.type != MsgType::hello)
    throw ProtocolError(std::string(msg_name(hello.type)) + " before the handshake");
  Handshake hs(w_.opt_.creds, false);
  std::optional<Json> challenge;
  Json params;
  try {
    challenge = hs.worker_challenge(hello.text, hello.json);
    if (!challenge) {
      if (!hello.json.has("params")) throw HandshakeError("HELLO without params");
      params = hello.json.at("params");
    }
  } catch (const HandshakeError& e) {
    refuse(e.what(), std::string("hello refused: ") + e.what());
  }
  if (challenge) {
    peer_.expect_sealed(hs.keys().recv);
    peer_.send(MsgType::challenge, 0, *challenge);
    peer_.seal_sends(hs.keys().send);
    Message auth = next(left(), true);
    if (!auth.failure.empty())
      throw Refusal("refusing " + c_.who + ": authentication failed (" + auth.failure +
                    "); a different key?");
    if (auth.type != MsgType::auth || !auth.authenticated)
      throw ProtocolError(std::string("unexpected ") + msg_name(auth.type) + " in the handshake");
    try {
      params = hs.worker_accept(auth.json);
    } catch (const HandshakeError& e) {
      refuse(e.what(), std::string("authentication failed: ") + e.what());
    }
  }
  try {
    check_params(params);
  } catch (const HandshakeError& e) {
    refuse(e.what(), std::string("hello refused: ") + e.what());
  }
  if (!(slot_ = w_.take_slot()))
    refuse("worker busy: " + std::to_string(w_.opt_.max_connections) + " hosts connected",
           std::to_string(w_.opt_.max_connections) + " connections already");
  c_.authed = true;
  accept_params(params, hs);
}

// Loads the model the params name and answers HELLO_OK (with our identity in keys mode).
void WorkerServer::Session::accept_params(const Json& params, const Handshake& hs) {
  Model model;
  try {
    model = w_.model_for(params.at("model").string("model"));
  } catch (const std::exception& e) {
    refuse(e.what(), std::string("hello refused: ") + e.what());
  }
  g_ = model.graph;
  store_ = std::make_unique<FeatureStore>(*g_);
  Shaping sh;
  if (params.has("link") && !params.at("link").is_null()) {
    sh.enabled = true;
    sh.link = parse_link(params.at("link").string("link"));
    if (params.has("channel"))
      sh.channel = std::make_shared<BandwidthTrace>(channel_from_wire(params.at("channel"), sh.epoch));
  }
  peer_.set_shaping(sh);
  fp16_ = params.has("wire") && params.at("wire").string("wire") == "fp16";
  Json ok = Json::object();
  ok["model"] = g_->model;
  char hex[32];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(model.hash));
  ok["hash"] = hex;
  ok["isa"] = kernels::isa_name(kernels::active().isa);
  hs.worker_sign(ok);
  peer_.set_limits({kMaxJson, w_.opt_.max_frame_bytes});
  peer_.send(MsgType::hello_ok, 0, ok);
}

bool WorkerServer::Session::serve(Message& m) {
  if (w_.opt_.creds.enabled() && !m.authenticated)
    throw ProtocolError("unsealed frame");  // cannot happen: the reader refuses them
  switch (m.type) {
    case MsgType::plan:
      on_plan(m);
      return true;
    case MsgType::rows:
      on_rows(m);
      return true;
    case MsgType::ping:  // answered in turn: a pong also says every earlier frame is handled
      peer_.send(MsgType::pong, m.id, Json::object());
      return true;
    case MsgType::bye:
      return false;
    default:
      throw ProtocolError(std::string("unexpected ") + msg_name(m.type) + " message");
  }
}

void WorkerServer::Session::on_plan(const Message& m) {
  plan_ = plan_from_wire(m.json.at("plan"), *g_);
  me_ = int(m.json.at("device").integer("device"));
  if (me_ < 1 || me_ >= plan_.devices) throw ProtocolError("device index out of range");
  // The host sends its plan every call. The same plan keeps the maps its images leave (their
  // pages resident); another drops them before it loads its layers.
  std::string text = m.json.dump();
  if (text == plan_text_) {
    store_->drop_all();
  } else {
    store_->clear();
    plan_text_ = std::move(text);
  }
  load_for_plan(*g_, plan_, me_);
  have_plan_ = true;
  next_stage_.clear();
  sent_.clear();
  image_plan_.clear();
  arrival_.clear();
  spans_ = Json::array();
}

void WorkerServer::Session::on_rows(const Message& m) {
  if (!have_plan_) throw ProtocolError("rows before a plan");
  const uint64_t image = m.id;
  // A batch plan's images wait in arrival_ before they have a next stage: both count.
  const bool known = next_stage_.count(image) || image_plan_.count(image);
  if (!known && std::max(next_stage_.size(), image_plan_.size()) >= kMaxImagesInFlight)
    throw ProtocolError("too many images in flight");
  plan_of(image, m.json);
  store_->put_wire(image, m.json, m.data);
  if (plan_.image_plans.empty()) {
    advance(image);
    return;
  }
  // A batch plan with image plans: images in the order their first frames came, each to its
  // last stage here before the next one starts, as the simulator's device timelines have them.
  // A pipelined image's early zones, waiting for a halo, must not let a whole image that came
  // after it take the CPU for a whole image's time.
  if (std::find(arrival_.begin(), arrival_.end(), image) == arrival_.end()) arrival_.push_back(image);
  while (!arrival_.empty() && advance(arrival_.front())) arrival_.erase(arrival_.begin());
}

bool WorkerServer::Session::advance(uint64_t image) {
  const Plan& p = plan_of(image, Json());  // known: its first frame said
  Stage& s = next_stage_[image];
  while (s.index < p.stages() &&
         (p.is_tail(s) ? run_tail_layer(p, image, p.tail_layer(s)) : run_block(p, image, s.index)))
    s = s.next();
  if (s.index < p.stages()) return false;
  store_->drop(image);
  next_stage_.erase(image);
  sent_.erase(image);
  image_plan_.erase(image);
  return true;
}

// A batch plan that runs some images whole (Plan::image_plans): the host's frames of an image
// say which of its plans the image follows; the first one decides.
const Plan& WorkerServer::Session::plan_of(uint64_t image, const Json& meta) {
  if (plan_.image_plans.empty()) return plan_;
  auto it = image_plan_.find(image);
  if (it == image_plan_.end()) {
    long k = -1;
    try {
      k = meta.at("plan_image").integer("plan_image");
    } catch (const std::exception& e) {
      throw ProtocolError(std::string("rows of a batch plan without its image plan: ") + e.what());
    }
    if (k < 0 || size_t(k) >= plan_.image_plans.size()) throw ProtocolError("image plan out of range");
    it = image_plan_.emplace(image, size_t(k)).first;
  }
  return plan_.image_plans[it->second];
}

// Our channel slice of split tail layer j, once its input is here.
bool WorkerServer::Session::run_tail_layer(const Plan& p, uint64_t image, int j) {
  auto slice = std::make_shared<std::vector<float>>();
  const int64_t t0 = now_us();
  if (!compute_tail_slice(*g_, p, me_, j, image, *store_, slice.get())) return false;
  // A whole layer stays here for the next one: the host sends it nothing (append_tail_transfers).
  if (holds_whole_slice(*g_, p, j, me_) && j + 1 < p.split_tail)
    store_->put_channels(image, p.tail_first + j, p.tail_slices[size_t(j)][size_t(me_)], slice->data());
  if (!slice->empty()) {
    add_span(p.tail_stage(j), image, t0);
    send_slice(peer_, image, p.tail_first + j, p.tail_slices[size_t(j)][size_t(me_)],
               slice, fp16_, take_spans());
  }
  return true;
}

// Our zones of block b. Each outgoing transfer leaves as soon as its rows exist (edge-first
// plans make that before the interior of the zone is computed); each piece computed is a span,
// sent with the next frame out (usually its own rows).
bool WorkerServer::Session::run_block(const Plan& p, uint64_t image, int b) {
  if (p.blocks[size_t(b)].zones[size_t(me_)].empty()) return true;
  // Per image, not per attempt: an overlap block is computed over several calls.
  std::vector<bool>& sent = sent_[image];
  sent.resize(p.transfers.size(), false);
  int64_t piece_start = now_us();
  auto flush = [&] {
    add_span(Stage{b}, image, piece_start);
    for (size_t k = 0; k < p.transfers.size(); ++k) {
      const Transfer& t = p.transfers[k];
      if (sent[k] || t.stage != Stage{b + 1} || t.src != me_ || !store_->holds(image, t.node, t.rows))
        continue;
      send_rows(peer_, image, t, *store_, fp16_, take_spans());
      sent[k] = true;
    }
    piece_start = now_us();
  };
  ComputeSpan span{};
  return compute_zones(*g_, p, me_, b, image, *store_, &span, flush);
}

void WorkerServer::Session::add_span(Stage stage, uint64_t image, int64_t t0) {
  if (spans_.size() >= 64) return;
  Json sp = Json::array();
  sp.push_back(stage.index);
  sp.push_back(double(image));
  sp.push_back(double(t0));
  sp.push_back(double(now_us()));
  spans_.push_back(sp);
}

// The worker's peak resident memory rides along too (the host prints it per device), and the
// feature maps it mapped afresh (tests check that the next call of a plan maps none).
Json WorkerServer::Session::take_spans() {
  Json extra = Json::object();
  extra["peak_rss_kb"] = double(peak_rss_kb());
  extra["maps_mapped"] = double(store_->maps_mapped());
  if (spans_.size() == 0) return extra;
  extra["spans"] = std::move(spans_);
  spans_ = Json::array();
  return extra;
}

}  // namespace eb::dist
