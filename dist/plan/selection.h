// Deadline-aware model selection: among candidate models (each with its accuracy and a
// planner prediction for the current bandwidth and devices), pick the most accurate one
// predicted to meet the deadline; if none is, the fastest (the least late).
#pragma once
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

}  // namespace eb::dist
