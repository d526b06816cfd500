#include "core/benchmark.h"

#include "core/poly1305.h"

#include <algorithm>
#include <chrono>

namespace eb {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

BenchResult benchmark(const Graph& g, int runs, int warmup) {
  Tensor in(g.input);
  for (size_t i = 0; i < in.size(); ++i) in.data()[i] = float((i * 7919) % 255) / 127.5f - 1.0f;
  for (int i = 0; i < warmup; ++i) g.forward(in);
  std::vector<double> total;
  std::vector<std::vector<double>> per_layer(size_t(g.size()));
  for (int r = 0; r < runs; ++r) {
    std::vector<double> lm;
    const auto t0 = std::chrono::steady_clock::now();
    g.forward(in, &lm);
    total.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
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

std::vector<Prediction> top_k(const Tensor& probs, int k) {
  std::vector<Prediction> p;
  for (size_t i = 0; i < probs.size(); ++i) p.push_back({int(i), probs.data()[i]});
  k = std::min<int>(k, int(p.size()));
  std::partial_sort(p.begin(), p.begin() + k, p.end(),
                    [](const Prediction& a, const Prediction& b) { return a.prob > b.prob; });
  p.resize(size_t(k));
  return p;
}

double frame_mac_mb_per_s(size_t bytes, int reps) {
  std::vector<uint8_t> buf(bytes);
  for (size_t i = 0; i < bytes; ++i) buf[i] = uint8_t(i * 131);
  const uint8_t key[32] = {1};
  std::vector<double> mbs;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    Poly1305 mac(key);
    mac.update(buf.data(), buf.size());
    const Tag128 d = mac.finish();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    buf[0] ^= d[0];  // keeps the result used
    mbs.push_back(double(bytes) / 1e6 / s);
  }
  return median(mbs);
}

}  // namespace eb
