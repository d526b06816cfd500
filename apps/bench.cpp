#include "apps/bench.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "core/progress.h"
#include "dist/plan/stats.h"

namespace eb {

BenchResult benchmark(const Graph& g, int runs, int warmup) {
  Tensor in(g.input);
  for (size_t i = 0; i < in.size(); ++i) in.data()[i] = float((i * 7919) % 255) / 127.5f - 1.0f;
  for (int i = 0; i < warmup; ++i) {
    report_progress("warm-up " + std::to_string(i + 1) + "/" + std::to_string(warmup));
    g.forward(in);
  }
  std::vector<double> total;
  std::vector<std::vector<double>> per_layer(size_t(g.size()));
  for (int r = 0; r < runs; ++r) {
    report_progress("run " + std::to_string(r + 1) + "/" + std::to_string(runs));
    std::vector<double> lm;
    const auto t0 = std::chrono::steady_clock::now();
    g.forward(in, &lm);
    total.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    for (size_t i = 0; i < lm.size(); ++i) per_layer[i].push_back(lm[i]);
  }
  BenchResult b;
  b.runs = runs;
  b.median_ms = median(total);
  b.min_ms = *std::min_element(total.begin(), total.end());
  b.max_ms = *std::max_element(total.begin(), total.end());
  b.gflops = g.flops() / 1e9 / (b.median_ms / 1e3);
  for (auto& v : per_layer) b.layer_median_ms.push_back(median(v));
  return b;
}

}  // namespace eb
