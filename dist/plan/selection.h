// Deadline-aware model selection: among candidate models (each with its accuracy and a
// planner prediction for the current bandwidth and devices), pick the most accurate one
// predicted to meet the deadline; if none is, the fastest (the least late). One path for
// `infer --deadline` (a request at a time) and `reliability` (every deadline on a logged
// request): predict, then choose.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "dist/plan/planner.h"

namespace eb::dist {

struct Candidate {
  std::string model;
  double accuracy = 0;      // ImageNet top-1, percent
  double predicted_ms = 0;  // best scheme's prediction
  Scheme scheme = Scheme::local;
};

// Index into c; *meets (optional) tells whether the pick is predicted to meet the deadline.
size_t select_candidate(const std::vector<Candidate>& c, double deadline_ms, bool* meets = nullptr);

// The plan of the scheme (local, MoDNN, DPFP, HALP) with the lowest predicted latency.
Plan best_plan(const Graph& g, const Cluster& c, int batch = 1);

// A model the selector may choose: its accuracy, and what the planner needs to predict it.
struct ModelOption {
  std::string model;
  double accuracy = 0;
  const Graph* graph = nullptr;
  std::vector<DeviceProfile> devices;  // this model's profile on the host, then on each worker
  int input_levels = 0;  // Cluster::input_levels of the images this model is sent
  // `shape` (its link, wire and edge_first) with this option's devices and input levels: the
  // cluster every plan of this model is made on.
  Cluster on(Cluster shape) const {
    shape.devices = devices;
    shape.input_levels = input_levels;
    return shape;
  }
};

// Every option planned with best_plan on `shape`'s link, wire and edge_first (its devices and
// input levels are ignored: each option brings its own); plans[i] is the plan of candidates[i].
struct Predictions {
  std::vector<Candidate> candidates;
  std::vector<Plan> plans;
};
Predictions predict(const std::vector<ModelOption>& options, const Cluster& shape, int batch = 1);

// select_candidate with its reason, e.g. "mobilenet_v1:0.75:192: 67.2% top-1, predicted 41.2 ms
// (halp) <= 50 ms deadline; the more accurate mobilenet_v1:1:224 predicted 63.0 ms (halp)", or
// "no candidate is predicted to meet the 10 ms deadline: ... is the fastest, predicted ...".
struct Choice {
  size_t index = 0;
  bool meets = false;
  std::string reason;
};
Choice choose(const std::vector<Candidate>& c, double deadline_ms);

// predict, memoised for a stream of requests: planning a candidate (four schemes) takes a tenth
// of a second or more, too long to repeat before every request for an estimate that moved by a
// few percent. The link rate is rounded to a step of 10% (on a log scale) and the options are
// planned at the rounded rate; a new rate step, device count, input levels or batch plans again. For one
// list of options and one link latency and wire (those are not part of the key).
class PredictionMemo {
 public:
  const Predictions& predict(const std::vector<ModelOption>& options, Cluster shape, int batch = 1);
  size_t plans_made() const { return memo_.size(); }

 private:
  std::map<std::vector<long>, Predictions> memo_;
};

// One request's selection: predict every option now, choose, and the chosen one's plan.
struct Selection {
  Choice choice;
  Candidate candidate;
  Plan plan;
};
Selection select_model(const std::vector<ModelOption>& options, const Cluster& shape,
                       double deadline_ms, int batch = 1);

}  // namespace eb::dist
