// The host side of distributed inference: connects to workers, checks they hold the same
// model (weights hash), executes plans as device 0, and survives worker faults by recomputing
// the affected images itself.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "dist/runtime/executor.h"
#include "dist/runtime/peer.h"
#include "dist/plan/planner.h"

namespace eb::dist {

struct IoContext;

struct RuntimeOptions {
  Shaping shaping;  // applied on both ends of every connection
  // Per worker (in the order given): the link its connection emulates instead of shaping.link,
  // when shaping is on. Empty: shaping.link for all.
  std::vector<LinkModel> worker_links;
  bool fp16 = false;
  int timeout_ms = 10000;         // a worker silent for this long while we wait on it is dropped
                                  // (plus twice the plan's predicted span for an image it computes
                                  // whole, or one of a batch whose rows wait behind such images)
  int hello_timeout_ms = 120000;  // connecting and loading the model (slow boards, big models)
  int load_timeout_ms = 60000;    // a worker loading and packing a new plan's layers
  // A PSK or key pair (dist/runtime/handshake.h): every worker must authenticate and every frame
  // is encrypted. Without, workers must be on loopback addresses unless `insecure` is set.
  Credentials creds;
  bool insecure = false;
};

struct InferStats {
  double ms = 0;
  uint64_t bytes_sent = 0, bytes_received = 0;
  int faults = 0;
  std::vector<std::string> fault_messages;
  std::vector<ComputeSpan> spans;  // compute per device and block (workers report theirs)
  std::vector<long> peak_rss_kb;   // per device as its frames report it (0: not heard; [0]: unset)
  struct Wire {
    int src, dst;
    uint64_t image;
    int64_t t0_us, t1_us;
    uint64_t bytes;
  };
  std::vector<Wire> wires;  // host-observed sends and receipts
  // A new plan's loading on each device that had to load (pack its layers and slices): on a
  // worker from the plan's sending to its answer, on a lazy host its own loading meanwhile. A
  // cost of changing plans, not of inference.
  struct Load {
    int device;
    int64_t t0_us, t1_us;
  };
  std::vector<Load> loads;
  // Per device, feature maps mapped afresh rather than reused: [0] by the host in this call, a
  // worker's in its session so far (as its frames report it; -1: not heard).
  std::vector<long> maps_mapped;
};

// A worker's link as measured (HostRuntime::measure_links); -1: the worker is not usable.
struct MeasuredLink {
  double rtt_ms = -1;  // round trip of an empty frame
  double mbit = -1;    // sustained throughput of a bulk transfer to the worker
};

class HostRuntime {
 public:
  HostRuntime(std::shared_ptr<const Graph> g, uint64_t model_hash,
              const std::vector<std::string>& workers, RuntimeOptions opt);
  ~HostRuntime();
  int alive() const;  // workers still usable
  // Runs the images through the plan (plan.devices must be alive() + 1). A worker fault makes the
  // host compute the unfinished images itself; the worker is dropped for later calls.
  std::vector<Tensor> infer(const std::vector<Tensor>& images, const Plan& plan, InferStats* st);
  // Round trip to every usable worker, in ms, by peer index (-1: not usable). Finds workers that
  // died or stall between calls (dropped and reported in st, like a fault in infer), and wakes
  // workers that have been idle before a call whose latency is measured.
  std::vector<double> ping(InferStats* st = nullptr);
  // Measures the real network to every usable worker, one worker at a time (they would share
  // the host's link otherwise): the least round trip of five empty pings (after two untimed
  // ones that wake the worker), then the rate of a bulk probe (pings carrying data, which
  // workers ignore) grown from 16 KiB x4 until it takes 30 ms more than the round trip, then
  // the second fastest of five at twice that size (noise adds time; a shaper's burst after an
  // idle moment subtracts it from one probe). Includes whatever the rows will pay too:
  // checksums, MACs, the built-in shaping if on. Faults as in ping.
  std::vector<MeasuredLink> measure_links(InferStats* st = nullptr);

 private:
  struct Joining;  // a worker's handshake in progress (host.cpp)
  class Call;      // one call of infer (host.cpp)
  Shaping shaping_of(size_t worker) const;
  Json hello_params(size_t worker) const;
  void connect(const std::string& addr, std::vector<Joining>& j);
  // Handles one handshake message of worker k; true when that worker is ready.
  bool joining_step(Joining& j, size_t k, Message& m, const std::string& want_hash);
  void fault(int peer, const std::string& why, InferStats* st);
  // Waits until each peer i with want[i] != 0 answers the pong of that id (pongs come in
  // order, so the last of a burst); when each did (a default time_point: dropped meanwhile).
  // Silence beyond timeout_ms (default: RuntimeOptions::timeout_ms) drops a worker.
  std::vector<std::chrono::steady_clock::time_point> await_pongs(const std::vector<uint64_t>& want,
                                                                 InferStats* st, int timeout_ms = -1);
  std::shared_ptr<const Graph> g_;
  RuntimeOptions opt_;
  std::unique_ptr<IoContext> io_;  // dist/runtime/tcp.h; outlives the peers' sockets (declared first)
  std::shared_ptr<Inbox> inbox_;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::vector<bool> alive_;
  std::vector<std::string> plan_sent_;  // per peer: the last PLAN message it was sent
  std::unique_ptr<Plan> own_plan_;       // the plan whose share this host's lazy graph holds
  SpareMaps spares_;                     // the last call's feature maps, for the next call
  std::string spares_plan_;              // of this plan (its wire form)
  uint64_t next_image_ = 1;
  uint64_t next_ping_ = 1;
};

// The link the planner assumes for each worker (Cluster::set_worker_links): its measured rate and
// half its round trip; a worker that could not be measured gets the slowest rate and the longest
// delay of the others. Throws if no link was measured.
std::vector<LinkModel> planning_links(const std::vector<MeasuredLink>& links);

// The images of a call of `images` that leave for their workers as the host starts image i: at
// the start of each pass through the batch plan's image plans, that pass's images whose last
// block a worker computes (finishing_worker: whole images, pipelined ones), in order; none
// otherwise (nor does an earlier image send them on ahead). Not every pass's at once: a worker
// computes in the order frames arrive, so a later pass's whole image would run before this
// pass's split image, which the host needs now.
std::vector<size_t> images_leaving_at(const Graph& g, const Plan& p, size_t images, size_t i);
// The order in which the host finishes images [begin, end) of one pass: its own and the split
// ones first, then those whose last block a worker computes (it only receives their results and
// runs their tails). A split image's zones thus start once the host is free, not after the
// slowest worker's whole image (the simulator's Sim::run_tail mirrors it). The host's zones of
// a pipelined image come earlier, in pass order (Call::run).
std::vector<size_t> host_order(const Graph& g, const Plan& p, size_t begin, size_t end);

// Chrome trace-event JSON (Perfetto / chrome://tracing): one track per device.
Json chrome_trace(const InferStats& st, int devices);
// The same for a plan's simulated timeline, so predicted and measured runs open side by side.
Json chrome_trace(const Plan& p);

}  // namespace eb::dist
