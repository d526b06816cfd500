// Service reliability under a time-variant channel: K real requests through a local testbed
// (worker processes, equal CPU shares, shaped links following the channel trace); for each
// deadline, the fraction of requests each scheme finished in time and the accuracy delivered.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/plan/channel.h"
#include "dist/plan/selection.h"
#include "dist/runtime/host.h"

namespace eb::dist {

// A built-in model loaded on the host and on every worker (a worker builds the model its HELLO
// names), with its catalogue top-1 and this machine's profile of it: what `reliability` and
// `infer --deadline` select among.
struct DeployedModel {
  std::string name;  // canonical
  double top1 = 0;   // -1: not in the catalogue
  std::shared_ptr<Graph> g;
  std::unique_ptr<HostRuntime> host;
  DeviceProfile profile;
  Tensor input;  // a deterministic synthetic image of the model's input shape
  int input_levels = 0;  // of `input` (images_palette_levels): how its rows go on the wire
  // Sends `image` as the model's input from now on.
  void set_input(Tensor image);
  // For select_model: every live device (the host and alive() workers) with `profile`.
  ModelOption option() const;
};
DeployedModel deploy_model(const std::string& name, const std::vector<std::string>& workers,
                           const RuntimeOptions& ro);

// Runs `images` through `p` on d's host and feeds the host's sends into `est` (receipts carry no
// duration): under shaping a send lasts as long as the emulated link takes to carry it; on a
// real network, as long as the socket takes to accept it, which its buffer can shorten. The
// measured ms.
double run_and_estimate(DeployedModel& d, const std::vector<Tensor>& images, const Plan& p,
                        BandwidthEstimator& est, InferStats* st = nullptr);

// One request: the channel when it ran, the host's bandwidth estimate it planned with, the
// measured latency of every fixed scheme, and of every selection candidate (each run with
// its own best predicted scheme) with that prediction.
struct RequestLog {
  double t_s = 0, true_mbit = 0, est_mbit = 0;
  std::vector<double> scheme_ms;
  std::vector<Candidate> candidates;  // predicted_ms, scheme, accuracy
  std::vector<double> candidate_ms;   // measured
};

struct ReliabilityRow {
  double deadline_ms = 0;
  std::string scheme;
  double reliability = 0;         // fraction of requests finished by the deadline
  double mean_accuracy = 0;       // top-1 of the model that ran, averaged over requests
  double effective_accuracy = 0;  // the same, counting a late answer as 0
};

// Fixed schemes run `model` (accuracy model_top1); "halp+select" picks per request and
// deadline with select_candidate on the logged predictions, and is scored by the measured
// latency of the candidate it picked.
std::vector<ReliabilityRow> reliability_table(const std::vector<RequestLog>& log,
                                              const std::vector<std::string>& scheme_names,
                                              double model_top1,
                                              const std::vector<double>& deadlines_ms);

struct ReliabilityOptions {
  std::string model = "mobilenet_v1:1:224";
  int devices = 3;
  BandwidthTrace channel;
  double link_latency_ms = 1.0;
  std::vector<double> deadlines_ms;
  int requests = 20;
  std::vector<std::string> candidates;  // default: the MobileNet-V1 family
  int threads = 0;
  bool cpu_share = true;
  std::string self_exe = "/proc/self/exe";
};

struct ReliabilityReport {
  std::vector<std::string> schemes;  // fixed schemes, then "halp+select"
  std::vector<RequestLog> requests;
  std::vector<ReliabilityRow> rows;
};

ReliabilityReport run_reliability(const ReliabilityOptions& o);

// "20:200:10" -> 20, 30, ..., 200.
std::vector<double> parse_range(const std::string& spec);

}  // namespace eb::dist
