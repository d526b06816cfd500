#include "dist/runtime/host.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "dist/plan/stats.h"
#include "dist/runtime/reply.h"
#include "dist/runtime/tcp.h"

namespace eb::dist {

namespace {
// A worker misbehaved (died, stalled, sent garbage): who and why.
struct WorkerFault {
  int peer;
  std::string why;
  bool reported = false;  // already dropped and counted (await_pongs)
};
// Sends leave on the peers' sender threads; they log their wire time here.
struct WireLog {
  std::mutex mu;
  std::vector<InferStats::Wire> wires;
  void add(const InferStats::Wire& w) {
    std::lock_guard<std::mutex> lk(mu);
    wires.push_back(w);
  }
};
}  // namespace

struct HostRuntime::Joining {
  std::unique_ptr<Handshake> hs;
  std::string hello_text;  // as sent: the transcript covers its exact bytes
  bool challenged = false;
};

HostRuntime::HostRuntime(std::shared_ptr<const Graph> g, uint64_t model_hash,
                         const std::vector<std::string>& workers, RuntimeOptions opt)
    : g_(std::move(g)),
      opt_(opt),
      io_(std::make_unique<IoContext>()),
      inbox_(std::make_shared<Inbox>()) {
  // Emulated links: the host's connections share its port, as behind a real switch.
  if (opt_.shaping.enabled && !opt_.shaping.port) opt_.shaping.port = std::make_shared<Port>();
  char want[32];
  std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(model_hash));
  std::vector<Joining> joining;
  for (const std::string& w : workers) connect(w, joining);
  // Every worker must complete the handshake and answer with the same model identity before
  // any plan runs.
  size_t ready = 0;
  while (ready < peers_.size()) {
    auto m = inbox_->pop(std::chrono::milliseconds(opt_.hello_timeout_ms));
    if (!m)
      throw std::runtime_error("a worker did not answer hello (load its model) within the timeout");
    const size_t k = size_t(m->peer);
    ready += joining_step(joining[k], k, *m, want);
  }
}

Shaping HostRuntime::shaping_of(size_t worker) const {
  Shaping s = opt_.shaping;
  if (worker < opt_.worker_links.size()) s.link = opt_.worker_links[worker];
  return s;
}

Json HostRuntime::hello_params(size_t worker) const {
  Json p = Json::object();
  p["model"] = g_->model;
  p["wire"] = opt_.fp16 ? "fp16" : "fp32";
  p["link"] = opt_.shaping.enabled ? Json(shaping_of(worker).link.str()) : Json();
  if (opt_.shaping.enabled && opt_.shaping.channel) {
    Json ch = Json::object(), t = Json::array(), r = Json::array();
    for (size_t k = 0; k < opt_.shaping.channel->t_s.size(); ++k)
      t.push_back(opt_.shaping.channel->t_s[k]), r.push_back(opt_.shaping.channel->mbit[k]);
    ch["t_s"] = t;
    ch["mbit"] = r;
    ch["elapsed_s"] = std::chrono::duration<double>(Clock::now() - opt_.shaping.epoch).count();
    p["channel"] = ch;
  }
  return p;
}

void HostRuntime::connect(const std::string& addr, std::vector<Joining>& joining) {
  if (!opt_.creds.enabled() && !opt_.insecure && !parse_endpoint(addr).address().is_loopback())
    throw std::invalid_argument(
        "worker " + addr +
        " is not on this machine and this host has no key: the images would cross the network "
        "in clear. Give it a key (--secret-file, or --key and --worker-keys; docs/SECURITY.md) "
        "or pass --insecure on a network you trust");
  auto sock = std::make_unique<TcpSocket>(
      connect_to(io_->io, addr, std::chrono::milliseconds(opt_.timeout_ms)));
  auto p = std::make_unique<Peer>(std::move(sock), inbox_, int(peers_.size()), addr);
  p->set_shaping(shaping_of(peers_.size()));
  p->set_send_timeout(std::chrono::milliseconds(opt_.timeout_ms));
  p->start_reader();
  Joining j;
  j.hs = std::make_unique<Handshake>(opt_.creds, true);
  const Json hello = j.hs->host_hello(hello_params(peers_.size()));
  j.hello_text = hello.dump();  // Peer::send dumps the same object to the same bytes
  p->send(MsgType::hello, 0, hello);
  peers_.push_back(std::move(p));
  alive_.push_back(true);
  joining.push_back(std::move(j));
}

bool HostRuntime::joining_step(Joining& j, size_t k, Message& m, const std::string& want) {
  const std::string& name = peers_[k]->name();
  if (!m.failure.empty()) {
    if (j.challenged)
      throw std::runtime_error("worker " + name + " ended the connection during authentication (" +
                               m.failure + "): does it hold the same key, and this host's key "
                               "among its authorized keys? See its log");
    throw std::runtime_error("worker " + name + ": " + m.failure);
  }
  if (m.type == MsgType::error)
    throw std::runtime_error("worker " + name + " refused (" + error_text(m.json) + ")");
  try {
    if (m.type == MsgType::challenge && !j.challenged) {
      const Json auth = j.hs->host_auth(j.hello_text, m.text, m.json, hello_params(k));
      peers_[k]->enable_encryption(j.hs->keys());
      peers_[k]->send(MsgType::auth, 0, auth);
      j.challenged = true;
      return false;
    }
    if (m.type != MsgType::hello_ok || !j.hs) throw std::runtime_error("unexpected reply");
    j.hs->host_verify(m.json, m.authenticated);
  } catch (const std::exception& e) {
    throw std::runtime_error("worker " + name + ": " + e.what() + "; not using it");
  }
  j.hs.reset();
  const std::string got = m.json.at("hash").string("hash");
  if (got != want)
    throw std::runtime_error("worker " + name + " holds a different model (" +
                             m.json.at("model").string() + ", weights hash " + got +
                             "; this host has " + g_->model + ", " + want + ")");
  return true;
}

HostRuntime::~HostRuntime() {
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (alive_[i]) {
      try {
        peers_[i]->send(MsgType::bye, 0, Json::object());
      } catch (const std::exception&) {
      }
    }
    peers_[i]->close();
  }
}

int HostRuntime::alive() const {
  int n = 0;
  for (bool a : alive_) n += a;
  return n;
}

void HostRuntime::fault(int peer, const std::string& why, InferStats* st) {
  if (peer >= 0 && alive_[size_t(peer)]) {
    alive_[size_t(peer)] = false;
    peers_[size_t(peer)]->close();
  }
  if (st) {
    ++st->faults;
    st->fault_messages.push_back(
        (peer >= 0 ? "worker " + peers_[size_t(peer)]->name() + ": " : "") + why);
  }
}


// One call of infer: the host's side of a plan for a batch of images, as device 0. Images run
// pass by pass through the batch plan's image plans. For each image, its blocks run in order,
// each after its input rows are here (sending what other devices need as soon as it exists),
// then the split tail layers, then the rest of the model on the host; an image a worker
// finishes has its blocks run in pass order and its tail last (host_order). A misbehaving
// worker throws WorkerFault.
class HostRuntime::Call {
 public:
  // `spares`: feature maps the last call of this plan left (FeatureStore).
  Call(HostRuntime& h, const std::vector<Tensor>& images, const Plan& plan, InferStats* st,
       SpareMaps spares);
  SpareMaps take_spares() { return store_.take_spares(); }
  size_t maps_mapped() const { return store_.maps_mapped(); }
  // Runs every image; throws WorkerFault, after which the images not finished() are left.
  void run(std::vector<Tensor>& out);
  bool finished(size_t i) const { return finished_[i]; }
  void log_sends();

 private:
  void send_plan();
  void load_own_share();
  void send_ready(size_t i);  // every host transfer of image i whose rows are here
  bool host_sends_pending(size_t i, Stage s) const;
  // Stores messages (sending what is ready meanwhile) until finished() holds; `waiting_for`
  // names the secondary to blame on a timeout (-1: none identifiable).
  void pump_until(size_t i, Stage s, const std::function<bool()>& finished,
                  const std::function<int()>& waiting_for);
  void receive(const Message& m);
  // An image's blocks (the host's zones, and the rows it sends or relays), then its tail: run
  // back to back, or the tail later where a worker computes the image's last block.
  void run_blocks(size_t i);
  Tensor finish_image(size_t i);
  void wait_for_input(size_t i, Stage s);
  bool input_ready(uint64_t img, Stage s) const;
  int rows_culprit(uint64_t img, Stage s) const;  // the first secondary whose rows we wait for
  void run_overlap_block(size_t i, int b);
  void run_tail_layer(size_t i, int j);

  HostRuntime& h_;
  const std::vector<Tensor>& images_;
  const Plan& plan_;
  InferStats* st_;
  std::vector<int> dev_peer_{-1};  // plan device -> peer index
  FeatureStore store_;
  uint64_t base_;
  std::vector<std::vector<bool>> sent_;  // per image and transfer
  std::shared_ptr<WireLog> sent_log_ = std::make_shared<WireLog>();
  size_t rows_in_ = 0;  // frames of rows stored so far
  std::vector<bool> finished_;  // per image: its result is in out
};

HostRuntime::Call::Call(HostRuntime& h, const std::vector<Tensor>& images, const Plan& plan,
                        InferStats* st, SpareMaps spares)
    : h_(h), images_(images), plan_(plan), st_(st), store_(*h.g_, std::move(spares)), base_(h.next_image_),
      sent_(images.size()), finished_(images.size(), false) {
  for (size_t i = 0; i < images.size(); ++i) sent_[i].assign(plan.for_image(i).transfers.size(), false);
  for (size_t i = 0; i < h_.peers_.size(); ++i)
    if (h_.alive_[i]) dev_peer_.push_back(int(i));
  if (plan.devices != int(dev_peer_.size()) && plan.devices != 1)
    throw std::invalid_argument("plan is for " + std::to_string(plan.devices) + " devices, " +
                                std::to_string(dev_peer_.size()) + " are available");
  for (const Tensor& im : images)
    if (im.shape() != h_.g_->input) throw std::invalid_argument("image shape does not match the model");
  if (!plan.image_plans_match())
    throw std::invalid_argument("an image plan does not match the plan's devices and blocks");
  // A worker computes a batch plan's images in the order their rows arrive, and a pipelined
  // image's leave at the start of the pass: after a split image the host runs first, both
  // would wait for the other's rows.
  bool split_before = false;
  for (const Plan& ip : plan.image_plans) {
    const bool pipelined = ip.sole_device() < 0 && finishing_worker(*h.g_, ip) != 0;
    if (pipelined && split_before)
      throw std::invalid_argument("a batch plan's pipelined image comes after a split one");
    split_before = split_before || host_finishes_split(*h.g_, ip);
  }
  h_.next_image_ += images.size();
}

std::vector<size_t> images_leaving_at(const Graph& g, const Plan& p, size_t images, size_t i) {
  const size_t pass = std::max<size_t>(1, p.image_plans.size());
  std::vector<size_t> leaving;
  if (i % pass != 0 || p.image_plans.empty()) return leaving;  // not the start of a pass
  for (size_t j = i; j < std::min(images, i + pass); ++j)
    if (finishing_worker(g, p.for_image(j))) leaving.push_back(j);
  return leaving;
}

std::vector<size_t> host_order(const Graph& g, const Plan& p, size_t begin, size_t end) {
  std::vector<size_t> order;
  for (int worker_last = 0; worker_last < 2; ++worker_last)
    for (size_t i = begin; i < end; ++i)
      if ((finishing_worker(g, p.for_image(i)) != 0) == bool(worker_last)) order.push_back(i);
  return order;
}

void HostRuntime::Call::run(std::vector<Tensor>& out) {
  send_plan();
  const size_t n = images_.size(), pass = std::max<size_t>(1, plan_.image_plans.size());
  for (size_t i = 0; i < n; ++i) store_.put(base_ + i, -1, {0, images_[i].h()}, images_[i].data());
  for (size_t start = 0; start < n; start += pass) {
    // Images a worker finishes (whole on it, or pipelined) get their rows at the start of their
    // pass through the image plans, in pass order (at most kMaxWholeImages whole images each):
    // the host computes its own meanwhile. Split images'
    // rows go out one image ahead: a batch plan's first split image's at the start of the pass,
    // to wait at each worker behind its whole images; a plan without image plans', run_blocks.
    // Not more: a worker holds a split image until its last rows (kMaxImagesInFlight).
    const Graph& g = *h_.g_;
    for (size_t i : images_leaving_at(g, plan_, n, start)) send_ready(i);
    const std::vector<size_t> order = host_order(g, plan_, start, std::min(n, start + pass));
    auto split = [&](size_t i) { return host_finishes_split(g, plan_.for_image(i)); };
    const bool batch = !plan_.image_plans.empty();
    if (const auto first = std::find_if(order.begin(), order.end(), split); batch && first != order.end())
      send_ready(*first);
    // The host's blocks of an image a worker finishes (a pipelined image's early zones) come in
    // pass order, before the images after it: the early devices compute that image first.
    size_t early = start;
    auto run_early_blocks_before = [&](size_t i) {
      for (; early < i; ++early)
        if (finishing_worker(g, plan_.for_image(early))) run_blocks(early);
    };
    for (size_t k = 0; k < order.size(); ++k) {
      if (batch && k + 1 < order.size() && split(order[k + 1])) send_ready(order[k + 1]);
      const size_t i = order[k];
      const bool worker_last = finishing_worker(g, plan_.for_image(i)) != 0;
      // A short last pass may list no image of the host's after a pipelined one: its early
      // blocks then come before the host waits for any worker's result.
      run_early_blocks_before(worker_last ? std::min(n, start + pass) : i);
      if (!worker_last) run_blocks(i);
      out[i] = finish_image(i);
      store_.drop(base_ + i);
      finished_[i] = true;
    }
  }
}

// A lazy graph (infer, cluster) holds only what the host computes for this plan: loaded here,
// while the workers load theirs; what an earlier plan gave it and this one does not is freed.
void HostRuntime::Call::load_own_share() {
  if (!h_.g_->lazy()) return;
  const int64_t t0 = now_us();
  const size_t before = h_.g_->weight_bytes();
  if (h_.own_plan_) release_outside_plan(*h_.g_, *h_.own_plan_, plan_, 0);
  h_.own_plan_ = std::make_unique<Plan>(plan_);
  load_for_plan(*h_.g_, plan_, 0);
  if (h_.g_->weight_bytes() != before) st_->loads.push_back({0, t0, now_us()});
}

void HostRuntime::Call::send_plan() {
  if (plan_.devices <= 1) return load_own_share();
  const int64_t sent_us = now_us();
  const Json wire = plan_to_wire(plan_);
  h_.plan_sent_.resize(h_.peers_.size());
  std::vector<uint64_t> loading(h_.peers_.size(), 0);
  for (int d = 1; d < plan_.devices; ++d) {
    const size_t k = size_t(dev_peer_[size_t(d)]);
    Json msg = Json::object();
    msg["plan"] = wire;
    msg["device"] = d;
    // Queued like the rows after it (same order): the host computes meanwhile.
    h_.peers_[k]->send_async(MsgType::plan, 0, msg, nullptr, nullptr, 0, {});
    // A new plan may make the worker load and pack layers first (load_for_plan), which on a
    // slow board takes longer than the compute timeout: a ping behind it, answered within the
    // loading budget, ends that silence before any rows are waited for.
    std::string text = msg.dump();
    if (text != h_.plan_sent_[k]) {
      loading[k] = h_.next_ping_++;
      h_.peers_[k]->send_async(MsgType::ping, loading[k], Json::object(), nullptr, nullptr, 0, {});
      h_.plan_sent_[k] = std::move(text);
    }
  }
  load_own_share();
  if (std::any_of(loading.begin(), loading.end(), [](uint64_t id) { return id != 0; })) {
    const std::vector<Clock::time_point> got = h_.await_pongs(loading, st_, h_.opt_.load_timeout_ms);
    const auto at_us = [](Clock::time_point t) {
      return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
    };
    for (int d = 1; d < plan_.devices; ++d) {
      const size_t k = size_t(dev_peer_[size_t(d)]);
      if (!h_.alive_[k])
        throw WorkerFault{int(k), "did not load the plan's layers in time", true};
      if (loading[k] != 0) st_->loads.push_back({d, sent_us, at_us(got[k])});
    }
  }
}

void HostRuntime::Call::send_ready(size_t i) {
  const Plan& p = plan_.for_image(i);
  Json tag = Json::object();  // which of a batch plan's image plans the image follows (the worker's plan_of)
  if (!plan_.image_plans.empty()) tag["plan_image"] = static_cast<unsigned long>(i % plan_.image_plans.size());
  for (size_t k = 0; k < p.transfers.size(); ++k) {
    const Transfer& t = p.transfers[k];
    if (sent_[i][k] || t.src != 0 || !store_.holds(base_ + i, t.node, t.rows)) continue;
    InferStats::Wire w{0, t.dst, base_ + i, 0, 0, t.bytes};
    send_rows(*h_.peers_[size_t(dev_peer_[size_t(t.dst)])], base_ + i, t, store_, h_.opt_.fp16,
              tag, [log = sent_log_, w](int64_t t0, int64_t t1) mutable {
                w.t0_us = t0, w.t1_us = t1;
                log->add(w);
              });
    sent_[i][k] = true;
  }
}

bool HostRuntime::Call::host_sends_pending(size_t i, Stage s) const {
  const Plan& p = plan_.for_image(i);
  for (size_t k = 0; k < p.transfers.size(); ++k)
    if (!sent_[i][k] && p.transfers[k].src == 0 && p.transfers[k].stage <= s) return true;
  return false;
}

void HostRuntime::Call::pump_until(size_t i, Stage s, const std::function<bool()>& finished,
                                   const std::function<int()>& waiting_for) {
  while (true) {
    send_ready(i);
    if (!host_sends_pending(i, s) && finished()) return;
    // A worker computing image i whole is given the plan's predicted silence twice over (at most
    // an hour: a plan predicted longer is not a plan for these boards).
    const double silence_ms = 2 * plan_.whole_image_silence_ms(i);
    const int64_t extra_ms = silence_ms > 0 ? int64_t(std::min(silence_ms, 3.6e6)) : 0;
    auto m = h_.inbox_->pop(std::chrono::milliseconds(h_.opt_.timeout_ms + extra_ms));
    if (!m) {
      const int culprit = waiting_for();
      throw WorkerFault{culprit < 0 ? -1 : dev_peer_[size_t(culprit)],
                        "no rows within the timeout (stalled)"};
    }
    if (!h_.alive_[size_t(m->peer)]) continue;  // late news from a worker already dropped
    if (!m->failure.empty()) throw WorkerFault{m->peer, m->failure};
    if (h_.opt_.creds.enabled() && !m->authenticated)
      throw WorkerFault{m->peer, "unauthenticated frame"};
    if (m->type == MsgType::error) throw WorkerFault{m->peer, error_text(m->json)};
    if (m->type != MsgType::rows) throw WorkerFault{m->peer, "unexpected message"};
    if (m->id < base_ || m->id >= base_ + images_.size()) continue;  // stale, from an earlier call
    receive(*m);
  }
}

void HostRuntime::Call::receive(const Message& m) {
  try {
    store_.put_wire(m.id, m.json, m.data);
  } catch (const std::exception& e) {
    throw WorkerFault{m.peer, e.what()};
  }
  ++rows_in_;
  int src_dev = 0;
  for (size_t d = 1; d < dev_peer_.size(); ++d)
    if (dev_peer_[d] == m.peer) src_dev = int(d);
  read_spans(m.json, src_dev, base_, base_ + images_.size(), &st_->spans);
  if (const long kb = read_peak_rss_kb(m.json); kb >= 0) {
    std::vector<long>& peak = st_->peak_rss_kb;
    if (peak.size() <= size_t(src_dev)) peak.resize(size_t(src_dev) + 1, 0);
    peak[size_t(src_dev)] = std::max(peak[size_t(src_dev)], kb);
  }
  if (const long maps = read_maps_mapped(m.json); maps >= 0) {
    std::vector<long>& mapped = st_->maps_mapped;
    if (mapped.size() <= size_t(src_dev)) mapped.resize(size_t(src_dev) + 1, -1);
    mapped[size_t(src_dev)] = maps;
  }
  st_->wires.push_back({src_dev, 0, m.id, now_us(), now_us(), m.data.size()});
}

bool HostRuntime::Call::input_ready(uint64_t img, Stage s) const {
  const Plan& plan = plan_.for_image(img - base_);
  const int in = plan.input_node(s);
  if (plan.is_tail(s))  // the whole input, unless a whole image's worker keeps the first layer's
    return (plan.tail_layer(s) == 0 && !host_gathers_tail_input(*h_.g_, plan)) ||
           store_.holds(img, in, {0, h_.g_->shape_of(in).h});
  const BlockPlan& bp = plan.blocks[size_t(s.index)];
  for (const RowRange& z : bp.zones[0])
    if (!store_.holds(img, in, h_.g_->block_input_rows(bp.first, bp.last, z))) return false;
  return true;
}

int HostRuntime::Call::rows_culprit(uint64_t img, Stage s) const {
  for (const Transfer& t : plan_.for_image(img - base_).transfers)
    if (t.dst == 0 && t.stage <= s && !store_.holds(img, t.node, t.rows)) return t.src;
  return -1;
}

void HostRuntime::Call::wait_for_input(size_t i, Stage s) {
  const uint64_t img = base_ + i;
  pump_until(i, s, [&] { return input_ready(img, s); }, [&] { return rows_culprit(img, s); });
}

void HostRuntime::Call::run_blocks(size_t i) {
  const uint64_t img = base_ + i;
  const Plan& plan = plan_.for_image(i);
  if (plan_.devices > 1) {
    send_ready(i);
    // The next image's scatter overlaps this one (a batch plan's: Call::run, in host_order).
    if (plan_.image_plans.empty() && i + 1 < images_.size()) send_ready(i + 1);
  }
  for (Stage s; s.index < int(plan.blocks.size()); s = s.next()) {
    const int b = s.index;
    if (plan.blocks[size_t(b)].overlap) {
      run_overlap_block(i, b);
    } else {
      wait_for_input(i, s);
      ComputeSpan span{};
      if (!plan.blocks[size_t(b)].zones[0].empty()) {
        compute_zones(*h_.g_, plan, 0, b, img, store_, &span, [&] { send_ready(i); });
        st_->spans.push_back(span);
      }
    }
  }
}

Tensor HostRuntime::Call::finish_image(size_t i) {
  const uint64_t img = base_ + i;
  const Plan& plan = plan_.for_image(i);
  Stage s = plan.tail_stage(0);
  for (; s.index < plan.stages(); s = s.next()) {  // split tail layers, then the rest
    wait_for_input(i, s);
    run_tail_layer(i, plan.tail_layer(s));
  }
  wait_for_input(i, s);  // the host-only rest of the tail
  const int in = plan.input_node(s), first = plan.tail_first + plan.split_tail;
  const Band all = store_.band(img, in, {0, h_.g_->shape_of(in).h});
  return first >= h_.g_->size() ? all.t.clone() : h_.g_->run_block(first, h_.g_->size(), all, {0, 1}).t.clone();
}

// Compute what the rows here allow, then wait for more rows, until the zone is done.
void HostRuntime::Call::run_overlap_block(size_t i, int b) {
  const uint64_t img = base_ + i;
  const Plan& plan = plan_.for_image(i);
  while (!plan.blocks[size_t(b)].zones[0].empty()) {
    ComputeSpan span{};
    const bool whole = compute_zones(*h_.g_, plan, 0, b, img, store_, &span, [&] { send_ready(i); });
    if (span.t1_us) st_->spans.push_back(span);
    if (whole) break;
    const size_t seen = rows_in_;
    pump_until(i, Stage{b}, [&] { return rows_in_ > seen; }, [&] { return rows_culprit(img, Stage{b}); });
  }
}

// Split tail layer j: our channel slice, then everyone's.
void HostRuntime::Call::run_tail_layer(size_t i, int j) {
  const uint64_t img = base_ + i;
  const Plan& plan = plan_.for_image(i);
  const int node = plan.tail_first + j;
  const Stage s = plan.tail_stage(j);
  std::vector<float> mine;
  ComputeSpan span{0, s.index, img, now_us(), 0};
  compute_tail_slice(*h_.g_, plan, 0, j, img, store_, &mine);
  const ChannelSlice sl = plan.tail_slices[size_t(j)][0];
  if (!sl.empty()) store_.put_channels(img, node, sl, mine.data());
  span.t1_us = now_us();
  st_->spans.push_back(span);
  pump_until(i, s, [&] { return store_.holds(img, node, {0, 1}); },
             [&] {
               for (int d = 1; d < plan.devices; ++d)
                 if (!store_.holds_channels(img, node, plan.tail_slices[size_t(j)][size_t(d)]))
                   return d;
               return -1;
             });
}

void HostRuntime::Call::log_sends() {
  std::lock_guard<std::mutex> lk(sent_log_->mu);
  st_->wires.insert(st_->wires.end(), sent_log_->wires.begin(), sent_log_->wires.end());
}

std::vector<Tensor> HostRuntime::infer(const std::vector<Tensor>& images, const Plan& plan,
                                       InferStats* st) {
  InferStats local_stats;
  if (!st) st = &local_stats;
  const auto t_start = Clock::now();
  // A worker can answer a frame before the sender thread that wrote it has counted it: the
  // counts are read once every peer's sender is idle, or a frame (a link probe's too) counts in
  // the wrong call. Microseconds where every queued frame fed a reply the host has had; at
  // most 200 ms where a fault cut the call short.
  auto counts = [&] {
    const auto by = Clock::now() + std::chrono::milliseconds(200);
    uint64_t sent = 0, recv = 0;
    for (auto& p : peers_) p->wait_sends_done(by), sent += p->bytes_sent(), recv += p->bytes_received();
    return std::make_pair(sent, recv);
  };
  const auto [sent0, recv0] = counts();
  std::vector<Tensor> out(images.size());
  // Another plan writes other rows: the last call's maps would add their pages to this one's.
  std::string plan_key = plan_to_wire(plan).dump();
  if (plan_key != spares_plan_) spares_ = SpareMaps{}, spares_plan_ = std::move(plan_key);
  Call call(*this, images, plan, st, std::move(spares_));
  try {
    call.run(out);
  } catch (const WorkerFault& f) {
    if (!f.reported) fault(f.peer, f.why, st);
    call.take_spares();  // freed before the host streams the whole model
    for (size_t i = 0; i < images.size(); ++i)  // recover
      if (!call.finished(i)) out[i] = g_->forward(images[i]);
  }
  if (st->maps_mapped.empty()) st->maps_mapped.resize(1);
  st->maps_mapped[0] = long(call.maps_mapped());
  spares_ = call.take_spares();
  const auto [sent1, recv1] = counts();
  call.log_sends();  // after counts(): the sender threads have logged every frame
  st->bytes_sent = sent1 - sent0;
  st->bytes_received = recv1 - recv0;
  st->ms = std::chrono::duration<double, std::milli>(Clock::now() - t_start).count();
  return out;
}

std::vector<Clock::time_point> HostRuntime::await_pongs(const std::vector<uint64_t>& want,
                                                        InferStats* st, int timeout_ms) {
  std::vector<Clock::time_point> got(peers_.size());
  std::vector<bool> waiting(peers_.size(), false);
  size_t left = 0;
  for (size_t i = 0; i < peers_.size(); ++i)
    if (alive_[i] && want[i] != 0) waiting[i] = true, ++left;
  const auto deadline =
      Clock::now() + std::chrono::milliseconds(timeout_ms >= 0 ? timeout_ms : opt_.timeout_ms);
  auto drop = [&](size_t k, const std::string& why) {
    fault(int(k), why, st);
    if (waiting[k]) waiting[k] = false, --left;
  };
  while (left > 0) {
    const auto now = Clock::now();
    auto m = inbox_->pop(std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(deadline - now, Clock::duration(0))));
    if (!m) {
      for (size_t k = 0; k < peers_.size(); ++k)
        if (waiting[k]) drop(k, "no answer to ping within the timeout (stalled)");
      break;
    }
    const size_t k = size_t(m->peer);
    if (!alive_[k]) continue;  // late news from a worker already dropped
    // A worker that has answered may still fail meanwhile: that is news for the next call too.
    if (!m->failure.empty()) {
      drop(k, m->failure);
    } else if (opt_.creds.enabled() && !m->authenticated) {
      drop(k, "unauthenticated frame");
    } else if (m->type == MsgType::error) {
      drop(k, error_text(m->json));
    } else if (m->type == MsgType::pong) {
      if (m->id != want[k] || !waiting[k]) continue;  // pongs answer in order: wait for the last
      got[k] = Clock::now();
      waiting[k] = false;
      --left;
    } else if (m->type != MsgType::rows) {  // rows: late ones of an earlier call
      drop(k, std::string("unexpected ") + msg_name(m->type) + " message");
    }
  }
  return got;
}

std::vector<double> HostRuntime::ping(InferStats* st) {
  const uint64_t id = next_ping_++;  // pongs of an earlier ping are skipped
  std::vector<uint64_t> want(peers_.size(), 0);
  std::vector<Clock::time_point> sent_at(peers_.size());
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (!alive_[i]) continue;
    sent_at[i] = Clock::now();
    // Queued, never blocking: a stalled worker is found by the deadline, and a broken
    // connection by its reader's failure message.
    peers_[i]->send_async(MsgType::ping, id, Json::object(), nullptr, nullptr, 0, {});
    want[i] = id;
  }
  const std::vector<Clock::time_point> got = await_pongs(want, st);
  std::vector<double> rtt(peers_.size(), -1.0);
  for (size_t i = 0; i < peers_.size(); ++i)
    if (want[i] != 0 && alive_[i] && got[i] != Clock::time_point{})
      rtt[i] = std::chrono::duration<double, std::milli>(got[i] - sent_at[i]).count();
  return rtt;
}

std::vector<MeasuredLink> HostRuntime::measure_links(InferStats* st) {
  // Probe payload: the worker ignores a ping's data and answers once the whole frame is in, so
  // any worker can be measured. Frames of at most 1 MiB stay under every worker's
  // --max-frame-mb.
  constexpr size_t kChunk = 1 << 20;
  static const auto zeros = std::make_shared<const std::vector<uint8_t>>(kChunk, uint8_t(0));
  std::vector<MeasuredLink> out(peers_.size());
  // Round trip of `bytes` sent to worker i as frames of <= 1 MiB, queued back to back; -1 if
  // the worker was dropped.
  auto round_trip_ms = [&](size_t i, size_t bytes) {
    std::vector<uint64_t> want(peers_.size(), 0);
    const auto t0 = Clock::now();
    do {
      const size_t len = std::min(bytes, kChunk);
      want[i] = next_ping_++;
      peers_[i]->send_async(MsgType::ping, want[i], Json::object(), zeros, zeros->data(), len, {});
      bytes -= len;
    } while (bytes > 0);
    const auto got = await_pongs(want, st);
    return alive_[i] ? std::chrono::duration<double, std::milli>(got[i] - t0).count() : -1.0;
  };
  // One worker at a time: they would share the host's own link otherwise.
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (!alive_[i]) continue;
    // Two pings first, untimed: a worker that has sat idle can be slow to wake (README,
    // Measured performance), which is not the link.
    for (int k = 0; k < 2 && alive_[i]; ++k) round_trip_ms(i, 0);
    std::vector<double> rtts;
    for (int k = 0; k < 5 && alive_[i]; ++k) rtts.push_back(round_trip_ms(i, 0));
    if (!alive_[i]) continue;
    const double rtt = *std::min_element(rtts.begin(), rtts.end());
    // Grow the probe until it takes long enough to dwarf the round trip and the timer; the
    // growth also opens the TCP window.
    size_t bytes = 16 << 10;
    double grown_ms = 0;
    for (;;) {
      grown_ms = round_trip_ms(i, bytes);
      if (grown_ms < 0 || grown_ms >= rtt + 30 || bytes >= (size_t(64) << 20)) break;
      bytes *= 4;
    }
    // Five probes of twice that size (not where one already takes half a second: a slow link
    // would meet the timeout), and the second fastest. A busy CPU or a late wake-up only
    // adds time (a median of three once read 57.4 Mbit/s on a 100 Mbit/s tbf link in CI), but
    // a shaper's burst subtracts it: after an idle moment tbf lets its bucket through at the
    // upstream rate, and the fastest of five single probes read 54.7 Mbit/s on a 50 Mbit/s
    // link. The doubled size dilutes a burst; the second fastest skips one probe it sped up.
    if (grown_ms < 500) bytes *= 2;
    std::vector<double> times;
    for (int k = 0; k < 5 && alive_[i]; ++k) times.push_back(round_trip_ms(i, bytes));
    if (!alive_[i]) continue;  // else all five are in
    std::sort(times.begin(), times.end());
    const double wire_ms = std::max(times[1] - rtt, 1e-3);
    out[i] = {rtt, double(bytes) * 8.0 / (wire_ms * 1e3)};
  }
  return out;
}

std::vector<LinkModel> planning_links(const std::vector<MeasuredLink>& links) {
  LinkModel slowest;
  bool any = false;
  for (const MeasuredLink& m : links) {
    if (m.mbit <= 0) continue;
    slowest.bits_per_s = any ? std::min(slowest.bits_per_s, m.mbit * 1e6) : m.mbit * 1e6;
    slowest.latency_s = any ? std::max(slowest.latency_s, m.rtt_ms * 0.5e-3) : m.rtt_ms * 0.5e-3;
    any = true;
  }
  if (!any) throw std::runtime_error("no worker's link could be measured");
  std::vector<LinkModel> out;
  for (const MeasuredLink& m : links) {
    LinkModel l = slowest;
    if (m.mbit > 0) l.bits_per_s = m.mbit * 1e6, l.latency_s = m.rtt_ms * 0.5e-3;
    out.push_back(l);
  }
  return out;
}

Json chrome_trace(const InferStats& st, int devices) {
  Json ev = Json::array();
  int64_t origin = INT64_MAX;
  for (const auto& s : st.spans) origin = std::min(origin, s.t0_us);
  for (const auto& w : st.wires) origin = std::min(origin, w.t0_us);
  for (const auto& l : st.loads) origin = std::min(origin, l.t0_us);
  if (origin == INT64_MAX) origin = 0;
  for (int d = 0; d < devices; ++d) {
    Json m = Json::object();
    m["name"] = "thread_name";
    m["ph"] = "M";
    m["pid"] = 1;
    m["tid"] = d;
    Json a = Json::object();
    a["name"] = d == 0 ? std::string("device 0 (host)") : "device " + std::to_string(d);
    m["args"] = a;
    ev.push_back(m);
  }
  // A complete ("X") event on a device's track, times relative to the first event.
  auto span = [&](std::string name, const char* cat, int tid, int64_t t0, int64_t t1,
                  const char* key, unsigned long value) {
    Json e = Json::object();
    e["name"] = std::move(name);
    e["cat"] = cat;
    e["ph"] = "X";
    e["pid"] = 1;
    e["tid"] = tid;
    e["ts"] = double(t0 - origin);
    e["dur"] = double(std::max<int64_t>(1, t1 - t0));
    Json args = Json::object();
    args[key] = value;
    e["args"] = args;
    ev.push_back(e);
  };
  for (const auto& s : st.spans)
    span("block " + std::to_string(s.block), "compute", s.device, s.t0_us, s.t1_us, "image",
         static_cast<unsigned long>(s.image));
  for (const auto& w : st.wires)
    span(w.src == 0 ? "send to " + std::to_string(w.dst) : "recv from " + std::to_string(w.src),
         "link", 0, w.t0_us, w.t1_us, "bytes", static_cast<unsigned long>(w.bytes));
  for (const auto& l : st.loads)
    span("loading the plan's layers", "load", l.device, l.t0_us, l.t1_us, "device",
         static_cast<unsigned long>(l.device));
  Json j = Json::object();
  j["traceEvents"] = ev;
  j["displayTimeUnit"] = "ms";
  return j;
}

Json chrome_trace(const Plan& p) {
  InferStats st;
  auto us = [](double ms) { return int64_t(ms * 1000.0 + 0.5); };
  for (const auto& e : p.timeline) {
    if (e.what == "compute") {
      st.spans.push_back({e.device, e.block, uint64_t(e.image), us(e.start_ms), us(e.end_ms)});
    } else if (e.device == 0) {
      // The host's view of its links, as a measured trace records them.
      const bool send = e.what == "send";
      st.wires.push_back({send ? 0 : e.peer, send ? e.peer : 0, uint64_t(e.image), us(e.start_ms),
                          us(e.end_ms), e.bytes});
    }
  }
  return chrome_trace(st, p.devices);
}

}  // namespace eb::dist
