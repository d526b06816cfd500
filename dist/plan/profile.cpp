#include "dist/plan/profile.h"
#include "core/progress.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "dist/plan/stats.h"
#include "kernels/cache.h"

namespace eb::dist {

double DeviceProfile::layer_ms(int node, int rows) const {
  if (rows <= 0) return 0;
  const LayerCost& c = layers.at(size_t(node));
  return c.fixed_ms + c.per_row_ms * rows;
}

namespace {
int computed_rows(const Layer& l, RowRange r) {
  if (r.empty()) return 0;
  const int gr = std::max(1, l.row_granule());
  return (r.end + gr - 1) / gr * gr - r.begin / gr * gr;
}
}  // namespace

double DeviceProfile::band_ms(const Graph& g, int node, RowRange rows) const {
  return layer_ms(node, computed_rows(*g.node(node).layer, rows));
}

double DeviceProfile::full_ms(const Graph& g) const {
  double t = 0;
  for (int i = 0; i < g.size(); ++i) t += band_ms(g, i, {0, g.shape_of(i).h});
  return t;
}

Json DeviceProfile::to_json() const {
  Json j = Json::object();
  j["name"] = name;
  j["model"] = model;
  j["threads"] = threads;
  Json ls = Json::array();
  for (const LayerCost& c : layers) {
    Json l = Json::object();
    l["fixed_ms"] = c.fixed_ms;
    l["per_row_ms"] = c.per_row_ms;
    if (c.nonzero < 1) l["nonzero"] = c.nonzero;
    ls.push_back(l);
  }
  j["layers"] = ls;
  if (memory_mb > 0) j["memory_mb"] = memory_mb;
  if (sweep_mb > 0) j["sweep_mb"] = sweep_mb;
  const DataPathCost& d = data_path;
  if (d.encode_ns > 0 || d.decode_ns > 0 || d.checksum_ns > 0 || d.aead_ns > 0) {
    Json dp = Json::object();
    dp["encode_ns_per_byte"] = d.encode_ns;
    dp["decode_ns_per_byte"] = d.decode_ns;
    dp["checksum_ns_per_byte"] = d.checksum_ns;
    dp["aead_ns_per_byte"] = d.aead_ns;
    j["data_path"] = dp;
  }
  return j;
}

DeviceProfile DeviceProfile::from_json(const Json& j) {
  DeviceProfile p;
  p.name = j.at("name").string("name");
  p.model = j.at("model").string("model");
  p.threads = int(j.at("threads").integer("threads"));
  for (const Json& l : j.at("layers").items("layers")) {
    LayerCost c{l.at("fixed_ms").number("fixed_ms"), l.at("per_row_ms").number("per_row_ms"),
                l.has("nonzero") ? l.at("nonzero").number("nonzero") : 1.0};
    if (!(c.fixed_ms >= 0) || !(c.per_row_ms >= 0) || c.fixed_ms > 1e7 || c.per_row_ms > 1e7)
      throw std::runtime_error("layer costs must be finite and non-negative");
    if (!(c.nonzero >= 0 && c.nonzero <= 1)) throw std::runtime_error("a layer's nonzero share must be in [0, 1]");
    p.layers.push_back(c);
  }
  if (j.has("memory_mb")) {
    p.memory_mb = j.at("memory_mb").number("memory_mb");
    if (!(p.memory_mb >= 0 && p.memory_mb <= 1e9)) throw std::runtime_error("memory_mb must be in [0, 1e9]");
  }
  if (j.has("sweep_mb")) {
    p.sweep_mb = j.at("sweep_mb").number("sweep_mb");
    if (!(p.sweep_mb >= 0 && p.sweep_mb <= 1024)) throw std::runtime_error("sweep_mb must be in [0, 1024]");
  }
  if (j.has("data_path")) {
    const Json& dp = j.at("data_path");
    auto cost = [&](const char* key) {
      const double v = dp.at(key).number(key);
      if (!(v >= 0 && v <= 1e6)) throw std::runtime_error(std::string(key) + " must be in [0, 1e6]");
      return v;
    };
    p.data_path = {cost("encode_ns_per_byte"), cost("decode_ns_per_byte"),
                   cost("checksum_ns_per_byte"), cost("aead_ns_per_byte")};
  }
  return p;
}

namespace {
// The non-zero share of every block boundary's output (the tensors frames carry), from one
// inference run block by block.
void measure_nonzero(const Graph& g, const Tensor& input, DeviceProfile& p) {
  Band at{input, 0};
  int first = 0;
  for (int n = 0; n < g.size(); ++n) {
    if (n + 1 < g.size() && !g.is_cut(n + 1)) continue;
    at = g.run_block(first, n + 1, at, {0, g.shape_of(n).h});
    first = n + 1;
    size_t nz = 0;  // by bits, as the wire counts: -0.0 travels
    for (size_t i = 0; i < at.t.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, at.t.data() + i, 4);
      nz += bits != 0;
    }
    p.layers[size_t(n)].nonzero = at.t.size() ? double(nz) / double(at.t.size()) : 1.0;
  }
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Node n's inputs for timing it alone, filled with a fixed pattern.
std::vector<Band> probe_inputs(const Layer& l) {
  std::vector<Band> ins;
  for (const Shape& s : l.input_shapes()) {
    Tensor t(s);
    for (size_t i = 0; i < t.size(); ++i) t.data()[i] = float(int(i % 17) - 8) * 0.05f;
    ins.push_back({t, 0});
  }
  return ins;
}

// One timing of `rows` output rows of a layer (an interior band where it is not the whole map:
// no padding), its weights first evicted from the caches, as a plan meets them.
double time_rows(const Layer& l, const std::vector<Band>& ins, int rows) {
  const Shape out = l.output_shape();
  const int gr = std::max(1, l.row_granule());
  const int row0 = rows < out.h ? std::min(out.h - rows, out.h / 2) / gr * gr : 0;
  Band ob{Tensor::uninitialized({rows, out.w, out.c}), row0};
  std::fill_n(ob.t.data(), ob.t.size(), 0.0f);  // its pages faulted in here, not in the timing
  std::vector<const Band*> in_ptrs;
  for (const Band& b : ins) in_ptrs.push_back(&b);
  meet_as_in_a_plan(l, in_ptrs);
  const auto t0 = std::chrono::steady_clock::now();
  l.forward(in_ptrs, ob);
  return ms_since(t0);
}

// A layer a lazy graph (a host) does not hold, in the slices it streams (an FC layer): timing r
// of the layer is the sum of every slice's timing r. (The sum of each slice's least time read
// fc6 ~20% faster than any pass over it ran.) Before the rounds, slice by slice: loading a
// slice per round would multiply the loads.
std::vector<double> time_slices(const Graph& g, int n, int reps) {
  const Layer& l = *g.node(n).layer;
  const std::vector<Band> ins = probe_inputs(l);
  std::vector<float> o(size_t(l.output_shape().c));
  const std::vector<const Band*> in_ptrs = {&ins.at(0)};
  std::vector<double> t(size_t(reps), 0.0);
  g.for_each_slice(n, [&](int c0, int c1) {
    for (int r = 0; r < reps + 1; ++r) {
      meet_as_in_a_plan(l, in_ptrs);
      const auto t0 = std::chrono::steady_clock::now();
      l.forward_channels(ins[0], c0, c1, o.data() + c0);
      if (r) t[size_t(r - 1)] += ms_since(t0);
    }
  });
  return t;
}

// What measure_profile times for one node, and the timings so far: the whole map, and for a
// spatial layer tall enough also one row granule, so that the fixed cost (the weights read
// from memory) is measured, not extrapolated; the fit is in computed rows.
struct LayerProbe {
  int node = 0;
  int small = 0;  // rows of the thin band; 0: the whole map only
  std::vector<double> full_ms, small_ms;
};

// One round: every probed layer timed once at each of its heights. One a lazy graph lacks is
// loaded for its turn, run once untimed (its first pass after a load, which the back-to-back
// profile discarded too), and released after.
void time_round(const Graph& g, std::vector<LayerProbe>& probes, bool keep) {
  for (LayerProbe& pr : probes) {
    const Layer& l = *g.node(pr.node).layer;
    const bool borrowed = g.lazy() && !l.ready();
    if (borrowed) g.load(pr.node);
    struct Release {
      const Graph& g;
      int n;
      bool on;
      ~Release() { if (on) g.unload(n); }
    } release{g, pr.node, borrowed};
    const std::vector<Band> ins = probe_inputs(l);
    if (borrowed) time_rows(l, ins, pr.small ? pr.small : l.output_shape().h);
    const double full = time_rows(l, ins, l.output_shape().h);
    const double small = pr.small ? time_rows(l, ins, pr.small) : 0;
    if (!keep) continue;
    pr.full_ms.push_back(full);
    if (pr.small) pr.small_ms.push_back(small);
  }
}
}  // namespace

// In rounds over all layers, not each layer's repetitions back to back: a machine's speed moves
// by the second (a VM's neighbours and memory bandwidth, a board's clock as it heats), and a
// layer timed within one such phase kept it, skewing the plans' proportions (docs/PERFORMANCE.md,
// "Profiles timed in rounds"). Every layer samples every phase, as the layers of a run do.
DeviceProfile measure_profile(const Graph& g, const std::string& name, int reps, bool least) {
  auto pick = [least](const std::vector<double>& t) {
    return least ? *std::min_element(t.begin(), t.end()) : median(t);
  };
  if (reps < 1) throw std::invalid_argument("a profile needs at least one timed run per layer");
  DeviceProfile p;
  p.name = name;
  p.model = g.model;
  p.threads = omp_get_max_threads();
  p.sweep_mb = double(kernels::cache_sweep_bytes()) / (1024.0 * 1024.0);
  p.layers.resize(size_t(g.size()));
  std::vector<LayerProbe> probes;
  for (int n = 0; n < g.size(); ++n) {
    const Layer& l = *g.node(n).layer;
    if (g.lazy() && !l.ready() && l.splits_channels()) {
      report_progress("profiling " + g.model + ": layer " + std::to_string(n + 1) + "/" +
                      std::to_string(g.size()) + " (streamed)");
      p.layers[size_t(n)].fixed_ms = pick(time_slices(g, n, reps));
      continue;
    }
    const int gr = std::max(1, l.row_granule()), h = l.output_shape().h;
    const bool two = l.spatial() && h >= 4 && computed_rows(l, {0, h}) >= 2 * gr;
    probes.push_back({n, two ? gr : 0, {}, {}});
  }
  Tensor in(g.input);
  for (size_t i = 0; i < in.size(); ++i) in.data()[i] = float(int(i % 23) - 11) * 0.05f;
  std::vector<double> whole;
  for (int r = 0; r < reps + 1; ++r) {  // round 0 warms up
    report_progress("profiling " + g.model + ": round " + std::to_string(r + 1) + "/" +
                    std::to_string(reps + 1));
    time_round(g, probes, r > 0);
    for (int n = 0; n < g.size(); ++n) g.node(n).layer->evict_weights();  // as the layers were timed
    kernels::sweep_caches();
    const double ms = timed_forward_ms(g, in);
    if (r) whole.push_back(ms);
  }
  for (const LayerProbe& pr : probes) {
    LayerCost& c = p.layers[size_t(pr.node)];
    const Layer& l = *g.node(pr.node).layer;
    const double t_full = pick(pr.full_ms);
    if (!pr.small) {
      c.fixed_ms = t_full;
      continue;
    }
    const int full = computed_rows(l, {0, l.output_shape().h});
    c.per_row_ms = std::max(0.0, (t_full - pick(pr.small_ms)) / (full - pr.small));
    c.fixed_ms = std::max(0.0, t_full - c.per_row_ms * full);
  }
  measure_nonzero(g, in, p);
  calibrate(p, g, pick(whole));
  return p;
}

double parse_memory_mb(const std::string& spec) {
  char* end = nullptr;
  const double v = std::strtod(spec.c_str(), &end);
  const std::string unit = end ? std::string(end) : std::string();
  double scale = -1;
  if (unit.empty() || unit == "M" || unit == "MB" || unit == "MiB" || unit == "m") scale = 1.0;
  if (unit == "G" || unit == "GB" || unit == "GiB" || unit == "g") scale = 1024.0;
  if (unit == "K" || unit == "KB" || unit == "KiB" || unit == "k") scale = 1.0 / 1024;
  if (end == spec.c_str() || scale < 0 || !(v >= 0 && v * scale <= 1e9))
    throw std::invalid_argument("bad memory size '" + spec + "' (e.g. 900M, 1G, 512MiB; 0: no limit)");
  return v * scale;
}

double available_memory_mb() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb / 1024.0;
  return 0;
}

void calibrate(DeviceProfile& p, const Graph& g, double whole_ms) {
  const double now = p.full_ms(g);
  if (!(whole_ms > 0) || !(now > 0)) return;
  const double k = whole_ms / now;
  for (LayerCost& c : p.layers) c.fixed_ms *= k, c.per_row_ms *= k;
}

DeviceProfile load_profile(const std::string& path, const Graph& g) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open device profile '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  DeviceProfile p;
  try {
    p = DeviceProfile::from_json(Json::parse(ss.str()));
  } catch (const std::exception& e) {
    throw std::runtime_error("device profile '" + path + "': " + e.what());
  }
  if (p.model != g.model)
    throw std::runtime_error("device profile '" + path + "' is for model '" + p.model + "', not '" + g.model + "'");
  if (int(p.layers.size()) != g.size())
    throw std::runtime_error("device profile '" + path + "' has " + std::to_string(p.layers.size()) +
                             " layers, the model has " + std::to_string(g.size()));
  return p;
}

void save_profile(const DeviceProfile& p, const std::string& path) {
  std::ofstream f(path, std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write '" + path + "'");
  f << p.to_json().dump(1) << "\n";
  if (!f) throw std::runtime_error("write failed for '" + path + "'");
}

}  // namespace eb::dist

namespace eb::dist {
DeviceProfile estimate_profile(const Graph& g, const std::string& name, double gflops, double fixed_ms) {
  if (!(gflops > 0)) throw std::invalid_argument("estimate_profile: rate must be positive");
  DeviceProfile p;
  p.name = name;
  p.model = g.model;
  for (int i = 0; i < g.size(); ++i) {
    const Layer& l = *g.node(i).layer;
    const int h = l.output_shape().h;
    LayerCost c;
    c.fixed_ms = fixed_ms;
    if (l.spatial() && h > 0)
      c.per_row_ms = l.flops({0, h}) / h / (gflops * 1e6);
    else
      c.fixed_ms += l.flops({0, h}) / (gflops * 1e6);
    p.layers.push_back(c);
  }
  return p;
}
}  // namespace eb::dist
