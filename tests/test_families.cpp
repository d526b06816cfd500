// Issue #28: real PyTorch exports of each CNN family (tests/fixtures/families, made once by
// export.py with torch 1.13 / torchvision 0.14; CI does not install torch) convert, match
// PyTorch's logits, and run distributed over 3 in-process devices bit for bit equal to local.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "core/graph.h"
#include "core/weights_io.h"
#include "dist/plan/local_executor.h"
#include "dist/plan/planner.h"
#include "dist/plan/profile.h"
#include "dist/runtime/host.h"
#include "dist/runtime/worker.h"
#include "models/import/importers.h"
#include "tests/helpers.h"
#include "tests/local_workers.h"
#include "tests/reference.h"

using namespace eb;

namespace {

const std::string kFixtures = std::string(EDGEBAND_SOURCE_DIR) + "/tests/fixtures/families/";

// family, operators its export exercises (for the README table)
const std::vector<std::pair<std::string, std::string>> kFamilies = {
    {"resnet", "BasicBlock, Add"},
    {"resnext", "Bottleneck, grouped conv (4 groups)"},
    {"densenet", "Concat, BN+ReLU before conv, Pad, AveragePool"},
    {"googlenet", "Inception: 4-way Concat, ceil-mode MaxPool"},
    {"squeezenet", "Fire: Concat, ceil-mode MaxPool, conv classifier"},
    {"shufflenet", "channel shuffle (Reshape/Transpose), Slice, ReduceMean"},
    {"efficientnet", "MBConv: SiLU (Sigmoid*x), SE (GAP, Sigmoid, Mul)"},
    {"mobilenetv3", "hard-swish, SE with HardSigmoid, FC hard-swish"},
    {"regnet", "grouped conv (width 8), SE"},
    {"vgg_bn", "BN nodes folded, flatten NCHW -> 3 FC"},
    {"mobilenetv2", "BN nodes folded, depthwise, ReLU6 (Clip), Add"},
};


bool have(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return bool(f);
}

// The engine's NHWC input from PyTorch's NCHW one.
Tensor nchw_to_nhwc(const std::vector<float>& v, Shape s) {
  Tensor t(s);
  REQUIRE(v.size() == s.size());
  for (int c = 0; c < s.c; ++c)
    for (int y = 0; y < s.h; ++y)
      for (int x = 0; x < s.w; ++x) t.at(y, x, c) = v[(size_t(c) * s.h + y) * s.w + x];
  return t;
}

std::vector<int> top5(const float* v, size_t n) {
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(),
                    [&](int a, int b) { return v[a] > v[b]; });
  idx.resize(5);
  return idx;
}

struct Fixture {
  std::string name, ops;
  Graph g;
  Tensor input;
  std::vector<float> logits;
};

// Every fixture that is present, converted; a missing file is reported and fails the test.
std::vector<Fixture> load_fixtures() {
  std::vector<Fixture> out;
  for (const auto& [name, ops] : kFamilies) {
    const std::string base = kFixtures + name;
    bool complete = true;
    for (const std::string ext : {".onnx", ".input.f32", ".logits.f32"})
      if (!have(base + ext)) {
        FAIL_CHECK("fixture file missing: " << base + ext
                                            << " (made by tests/fixtures/families/export.py)");
        complete = false;
      }
    if (!complete) continue;
    Fixture f{name, ops, {}, {}, test::read_floats(base + ".logits.f32")};
    try {
      f.g = import::import_model({base + ".onnx"}, {name, ""});
    } catch (const std::exception& e) {
      FAIL_CHECK(name << ": conversion failed: " << e.what());
      continue;
    }
    f.input = nchw_to_nhwc(test::read_floats(base + ".input.f32"), f.g.input);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

TEST_CASE(
    "families: PyTorch exports convert; top-5 equal, max |diff| <= 1e-4 of the largest logit") {
  const std::vector<Fixture> fx = load_fixtures();
  CHECK(fx.size() == kFamilies.size());
  for (const Fixture& f : fx) {
    CAPTURE(f.name);
    const Tensor out = f.g.forward(f.input);
    REQUIRE(out.size() == f.logits.size());
    float diff = 0, top = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      diff = std::max(diff, std::fabs(out.data()[i] - f.logits[i]));
      top = std::max(top, std::fabs(f.logits[i]));
    }
    const float rel = diff / top;
    MESSAGE(f.name << " [" << f.ops << "]: " << f.g.size() << " layers, max |diff| " << diff
                   << ", relative to the largest logit " << rel);
    CHECK(top5(out.data(), out.size()) == top5(f.logits.data(), f.logits.size()));
    CHECK(rel <= 1e-4f);
  }
}

TEST_CASE("families: every scheme's 3-device plan, executed in-process, equals local bit for bit") {
  const std::vector<Fixture> fx = load_fixtures();
  for (const Fixture& f : fx) {
    CAPTURE(f.name);
    const Tensor want = f.g.forward(f.input);
    dist::Cluster c;
    c.link = dist::parse_link("1gbit,0.2ms");
    for (int i = 0; i < 3; ++i) c.devices.push_back(dist::estimate_profile(f.g, "d", 5));
    for (dist::Scheme s : {dist::Scheme::modnn, dist::Scheme::dpfp, dist::Scheme::halp}) {
      CAPTURE(dist::scheme_name(s));
      const dist::Plan p = dist::make_plan(f.g, c, s);
      CHECK(ref::bit_equal(dist::execute_locally(f.g, p, f.input), want));
    }
    // A fast link, so that the planner splits more of the network; then every block cut in
    // three equal bands, whatever the planner chose, so each family really runs in bands.
    c.link = dist::parse_link("10gbit,0.01ms");
    for (dist::Scheme s : {dist::Scheme::dpfp, dist::Scheme::halp}) {
      CAPTURE(dist::scheme_name(s));
      dist::Plan p = dist::make_plan(f.g, c, s);
      CHECK(ref::bit_equal(dist::execute_locally(f.g, p, f.input), want));
      for (dist::BlockPlan& bp : p.blocks) {
        const int h = f.g.shape_of(bp.last - 1).h;
        const std::vector<RowRange> thirds = dist::split_rows(h, {1, 1, 1});
        for (size_t d = 0; d < 3; ++d) {
          bp.zones[d].clear();
          if (thirds[d].begin < thirds[d].end) bp.zones[d].push_back(thirds[d]);
        }
      }
      dist::simulate(f.g, c, p);
      CHECK(!p.transfers.empty());
      CHECK(ref::bit_equal(dist::execute_locally(f.g, p, f.input), want));
    }
  }
}

// The same over loopback workers (what `cluster --devices 3 --scheme all` runs): each family's
// converted weights file, 2 workers and the host, every scheme, equal to local bit for bit.
TEST_CASE("dist loopback: the PyTorch-exported families on 3 devices equal local inference") {
  std::vector<Fixture> fx = load_fixtures();
  for (Fixture& f : fx) {
    CAPTURE(f.name);
    auto g = std::make_shared<Graph>(std::move(f.g));
    const std::string path =
        "/tmp/edgeband_families_" + std::to_string(::getpid()) + "_" + f.name + ".ebw";
    const uint64_t hash = save_weights(*g, path);
    const Tensor want = g->forward(f.input);
    const test::LocalWorkers workers(2, path);
    dist::HostRuntime host(g, hash, workers.addrs, {});
    dist::Cluster c;
    c.link = dist::parse_link("10gbit,0.01ms");
    for (int i = 0; i < 3; ++i) c.devices.push_back(dist::estimate_profile(*g, "d", 5));
    for (dist::Scheme s : {dist::Scheme::modnn, dist::Scheme::dpfp, dist::Scheme::halp}) {
      CAPTURE(dist::scheme_name(s));
      dist::InferStats st;
      CHECK(ref::bit_equal(host.infer({f.input}, dist::make_plan(*g, c, s), &st).at(0), want));
      CHECK(st.faults == 0);
    }
    ::unlink(path.c_str());
  }
}
