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
// HMAC-SHA256 throughput on this machine, MB/s (median of `reps` passes over `bytes` bytes): the
// cost of authenticated frames.
double hmac_sha256_mb_per_s(size_t bytes = 16u << 20, int reps = 5);

struct Prediction {
  int index;
  float prob;
};
std::vector<Prediction> top_k(const Tensor& probs, int k);

}  // namespace eb
