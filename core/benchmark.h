// Timing helpers for `edgeband bench`: medians over repeated full-image inferences.
#pragma once
#include <vector>

#include "core/graph.h"

namespace eb {

struct BenchResult {
  int runs = 0;
  double median_ms = 0, min_ms = 0, max_ms = 0;
  double gflops = 0;                    // model GFLOP / median seconds
  std::vector<double> layer_median_ms;  // per node
};

BenchResult benchmark(const Graph& g, int runs, int warmup);
double median(std::vector<double> v);
// Throughput of the frame MAC's bulk part (Poly1305) on one core, MB/s (median of `reps` passes
// over `bytes` bytes): what authenticated frames cost per byte sent or received.
double frame_mac_mb_per_s(size_t bytes = 64u << 20, int reps = 5);

struct Prediction {
  int index;
  float prob;
};
std::vector<Prediction> top_k(const Tensor& probs, int k);

}  // namespace eb
