// Timing for `edgeband bench`: medians over repeated full-image inferences.
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

}  // namespace eb
