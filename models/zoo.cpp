#include "models/zoo.h"

#include "core/layers/fully_connected.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "core/layers/conv2d.h"
#include "core/layers/elementwise.h"
#include "core/layers/fully_connected.h"

namespace eb::models {

Graph build_vgg16(int res);
Graph build_mobilenet_v1(double alpha, int res);

std::string ModelSpec::canonical() const {
  if (family == "vgg16") return "vgg16:" + std::to_string(resolution);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s:%g:%d", family.c_str(), alpha, resolution);
  return buf;
}

ModelSpec parse_model_name(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t c = name.find(':', start);
    parts.push_back(name.substr(start, c == std::string::npos ? std::string::npos : c - start));
    if (c == std::string::npos) break;
    start = c + 1;
  }
  auto num = [&](const std::string& s, const char* what) {
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !std::isfinite(v))
      throw std::invalid_argument("model '" + name + "': bad " + what + " '" + s + "'");
    return v;
  };
  auto res_ok = [&](double r) {
    if (r != std::floor(r) || r < 32 || r > 1024 || long(r) % 32 != 0)
      throw std::invalid_argument("model '" + name + "': resolution must be a multiple of 32 in [32, 1024]");
    return int(r);
  };
  ModelSpec s;
  s.family = parts[0];
  if (s.family == "vgg16") {
    if (parts.size() > 2) throw std::invalid_argument("model '" + name + "': use vgg16[:RES]");
    if (parts.size() == 2) s.resolution = res_ok(num(parts[1], "resolution"));
    return s;
  }
  if (s.family == "mobilenet_v1") {
    if (parts.size() > 3)
      throw std::invalid_argument("model '" + name + "': use mobilenet_v1[:ALPHA[:RES]]");
    if (parts.size() >= 2) {
      s.alpha = num(parts[1], "width multiplier");
      if (s.alpha != 0.25 && s.alpha != 0.5 && s.alpha != 0.75 && s.alpha != 1.0)
        throw std::invalid_argument("model '" + name + "': width multiplier must be 0.25, 0.5, 0.75 or 1.0");
    }
    if (parts.size() == 3) s.resolution = res_ok(num(parts[2], "resolution"));
    return s;
  }
  throw std::invalid_argument("unknown model '" + name + "' (expected vgg16 or mobilenet_v1[:ALPHA[:RES]])");
}

Graph build_unfused(const ModelSpec& spec) {
  Graph g = spec.family == "vgg16" ? build_vgg16(spec.resolution)
                                   : build_mobilenet_v1(spec.alpha, spec.resolution);
  g.model = spec.canonical();
  return g;
}

namespace {
struct Rng {  // splitmix64: fast, seedable, identical on every platform
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * float(next() >> 40) * (1.0f / 16777216.0f); }
};
uint64_t name_seed(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (char c : s) h = (h ^ uint8_t(c)) * 1099511628211ull;
  return h;
}
}  // namespace

namespace {
void fill_node(Node& n, uint64_t seed) {
  for (Param& p : n.layer->params()) {
    Rng rng{name_seed(n.name + "." + p.name, seed)};
    std::vector<float>& d = *p.data;
    if (auto* bn = dynamic_cast<BatchNorm*>(n.layer.get())) {
      (void)bn;
      const bool is_var = p.name == "var", is_gamma = p.name == "gamma";
      for (float& v : d)
        v = (is_var || is_gamma) ? rng.uniform(0.5f, 1.5f) : rng.uniform(-0.1f, 0.1f);
    } else if (p.name == "weight") {
      long fan_in = 1;
      for (size_t k = 1; k < p.dims.size(); ++k) fan_in *= p.dims[k];
      const float a = std::sqrt(6.0f / float(fan_in));  // He-uniform keeps ReLU nets in range
      for (float& v : d) v = rng.uniform(-a, a);
    } else {
      for (float& v : d) v = rng.uniform(-0.05f, 0.05f);
    }
  }
}

// Rows [r.begin, r.end) of an FC layer's weights: the generator is a counter (splitmix64), so
// it starts at the slice's first value and the values equal those of a whole fill.
void fill_fc_rows(Node& n, FullyConnected& fc, RowRange r, uint64_t seed) {
  for (Param& p : fc.params_without_weight()) {
    Rng rng{name_seed(n.name + "." + p.name, seed)};
    for (float& v : *p.data) v = rng.uniform(-0.05f, 0.05f);
  }
  Rng rng{name_seed(n.name + ".weight", seed)};
  rng.s += uint64_t(r.begin) * uint64_t(fc.inputs()) * 0x9E3779B97F4A7C15ull;
  const float a = std::sqrt(6.0f / float(fc.inputs()));
  float* w = fc.source_rows(r);
  for (size_t i = 0; i < size_t(r.size()) * size_t(fc.inputs()); ++i) w[i] = rng.uniform(-a, a);
}

void fill_lazy(Node& n, RowRange channels, uint64_t seed) {
  auto* fc = dynamic_cast<FullyConnected*>(n.layer.get());
  if (fc && !channels.empty()) return fill_fc_rows(n, *fc, channels, seed);
  fill_node(n, seed);
}

}  // namespace

void fill_synthetic(Graph& g, uint64_t seed) {
  for (int i = 0; i < g.size(); ++i) fill_node(g.node(i), seed);
}

// Lazy: BatchNorm statistics now (finalize folds them, as pending folds, into convolutions that
// have no weights yet); every convolution and FC layer when Graph::load() asks. Each node's
// values come from its own seed, so a node filled late equals the one filled first.
Graph build_synthetic(const std::string& name, uint64_t seed, Hold hold) {
  Graph g = build_unfused(parse_model_name(name));
  g.keep_sources = hold == Hold::full;
  if (hold != Hold::lazy) {
    fill_synthetic(g, seed);
    g.finalize();
    return g;
  }
  for (int i = 0; i < g.size(); ++i)
    if (!g.node(i).layer->loads_lazily()) fill_node(g.node(i), seed);
  g.finalize(false);
  g.set_weight_fill([seed](Node& n, RowRange channels) { fill_lazy(n, channels, seed); });
  return g;
}

}  // namespace eb::models

#include "core/weights_io.h"

namespace eb::models {

Graph load_model(const std::string& name, const std::string& weights_path, uint64_t* hash, Hold hold) {
  if (weights_path.empty()) {
    if (name.empty()) throw std::invalid_argument("give --model or --weights");
    const ModelSpec spec = parse_model_name(name);
    Graph g = build_synthetic(name, 2022, hold);
    if (hash) *hash = name_seed("synthetic:" + spec.canonical(), 2022);
    return g;
  }
  Graph g = hold == Hold::lazy ? load_weights_lazy(weights_path, hash) : load_weights(weights_path, hash, hold == Hold::full);
  if (!name.empty() && name != g.model) {
    // Accept the short forms of the same model ("mobilenet_v1" == "mobilenet_v1:1:224").
    std::string want;
    try {
      want = parse_model_name(name).canonical();
    } catch (const std::exception&) {
      want = name;
    }
    if (want != g.model)
      throw WeightsError("weights file '" + weights_path + "' holds model '" + g.model +
                         "', not '" + name + "'");
  }
  return g;
}

}  // namespace eb::models
