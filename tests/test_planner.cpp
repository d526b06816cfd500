#include <doctest/doctest.h>

#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <stdexcept>

#include "core/layers/conv2d.h"
#include "core/layers/pool2d.h"
#include "dist/plan/local_executor.h"
#include "dist/plan/memory.h"
#include "dist/plan/planner.h"
#include "dist/plan/schedule.h"
#include "dist/runtime/executor.h"
#include "kernels/cache.h"
#include "models/zoo.h"
#include "tests/helpers.h"

using namespace eb;
using namespace eb::dist;

namespace {

Cluster homogeneous(const Graph& g, int n, const std::string& link, double gflops = 10) {
  Cluster c;
  c.link = parse_link(link);
  for (int i = 0; i < n; ++i)
    c.devices.push_back(estimate_profile(g, "dev" + std::to_string(i), gflops));
  return c;
}

void check_plan_structure(const Graph& g, const Plan& p) {
  REQUIRE(!p.blocks.empty());
  CHECK(p.blocks.front().first == 0);
  CHECK(p.blocks.back().last == p.tail_first);
  CHECK(p.tail_first == g.spatial_end());
  for (size_t b = 0; b < p.blocks.size(); ++b) {
    const BlockPlan& bp = p.blocks[b];
    if (b > 0) CHECK(bp.first == p.blocks[b - 1].last);
    CHECK(g.is_cut(bp.first));
    // Every output row of the block is computed exactly once.
    std::vector<int> count(size_t(g.shape_of(bp.last - 1).h), 0);
    for (const auto& dz : bp.zones)
      for (const RowRange& z : dz) {
        CHECK_FALSE(z.empty());
        for (int y = z.begin; y < z.end; ++y) ++count[size_t(y)];
      }
    for (int c : count) CHECK(c == 1);
  }
  for (const Transfer& t : p.transfers) {
    CHECK(t.rows.size() > 0);
    CHECK(t.bytes > 0);
    CHECK(t.src != t.dst);
    CHECK((t.src == 0 || t.dst == 0));  // star: every transfer touches the host
    // What the host sends holds rows of one owner: its own rows leave without waiting for the
    // rows it relays.
    if (t.src == 0 && t.stage.index > 0 && t.stage.index <= int(p.blocks.size())) {
      std::set<size_t> owners;
      const auto& zones = p.blocks[size_t(t.stage.index - 1)].zones;
      for (int y = t.rows.begin; y < t.rows.end; ++y)
        for (size_t d = 0; d < zones.size(); ++d)
          for (const RowRange& z : zones[d])
            if (z.contains({y, y + 1})) owners.insert(d);
      CHECK(owners.size() == 1);
    }
  }
  // A split tail: every device has one slice, together they tile the layer's channels.
  REQUIRE(int(p.tail_slices.size()) == p.split_tail);
  for (int j = 0; j < p.split_tail; ++j) {
    REQUIRE(int(p.tail_slices[size_t(j)].size()) == p.devices);
    int next = 0;
    for (const ChannelSlice& r : p.tail_slices[size_t(j)])
      if (!r.empty()) {
        CHECK(r.begin == next);
        next = r.end;
      }
    CHECK(next == g.shape_of(p.tail_first + j).c);
  }
}

// VGG-16 at 64x64, loaded once for the tests that only plan (loading packs every layer).
const Graph& vgg16_64() {
  static const Graph g = models::load_model("vgg16:64", "");
  return g;
}

// VGG-16 at 224x224 with no weights loaded (kernels chosen, nothing packed): for planning.
const Graph& vgg16_224_plan_only() {
  static const Graph g = models::build_synthetic("vgg16:224", 2022, models::Hold::lazy);
  return g;
}

}  // namespace

TEST_CASE("planner: split_rows and link parsing") {
  auto r = split_rows(10, {1, 1, 2});
  CHECK(r[0] == RowRange{0, 3});
  CHECK(r[1] == RowRange{3, 5});
  CHECK(r[2] == RowRange{5, 10});
  CHECK(split_rows(5, {0, 1})[0].empty());
  CHECK_THROWS(split_rows(5, {0, 0}));
  const LinkModel l = parse_link("100mbit,2ms");
  CHECK(l.bits_per_s == doctest::Approx(1e8));
  CHECK(l.latency_s == doctest::Approx(2e-3));
  CHECK(parse_link("1gbit,50us").latency_s == doctest::Approx(5e-5));
  CHECK_THROWS_AS(parse_link("-5mbit,1ms"), std::invalid_argument);
  CHECK_THROWS_AS(parse_link("0mbit,1ms"), std::invalid_argument);
  CHECK_THROWS_AS(parse_link("10 parsecs"), std::invalid_argument);
  CHECK_THROWS_AS(parse_link("1gbit,-1ms"), std::invalid_argument);
  CHECK_THROWS_AS(parse_scheme("fastest"), std::invalid_argument);
}

TEST_CASE(
    "planner: plans of every scheme, 2..8 devices, uneven speeds: executed locally they equal the "
    "full image") {
  std::mt19937 rng(11);
  for (const char* name : {"vgg16:32", "mobilenet_v1:0.25:96"}) {
    const Graph g = models::build_synthetic(name);
    const Tensor in = ref::random_tensor(g.input, rng);
    const Tensor full = g.forward(in);
#if EDGEBAND_SANITIZED
    for (int n : {2, 3, 5, 8}) {
#else
    for (int n = 2; n <= 8; ++n) {
#endif
      Cluster c = homogeneous(g, n, "1gbit,0.1ms", 2);
      for (int d = 1; d < n; ++d)  // uneven: some devices faster than others
        c.devices[size_t(d)] = estimate_profile(g, "d", 1.0 + double(d % 3));
      for (Scheme s : {Scheme::local, Scheme::modnn, Scheme::dpfp, Scheme::halp}) {
        CAPTURE(name);
        CAPTURE(n);
        CAPTURE(scheme_name(s));
        const Plan p = make_plan(g, c, s);
        check_plan_structure(g, p);
        CHECK(ref::bit_equal(execute_locally(g, p, in), full));
      }
      // Random block structures too, not just the ones the DP likes.
      std::vector<int> cuts;
      for (int x : candidate_cuts(g))
        if (rng() % 3 == 0) cuts.push_back(x);
      for (Scheme s : {Scheme::dpfp, Scheme::halp}) {
        Plan p = plan_with_cuts(g, c, s, cuts, 0.1 * double(rng() % 10));
        check_plan_structure(g, p);
        CHECK(ref::bit_equal(execute_locally(g, p, in), full));
        // Splits of the tail's FC layers by channels are exact too (one FC layer, all of them).
        if (n != 2 && n != 3 && n != 8) continue;
        for (int k : {1, splittable_tail(g)}) {
          if (k < 1 || k > splittable_tail(g)) continue;
          CAPTURE(k);
          split_tail(g, c, p, k);
          check_plan_structure(g, p);
          CHECK(ref::bit_equal(execute_locally(g, p, in), full));
        }
      }
    }
  }
}

TEST_CASE("planner: VGG-16's FC tail is split across devices when it pays, not on slow links") {
  const Graph& g = vgg16_64();
  CHECK(splittable_tail(g) == 3);  // fc6, fc7, fc8; softmax stays on the host
  CHECK(splittable_tail(models::build_synthetic("mobilenet_v1:0.25:96")) == 0);  // avg pool first
  // Slow compute (FC6 reads 400 MB of weights on a real board), fast link: split.
  const Plan fast = make_plan(g, homogeneous(g, 3, "1gbit,0.1ms", 1), Scheme::halp);
  CHECK(fast.split_tail >= 1);
  // The timeline names each compute by its stage: the host's unsplit rest of the tail comes
  // after the split stages, never under a split layer's stage (which the host also computes).
  std::map<int, int> host_events;
  for (const Event& e : fast.timeline)
    if (e.what == "compute" && e.device == 0) ++host_events[e.block];
  CHECK(host_events[fast.stages()] == 1);
  for (int j = 0; j < fast.split_tail; ++j) CHECK(host_events[fast.tail_stage(j).index] == 1);
  Plan unsplit = fast;
  split_tail(g, homogeneous(g, 3, "1gbit,0.1ms", 1), unsplit, 0);
  CHECK(unsplit.predicted_ms > fast.predicted_ms);
  CHECK(unsplit.bytes < fast.bytes);  // the broadcast costs bytes
  // A very slow link: shipping fc6's input costs more than computing it alone.
  const Plan slow = make_plan(g, homogeneous(g, 3, "2mbit,20ms", 1000), Scheme::dpfp);
  CHECK(slow.split_tail == 0);
  CHECK_THROWS_AS(split_tail(g, homogeneous(g, 3, "1gbit,0.1ms"), unsplit, 4), std::invalid_argument);
}

TEST_CASE("planner: DP block choice is optimal: brute force over every set of cuts") {
  // A small chain with strides, so halos and block costs differ between cut choices.
  Graph g;
  g.model = "chain";
  g.input = {40, 24, 4};
  long cin = 4;
  const long specs[][3] = {{8, 3, 1},  {8, 3, 2},  {16, 3, 1}, {16, 1, 1},
                           {16, 3, 2}, {24, 3, 1}, {24, 3, 1}};
  for (auto& sp : specs) {
    Conv2DParams p;
    p.cin = cin;
    p.cout = sp[0];
    p.kh = p.kw = sp[1];
    p.sh = p.sw = sp[2];
    p.pad_t = p.pad_l = p.pad_b = p.pad_r = sp[1] / 2;
    p.act = Activation::relu;
    g.add("c" + std::to_string(g.size()), std::make_unique<Conv2D>(p));
    cin = sp[0];
  }
  g.add("pool", std::make_unique<Pool2D>(kernels::PoolKind::max, 2, 2));
  models::fill_synthetic(g);
  g.finalize();
  const std::vector<int> cand = candidate_cuts(g);
  REQUIRE(cand.size() == 7);
  for (const char* link : {"1gbit,0.05ms", "50mbit,0.5ms", "5mbit,1ms"})
    for (int n : {2, 3, 4}) {
      const Cluster c = homogeneous(g, n, link, 0.5);
      for (Scheme s : {Scheme::dpfp, Scheme::halp}) {
        // The DP itself (make_plan may then prefer another structure with overlap blocks).
        const double share = s == Scheme::halp ? make_plan(g, c, s).host_share : 0.0;
        const Plan best = best_blocks(g, c, s, share);
        double brute = 1e300;
        for (unsigned mask = 0; mask < (1u << cand.size()); ++mask) {
          std::vector<int> cuts;
          for (size_t i = 0; i < cand.size(); ++i)
            if (mask & (1u << i)) cuts.push_back(cand[i]);
          brute = std::min(brute, staged_cost(g, c, plan_with_cuts(g, c, s, cuts, share)));
        }
        CAPTURE(link);
        CAPTURE(n);
        CAPTURE(scheme_name(s));
        REQUIRE(best.devices == n);
        CHECK(staged_cost(g, c, best) == doctest::Approx(brute).epsilon(1e-9));
      }
    }
}

TEST_CASE("planner: very slow links collapse gracefully to local; fast links split") {
  const Graph& g = vgg16_64();
  const Plan local = make_plan(g, homogeneous(g, 3, "1kbit,10ms"), Scheme::local);
  for (Scheme s : {Scheme::dpfp, Scheme::halp}) {
    const Plan slow = make_plan(g, homogeneous(g, 3, "1kbit,10ms"), s);
    CHECK(slow.bytes == 0);
    CHECK(slow.devices == 1);
    CHECK(slow.predicted_ms == doctest::Approx(local.predicted_ms));
    const Plan fast = make_plan(g, homogeneous(g, 3, "10gbit,0.01ms", 1), s);
    CHECK(fast.devices == 3);
    CHECK(fast.bytes > 0);
    // Not 3x: at 64 px the deep layers are a few Winograd tiles tall, and a tile split between
    // devices is computed whole by each.
    CHECK(fast.predicted_ms <
          0.7 * make_plan(g, homogeneous(g, 3, "10gbit,0.01ms", 1), Scheme::local).predicted_ms);
  }
}

TEST_CASE(
    "planner: HALP beats MoDNN and DPFP on a slow-compute, 1 Gbit cluster; batches pipeline") {
  const Graph& g = vgg16_224_plan_only();
  const Cluster c = homogeneous(g, 3, "1gbit,0.2ms", 10);  // Raspberry-Pi-class devices
  const Plan local = make_plan(g, c, Scheme::local), modnn = make_plan(g, c, Scheme::modnn);
  const Plan dpfp = make_plan(g, c, Scheme::dpfp), halp = make_plan(g, c, Scheme::halp);
  MESSAGE("predicted ms: local " << local.predicted_ms << ", modnn " << modnn.predicted_ms
                                 << ", dpfp " << dpfp.predicted_ms << ", halp "
                                 << halp.predicted_ms);
  CHECK(halp.predicted_ms < dpfp.predicted_ms);
  CHECK(halp.predicted_ms < modnn.predicted_ms);
  CHECK(dpfp.bytes < modnn.bytes);
  const Plan halp4 = make_plan(g, c, Scheme::halp, 4);
  CHECK(halp4.predicted_ms > halp.predicted_ms);
  CHECK(halp4.predicted_ms < 4 * halp.predicted_ms);  // images overlap
}

TEST_CASE("planner: heterogeneous devices: the faster device gets more rows") {
  const Graph& g = vgg16_64();
  Cluster c = homogeneous(g, 3, "10gbit,0.01ms", 2);
  c.devices[2] = estimate_profile(g, "fast", 6);
  const Plan p = make_plan(g, c, Scheme::dpfp);
  REQUIRE(p.devices == 3);
  // Over all blocks (the slow secondary may even be left idle).
  std::vector<int> rows(3, 0);
  for (const BlockPlan& b : p.blocks)
    for (size_t d = 0; d < 3; ++d)
      for (const RowRange& z : b.zones[d]) rows[d] += z.size();
  CHECK(rows[2] > rows[1]);
  CHECK(rows[2] > rows[0]);
}

TEST_CASE("planner: planner rejects bad input with clear errors") {
  const Graph g = models::build_synthetic("vgg16:32");
  Cluster none;
  CHECK_THROWS_WITH_AS(make_plan(g, none, Scheme::halp), doctest::Contains("at least one device"),
                       std::invalid_argument);
  Cluster c = homogeneous(g, 2, "1gbit,1ms");
  CHECK_THROWS_AS(make_plan(g, c, Scheme::halp, 0), std::invalid_argument);
  c.devices[1].layers.pop_back();
  CHECK_THROWS_AS(make_plan(g, c, Scheme::dpfp), std::invalid_argument);
  CHECK_THROWS(DeviceProfile::from_json(Json::parse(
      R"({"name":"x","model":"m","threads":1,"layers":[{"fixed_ms":-1,"per_row_ms":0}]})")));
  CHECK_THROWS(DeviceProfile::from_json(Json::parse(R"({"name":"x","threads":1,"layers":[]})")));
  CHECK_THROWS(Json::parse(R"({"name": "x", "layers": [1, 2,)"));
  CHECK_THROWS(estimate_profile(g, "x", -1));
  // Profiles round-trip through JSON.
  const DeviceProfile p = estimate_profile(g, "rt", 3);
  const DeviceProfile q = DeviceProfile::from_json(Json::parse(p.to_json().dump()));
  CHECK(q.layers.size() == p.layers.size());
  CHECK(q.full_ms(g) == doctest::Approx(p.full_ms(g)));
}

TEST_CASE("planner: computable_rows is the largest tile-aligned part whose inputs are held") {
  const Graph& g = vgg16_64();
  const std::vector<int> cuts = candidate_cuts(g);
  std::vector<int> pos{0};
  pos.insert(pos.end(), cuts.begin(), cuts.end());
  pos.push_back(g.spatial_end());
  std::mt19937 rng(77);
  int trimmed = 0, empty = 0;
  for (int trial = 0; trial < 400; ++trial) {
    // A block of one to three stages, a range of its output, and a held band of its input.
    const size_t i = rng() % (pos.size() - 1), j = std::min(pos.size() - 1, i + 1 + rng() % 3);
    const int first = pos[i], last = pos[j], h = g.shape_of(last - 1).h, hin = g.shape_of(first - 1).h;
    const int a = int(rng() % size_t(h)), e = a + 1 + int(rng() % size_t(h - a));
    const int h0 = int(rng() % size_t(hin)), h1 = h0 + 1 + int(rng() % size_t(hin - h0));
    const RowRange want{a, e}, held{h0, h1};
    auto have = [&](RowRange r) { return held.contains(r); };
    CAPTURE(g.node(first).name);
    CAPTURE(g.node(last - 1).name);
    CAPTURE(a);
    CAPTURE(e);
    CAPTURE(h0);
    CAPTURE(h1);
    const RowRange q = computable_rows(g, first, last, want, have);
    if (q.empty()) {
      ++empty;
      continue;
    }
    CHECK(want.contains(q));
    CHECK(have(g.block_needs(first, last, q)[0]));
    const int gr = g.node(last - 1).layer->row_granule();
    if (q.begin != want.begin) CHECK(q.begin % gr == 0);
    if (q.end != want.end) CHECK(q.end % gr == 0);
    if (q.size() < want.size()) ++trimmed;
    // Whole inputs held: everything is computable.
    const RowRange all = g.block_needs(first, last, want)[0];
    CHECK(computable_rows(g, first, last, want, [&](RowRange r) { return all.contains(r); }).size() ==
          want.size());
  }
  CHECK(trimmed > 20);  // the draw exercised trimming and the empty answer
  CHECK(empty > 20);
  CHECK(computable_rows(g, 0, pos[1], {0, 4}, [](RowRange) { return false; }).empty());
}

TEST_CASE("planner: HALP overlap blocks are chosen only where the simulation gains") {
  const Graph& g = vgg16_64();
  int chosen_any = 0;
  for (const char* link : {"10gbit,0.05ms", "1gbit,0.2ms", "100mbit,1ms"}) {
    CAPTURE(link);
    const Cluster c = homogeneous(g, 3, link, 20);
    Plan p = make_plan(g, c, Scheme::halp);
    check_plan_structure(g, p);
    int chosen = 0;
    for (const BlockPlan& bp : p.blocks) chosen += bp.overlap;
    chosen_any += chosen;
    MESSAGE(std::string(link) << ": " << chosen << " of " << p.blocks.size() << " blocks overlap");
    // Turning any chosen block's overlap off again does not make the plan faster.
    for (size_t b = 0; b < p.blocks.size(); ++b) {
      if (!p.blocks[b].overlap) continue;
      Plan q = p;
      q.blocks[b].overlap = false;
      simulate(g, c, q);
      CHECK(q.predicted_ms >= p.predicted_ms - 1e-9);
    }
    // Other schemes never overlap: DPFP is the paper's wait-for-halos baseline.
    for (const BlockPlan& bp : make_plan(g, c, Scheme::dpfp).blocks) CHECK_FALSE(bp.overlap);
  }
  CHECK(chosen_any > 0);  // the property above was not vacuous
}

TEST_CASE("planner: a Winograd band is charged for the whole tiles it computes") {
  const Graph& g = vgg16_64();
  const DeviceProfile p = estimate_profile(g, "d", 10);
  int wino = 0, plain = 0;
  for (int n = 0; n < g.spatial_end(); ++n) {
    CAPTURE(g.node(n).name);
    const int gr = g.node(n).layer->row_granule(), h = g.shape_of(n).h;
    if (gr == 4 && h >= 8) {
      ++wino;
      CHECK(p.band_ms(g, n, {0, 5}) == doctest::Approx(p.band_ms(g, n, {0, 8})));
      CHECK(p.band_ms(g, n, {3, 5}) == doctest::Approx(p.layer_ms(n, 8)));  // straddles two tiles
      CHECK(p.band_ms(g, n, {4, 8}) == doctest::Approx(p.layer_ms(n, 4)));
      CHECK(p.band_ms(g, n, {4, 8}) < p.band_ms(g, n, {3, 8}));
    } else if (gr == 1 && h >= 8) {
      ++plain;
      CHECK(p.band_ms(g, n, {3, 5}) == doctest::Approx(p.layer_ms(n, 2)));
    }
    CHECK(p.band_ms(g, n, {2, 2}) == 0);
  }
  CHECK(wino >= 6);
  CHECK(plain >= 2);
  // A 15-row F(4x4) layer computes 16 rows whole: the full-layer cost includes them too.
  const DeviceProfile q = estimate_profile(g, "d", 10, 0);
  double full = 0;
  for (int n = 0; n < g.size(); ++n) full += q.band_ms(g, n, {0, g.shape_of(n).h});
  CHECK(q.full_ms(g) == doctest::Approx(full));
}

TEST_CASE("planner: zones snapped to whole Winograd tiles, where that is predicted faster") {
  const Graph& g = vgg16_224_plan_only();
  Cluster c = homogeneous(g, 3, "100mbit,2ms");
  Cluster aligned = c;
  aligned.tile_aligned_zones = true;
  // Snapped: every boundary of a block ending in a Winograd conv lies between whole tiles
  // (6 rows of an F(6x6) conv, 4 of an F(4x4) one, 2 of an F(2x2) one; half that of a 2x2
  // pool fused after it).
  std::vector<int> cuts;  // one block per conv, each pool fused with the conv before it
  for (int x : candidate_cuts(g))
    if (g.shape_of(x).h == g.shape_of(x - 1).h) cuts.push_back(x);
  const Plan p = plan_with_cuts(g, aligned, Scheme::dpfp, cuts, 0);
  int snapped = 0, pooled = 0;
  for (const BlockPlan& bp : p.blocks) {
    const int n = bp.last - 1;
    const bool pool_after_wino = g.shape_of(n).h * 2 == g.shape_of(n - 1).h && n - 1 >= bp.first &&
                                 g.node(n - 1).layer->row_granule() > 1;
    const int gr = pool_after_wino ? g.node(n - 1).layer->row_granule() / 2 : g.node(n).layer->row_granule();
    if (gr == 1) continue;
    ++snapped;
    pooled += pool_after_wino;
    CAPTURE(g.node(n).name);
    for (const auto& dz : bp.zones)
      for (const RowRange& z : dz) CHECK(z.begin % gr == 0);
  }
  CHECK(pooled >= 3);
  CHECK(snapped >= 10);
  // It pays here (MoDNN recomputes every boundary's tiles), and make_plan takes it.
  const Plan loose = detail::plan_modnn(g, c, 1), tight = detail::plan_modnn(g, aligned, 1);
  CHECK(tight.predicted_ms < 0.97 * loose.predicted_ms);
  CHECK(make_plan(g, c, Scheme::modnn).predicted_ms <= tight.predicted_ms + 1e-6);
  const Plan dpfp_loose = detail::plan_dpfp(g, c, 1), dpfp_tight = detail::plan_dpfp(g, aligned, 1);
  CHECK(make_plan(g, c, Scheme::dpfp).predicted_ms <=
        std::min(dpfp_loose.predicted_ms, dpfp_tight.predicted_ms) + 1e-6);
  MESSAGE("modnn " << loose.predicted_ms << " -> " << tight.predicted_ms << " ms; dpfp "
                   << dpfp_loose.predicted_ms << " -> " << dpfp_tight.predicted_ms << " ms");
}

TEST_CASE("planner: zone boundaries and tail slices are a local optimum of the simulation") {
  const Graph& g = vgg16_64();
  int moves = 0;
  for (const char* link : {"1gbit,0.2ms", "100mbit,1ms"})
    for (Scheme s : {Scheme::dpfp, Scheme::halp}) {
      CAPTURE(link);
      CAPTURE(scheme_name(s));
      const Cluster c = homogeneous(g, 3, link, 20);
      const Plan p = make_plan(g, c, s);
      if (p.devices == 1) continue;
      check_plan_structure(g, p);
      // Never worse than the DP's plan it started from.
      CHECK(p.predicted_ms <= best_blocks(g, c, s, p.host_share).predicted_ms + 1e-9);
      for (size_t b = 0; b < p.blocks.size(); ++b) {
        // Owner of every output row, then every boundary moved one row either way.
        std::vector<int> own(size_t(g.shape_of(p.blocks[b].last - 1).h), -1);
        for (size_t d = 0; d < p.blocks[b].zones.size(); ++d)
          for (const RowRange& z : p.blocks[b].zones[d])
            for (int y = z.begin; y < z.end; ++y) own[size_t(y)] = int(d);
        for (size_t y = 1; y < own.size(); ++y) {
          if (own[y] == own[y - 1]) continue;
          for (size_t moved : {y - 1, y}) {  // row y-1 to y's owner, or row y to y-1's
            std::vector<int> o = own;
            o[moved] = moved == y ? own[y - 1] : own[y];
            Plan q = p;
            for (auto& dz : q.blocks[b].zones) dz.clear();
            for (size_t r = 0; r < o.size(); ++r) {
              auto& dz = q.blocks[b].zones[size_t(o[r])];
              if (!dz.empty() && dz.back().end == int(r))
                ++dz.back().end;
              else
                dz.push_back({int(r), int(r) + 1});
            }
            simulate(g, c, q);
            CHECK(q.predicted_ms >= p.predicted_ms - 1e-9);
            ++moves;
          }
        }
      }
      for (size_t j = 0; j < p.tail_slices.size(); ++j)
        for (size_t d = 0; d + 1 < p.tail_slices[j].size(); ++d)
          for (int step : {64, -64}) {
            Plan q = p;
            ChannelSlice &a = q.tail_slices[j][d], &b = q.tail_slices[j][d + 1];
            if (a.empty() || b.empty() || a.end + step <= a.begin || a.end + step >= b.end)
              continue;
            a.end = b.begin = a.end + step;
            simulate(g, c, q);
            CHECK(q.predicted_ms >= p.predicted_ms - 1e-9);
            ++moves;
          }
    }
  CHECK(moves > 50);
}

TEST_CASE("planner: a profile calibrated to a whole-model time keeps its layers' proportions") {
  const Graph& g = vgg16_64();
  const DeviceProfile p = estimate_profile(g, "d", 10);
  DeviceProfile q = p;
  calibrate(q, g, 3 * p.full_ms(g));
  CHECK(q.full_ms(g) == doctest::Approx(3 * p.full_ms(g)));
  for (int n = 0; n < g.size(); ++n) {
    CHECK(q.layers[size_t(n)].fixed_ms == doctest::Approx(3 * p.layers[size_t(n)].fixed_ms));
    CHECK(q.layers[size_t(n)].per_row_ms == doctest::Approx(3 * p.layers[size_t(n)].per_row_ms));
  }
  // Nothing to scale by: unchanged.
  DeviceProfile r = p;
  calibrate(r, g, 0);
  CHECK(r.full_ms(g) == doctest::Approx(p.full_ms(g)));
}

namespace {
// A layer that passes its input through and logs every band it computes: (its id, rows).
class LoggedCopy final : public Layer {
 public:
  LoggedCopy(int id, std::vector<std::pair<int, int>>* log) : id_(id), log_(log) {}
  std::string type() const override { return "logged_copy"; }
  Shape configure(const std::vector<Shape>& in) override {
    in_shapes_ = in;
    return out_shape_ = in.at(0);
  }
  RowRange input_rows(RowRange out, int) const override { return out; }
  double flops(RowRange out) const override { return out.size(); }
  void forward(const std::vector<const Band*>& in, Band& out) const override {
    log_->push_back({id_, out.rows().size()});
    for (int y = out.rows().begin; y < out.rows().end; ++y)
      std::memcpy(out.row(y), in[0]->row(y), size_t(out_shape_.row_size()) * sizeof(float));
  }

 private:
  int id_;
  std::vector<std::pair<int, int>>* log_;
};
}  // namespace

TEST_CASE("planner: a profile times its layers in rounds, not each layer's repetitions together") {
  // The machine's speed changes from second to second: each layer must sample every phase, or
  // the plan's proportions move with the phase a layer happened to be timed in.
  std::vector<std::pair<int, int>> log;
  Graph g;
  g.model = "logged";
  g.input = {8, 3, 2};
  for (int i = 0; i < 3; ++i) g.add("copy" + std::to_string(i), std::make_unique<LoggedCopy>(i, &log));
  g.finalize();
  log.clear();
  const int reps = 3;
  const DeviceProfile p = measure_profile(g, "here", reps);
  REQUIRE(p.layers.size() == 3);
  // The thin bands (1 row) come layer after layer, round after round; no layer is timed twice
  // in a row at one height. Whole maps: a timing per round, a whole inference per round, and
  // the pass that counts non-zero outputs.
  std::vector<int> thin;
  std::map<std::pair<int, int>, int> timings;
  for (size_t i = 0; i < log.size(); ++i) {
    ++timings[log[i]];
    if (log[i].second == 1) thin.push_back(log[i].first);
    if (i > 0) CHECK(log[i] != log[i - 1]);
  }
  std::vector<int> rounds;
  for (int r = 0; r < reps + 1; ++r)
    for (int id = 0; id < 3; ++id) rounds.push_back(id);
  CHECK(thin == rounds);
  for (int id = 0; id < 3; ++id) CHECK(timings[{id, 8}] == 2 * (reps + 1) + 1);
}

TEST_CASE("planner: a lazy host's profile loads each layer it lacks for its turn and releases it") {
  // A host holding nothing yet (as `cluster` and `infer` profile before planning): every conv
  // layer is loaded, timed and released in each round, the FC layers streamed in slices.
  Graph lazy = models::build_synthetic("vgg16:32", 2022, models::Hold::lazy);
  const size_t held = lazy.weight_bytes();
  const DeviceProfile p = measure_profile(lazy, "host", 1);
  CHECK(lazy.weight_bytes() == held);  // nothing left behind
  for (int n = 0; n < lazy.size(); ++n) {
    const Layer& l = *lazy.node(n).layer;
    if (!l.loads_lazily()) continue;
    CAPTURE(n);
    CHECK(p.layers[size_t(n)].fixed_ms + p.layers[size_t(n)].per_row_ms > 0);
  }
}

namespace {
// Rows of every block a device computes, over the whole plan.
std::vector<int> rows_per_device(const Plan& p) {
  std::vector<int> rows(size_t(p.devices), 0);
  for (const BlockPlan& b : p.blocks)
    for (size_t d = 0; d < rows.size(); ++d)
      for (const RowRange& z : b.zones[d]) rows[d] += z.size();
  return rows;
}
}  // namespace

TEST_CASE("planner: per-worker links: parsed, simulated per link, and a slow link gets less") {
  const std::vector<LinkModel> l = parse_link_list("1gbit,0.2ms/50mbit,2ms");
  REQUIRE(l.size() == 2);
  CHECK(l[1].bits_per_s == doctest::Approx(50e6));
  CHECK(l[1].latency_s == doctest::Approx(2e-3));
  CHECK(parse_link_list(link_list_str(l)).size() == 2);
  CHECK_THROWS_AS(parse_link_list("1gbit,0.2ms/"), std::invalid_argument);
  Cluster c3 = homogeneous(vgg16_64(), 3, "1gbit,0.2ms", 20);
  CHECK_THROWS_WITH_AS(c3.set_worker_links(parse_link_list("1gbit/1gbit/1gbit"), 2),
                       doctest::Contains("one per worker (2)"), std::invalid_argument);
  c3.set_worker_links(l, 2);
  CHECK(c3.link.bits_per_s == doctest::Approx(50e6));  // the slowest, for single-link estimates
  CHECK(c3.link_of(0, 2).bits_per_s == doctest::Approx(50e6));
  CHECK(c3.link_of(1, 0).bits_per_s == doctest::Approx(1e9));

  // The same plan, simulated with one link slowed: only that link's transfers take longer.
  const Graph& g = vgg16_64();
  // Slow devices (2 GFLOP/s, a Pi-class core): every worker pays off on this small model.
  Cluster even = homogeneous(g, 4, "1gbit,0.2ms", 2);
  Plan p = make_plan(g, even, Scheme::halp);
  REQUIRE(p.link_bytes[3] > 0);
  Cluster uneven = even;
  uneven.set_worker_links(parse_link_list("1gbit,0.2ms/1gbit,0.2ms/50mbit,0.2ms"), 3);
  Plan q = p;
  simulate(g, uneven, q);
  CHECK(q.predicted_ms > p.predicted_ms);
  auto send_ms = [](const Plan& x, int dev) {
    double ms = 0;
    for (const Event& e : x.timeline)
      if (e.what == "send" && (e.device == dev || e.peer == dev) && e.image == 0)
        ms += e.end_ms - e.start_ms;
    return ms;
  };
  CHECK(send_ms(q, 1) == doctest::Approx(send_ms(p, 1)));
  CHECK(send_ms(q, 3) == doctest::Approx(send_ms(p, 3) * 20).epsilon(0.01));

  // Planned for the uneven links: the worker on the slow link gets fewer rows than the others
  // (or none), and the plan is faster than the even plan on those links.
  for (Scheme s : {Scheme::dpfp, Scheme::halp}) {
    CAPTURE(std::string(scheme_name(s)));
    const Plan r = make_plan(g, uneven, s);
    check_plan_structure(g, r);
    const std::vector<int> rows = rows_per_device(r);
    CHECK(rows[3] < rows[1]);
    CHECK(rows[3] < rows[2]);
    CHECK(r.predicted_ms < q.predicted_ms);
  }
}

TEST_CASE("planner: one device 2x slower and one link at 50 Mbit/s: both get less than the others") {
  const Graph& g = vgg16_64();
  Cluster c = homogeneous(g, 5, "1gbit,0.2ms", 2);
  c.devices[2] = estimate_profile(g, "half-speed", 1);
  c.set_worker_links(parse_link_list("1gbit,0.2ms/1gbit,0.2ms/1gbit,0.2ms/50mbit,0.2ms"), 4);
  for (Scheme s : {Scheme::dpfp, Scheme::halp}) {
    CAPTURE(std::string(scheme_name(s)));
    const Plan p = make_plan(g, c, s);
    check_plan_structure(g, p);
    const std::vector<int> rows = rows_per_device(p);
    CAPTURE(rows[1]);
    CAPTURE(rows[2]);
    CAPTURE(rows[3]);
    CAPTURE(rows[4]);
    CHECK(rows[2] < rows[1]);
    CHECK(rows[2] < rows[3]);
    CHECK(rows[4] < rows[1]);
    CHECK(rows[4] < rows[3]);
  }
}

TEST_CASE("planner: a frame's data path (encode, checksum or encryption, decode) is charged in line") {
  const Graph& g = vgg16_64();
  const Cluster c = homogeneous(g, 3, "1gbit,0.2ms", 2);
  const Plan p = make_plan(g, c, Scheme::halp);
  REQUIRE(p.bytes > 0);
  for (bool encrypted : {false, true}) {
    CAPTURE(encrypted);
    Cluster costly = c;
    costly.encrypted = encrypted;
    for (DeviceProfile& d : costly.devices) d.data_path = {1.0, 2.0, 0.5, 3.0};
    Plan q = p;
    simulate(g, costly, q);
    CHECK(q.predicted_ms > p.predicted_ms);
    // Every send holds the wire for the sender's checksum or encryption too.
    REQUIRE(q.timeline.size() == p.timeline.size());
    int sends = 0;
    for (size_t i = 0; i < q.timeline.size(); ++i) {
      const Event &a = p.timeline[i], &b = q.timeline[i];
      if (a.what != "send") continue;
      ++sends;
      const double seal_ms = double(a.bytes) * 1e-6 * (encrypted ? 3.0 : 0.5);
      CHECK((b.end_ms - b.start_ms) - (a.end_ms - a.start_ms) == doctest::Approx(seal_ms).epsilon(1e-6));
    }
    CHECK(sends > 0);
  }
  // Saved and read back; an older profile without it reads as zero (not charged).
  DeviceProfile d = c.devices[0];
  d.data_path = {1.5, 2.5, 0.25, 3.5};
  const DeviceProfile back = DeviceProfile::from_json(d.to_json());
  CHECK(back.data_path.encode_ns == 1.5);
  CHECK(back.data_path.decode_ns == 2.5);
  CHECK(back.data_path.checksum_ns == 0.25);
  CHECK(back.data_path.aead_ns == 3.5);
  CHECK(DeviceProfile::from_json(c.devices[0].to_json()).data_path.decode_ns == 0);
  Json bad = d.to_json();
  Json dp = bad.at("data_path");
  dp["aead_ns_per_byte"] = -1.0;
  bad["data_path"] = dp;
  CHECK_THROWS_WITH_AS(DeviceProfile::from_json(bad), doctest::Contains("aead_ns_per_byte"),
                       std::runtime_error);
}

TEST_CASE("planner: every board is kept within its memory, or the plan is refused naming it") {
  CHECK(parse_memory_mb("900M") == 900);
  CHECK(parse_memory_mb("1G") == 1024);
  CHECK(parse_memory_mb("512MiB") == 512);
  CHECK(parse_memory_mb("2048K") == 2);
  CHECK(parse_memory_mb("0") == 0);
  for (const char* bad : {"abc", "-1M", "12 parsecs", "", "1T"})
    CHECK_THROWS_WITH_AS(parse_memory_mb(bad), doctest::Contains("bad memory size"), std::invalid_argument);
  const Graph& g = vgg16_64();
  Cluster c = homogeneous(g, 3, "1gbit,0.2ms", 2);
  CHECK_THROWS_WITH_AS(c.set_memory("1G,1G"), doctest::Contains("one per device (3)"),
                       std::invalid_argument);
  for (Scheme s : {Scheme::dpfp, Scheme::halp}) {
    CAPTURE(std::string(scheme_name(s)));
    const Plan free_plan = make_plan(g, c, s);
    const std::vector<DeviceMemory> need = predict_memory(g, c, free_plan);
    REQUIRE(need[2].total_mb > kBaseMb + 1);
    // Worker 2 gets less memory than its unconstrained share needs: the plan changes so that
    // it fits (fewer layers on it, or none), and is no faster than the free one.
    Cluster tight = c;
    tight.devices[2].memory_mb = kBaseMb + (need[2].total_mb - kBaseMb) * 0.5;
    const Plan p = make_plan(g, tight, s);
    check_plan_structure(g, p);
    CHECK(memory_shortfall(g, tight, p).device == -1);
    CHECK(predict_memory(g, tight, p)[2].total_mb <= tight.devices[2].memory_mb);
    CHECK(p.predicted_ms >= free_plan.predicted_ms - 1e-9);
  }
  // The host holds at least the rest of the tail: with too little, every plan is refused in one line.
  Cluster small_host = c;
  small_host.set_memory("10M,0,0");
  CHECK_THROWS_WITH_AS(make_plan(g, small_host, Scheme::halp),
                       doctest::Contains("device 0 (dev0) would need"), std::invalid_argument);
}

TEST_CASE("planner: the host is charged its own board's cache sweep, not the planning machine's") {
  const Graph& g = vgg16_64();
  Cluster c = homogeneous(g, 3, "1gbit,0.2ms", 2);
  const double here_mb = double(kernels::cache_sweep_bytes()) / 1048576.0;
  REQUIRE(here_mb >= 2);
  // A profile that recorded no sweep (an older one, an estimate): this machine's, as before.
  REQUIRE(c.devices[0].sweep_mb == 0);
  CHECK(host_sweep_mb(c) == here_mb);
  // A board whose sweep differs from this machine's (a Pi 4's is 2 MB; a profile measured here
  // records this machine's: "... block outputs after ReLU ..." checks it) keeps it through JSON.
  const double board_mb = here_mb > 4 ? 2 : here_mb + 8;
  DeviceProfile pi = c.devices[0];
  pi.sweep_mb = board_mb;
  const DeviceProfile back = DeviceProfile::from_json(Json::parse(pi.to_json().dump()));
  CHECK(back.sweep_mb == board_mb);
  const Plan p = make_plan(g, c, Scheme::halp);
  const std::vector<DeviceMemory> server = predict_memory(g, c, p);
  Cluster on_board = c;
  on_board.devices[0] = back;
  CHECK(host_sweep_mb(on_board) == board_mb);
  const std::vector<DeviceMemory> board = predict_memory(g, on_board, p);
  CHECK(board[0].total_mb == doctest::Approx(server[0].total_mb - (here_mb - board_mb)));
  CHECK(board[1].total_mb == server[1].total_mb);  // workers hold no sweep
  // A host budget between the two fits the smaller sweep only.
  const bool board_smaller = board_mb < here_mb;
  const double budget = std::min(board[0].total_mb, server[0].total_mb) + 1;
  on_board.devices[0].memory_mb = budget;
  c.devices[0].memory_mb = budget;
  CHECK(memory_shortfall(g, on_board, p).device == (board_smaller ? -1 : 0));
  CHECK(memory_shortfall(g, c, p).device == (board_smaller ? 0 : -1));
  Json bad = pi.to_json();
  bad["sweep_mb"] = 4096.0;
  CHECK_THROWS_WITH_AS(DeviceProfile::from_json(bad), doctest::Contains("sweep_mb"), std::runtime_error);
}

TEST_CASE("planner: a board short of memory by part of its FC slice keeps its rows and gives up channels") {
  const Graph& g = vgg16_64();
  const Cluster c = homogeneous(g, 3, "1gbit,0.2ms", 2);
  const Plan free_plan = make_plan(g, c, Scheme::halp);
  REQUIRE(free_plan.split_tail > 0);
  double tail_mb = 0;
  int channels = 0;
  for (int j = 0; j < free_plan.split_tail; ++j) {
    const ChannelSlice sl = free_plan.tail_slices[size_t(j)][2];
    channels += sl.size();
    if (!sl.empty()) tail_mb += double(g.node(free_plan.tail_first + j).layer->packed_bytes({sl.begin, sl.end})) / 1048576.0;
  }
  REQUIRE(tail_mb > 1);
  Cluster tight = c;
  tight.devices[2].memory_mb = predict_memory(g, c, free_plan)[2].total_mb - tail_mb / 2;
  const Plan p = make_plan(g, tight, Scheme::halp);
  check_plan_structure(g, p);
  CHECK(memory_shortfall(g, tight, p).device == -1);
  bool rows = false;  // not left idle: the channels moved, the rows stayed
  for (const BlockPlan& b : p.blocks) rows = rows || !b.zones[2].empty();
  CHECK(rows);
  int now = 0;
  for (int j = 0; j < p.split_tail; ++j) now += p.tail_slices[size_t(j)][2].size();
  CHECK(now < channels);
}

TEST_CASE("planner: the host holds its share, and FC channels a board gives up go where there is room") {
  const Graph& g = vgg16_64();
  const Cluster c = homogeneous(g, 3, "1gbit,0.2ms", 2);
  const Plan free_plan = make_plan(g, c, Scheme::halp);
  REQUIRE(free_plan.split_tail > 0);
  const std::vector<DeviceMemory> need = predict_memory(g, c, free_plan);
  // Not the whole model: the workers' FC slices are theirs alone.
  double all_mb = 0, workers_fc_mb = 0;
  for (int n = 0; n < g.size(); ++n) all_mb += double(g.node(n).layer->packed_bytes()) / 1048576.0;
  for (int j = 0; j < free_plan.split_tail; ++j)
    for (int d = 1; d < 3; ++d) {
      const ChannelSlice sl = free_plan.tail_slices[size_t(j)][size_t(d)];
      if (!sl.empty()) workers_fc_mb += double(g.node(free_plan.tail_first + j).layer->packed_bytes({sl.begin, sl.end})) / 1048576.0;
    }
  REQUIRE(workers_fc_mb > 1);
  CHECK(need[0].weights_mb < all_mb - 0.9 * workers_fc_mb);
  // Worker 2 short by part of its slice, the host with no room to spare: worker 1 takes them.
  Cluster tight = c;
  tight.devices[0].memory_mb = need[0].total_mb + 0.5;
  tight.devices[2].memory_mb = need[2].total_mb - 2;
  const Plan p = make_plan(g, tight, Scheme::halp);
  check_plan_structure(g, p);
  CHECK(memory_shortfall(g, tight, p).device == -1);
  int before[3] = {0, 0, 0}, after[3] = {0, 0, 0};
  for (int j = 0; j < p.split_tail; ++j)
    for (size_t d = 0; d < 3; ++d) {
      before[d] += free_plan.tail_slices[size_t(j)][d].size();
      after[d] += p.tail_slices[size_t(j)][d].size();
    }
  CHECK(after[2] < before[2]);
  CHECK(after[1] > before[1]);
  CHECK(after[0] <= before[0]);
}

TEST_CASE("memory: a host's lazy graph holds one plan's share, not the union of the plans it ran") {
  Graph lazy = models::build_synthetic("vgg16:64", 2022, models::Hold::lazy);
  const Cluster c = homogeneous(lazy, 3, "1gbit,0.2ms", 2);
  const Plan modnn = make_plan(lazy, c, Scheme::modnn), halp = make_plan(lazy, c, Scheme::halp);
  Graph fresh = models::build_synthetic("vgg16:64", 2022, models::Hold::lazy);
  load_for_plan(fresh, modnn, 0);
  const size_t modnn_bytes = fresh.weight_bytes();
  load_for_plan(lazy, modnn, 0);
  release_outside_plan(lazy, modnn, halp, 0);  // as HostRuntime does before a new plan
  load_for_plan(lazy, halp, 0);
  Graph only_halp = models::build_synthetic("vgg16:64", 2022, models::Hold::lazy);
  load_for_plan(only_halp, halp, 0);
  REQUIRE(only_halp.weight_bytes() != modnn_bytes);  // the two plans give the host different shares
  CHECK(lazy.weight_bytes() == only_halp.weight_bytes());
  std::mt19937 rng(3);
  const Tensor in = ref::random_tensor(lazy.input, rng);
  const Tensor want = models::build_synthetic("vgg16:64").forward(in);
  const Tensor got = lazy.forward(in);  // streams what the share lacks
  CHECK(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0);
}

TEST_CASE("planner: a device that would slow the plan down is left idle and sent nothing") {
  const Graph& g = vgg16_64();
  int idle_seen = 0;
  for (Scheme s : {Scheme::dpfp, Scheme::halp}) {
    double prev = std::numeric_limits<double>::infinity();
    for (int n = 2; n <= 5; ++n) {
      CAPTURE(scheme_name(s));
      CAPTURE(n);
      const Cluster c = homogeneous(g, n, "1gbit,0.2ms", 20);
      const Plan p = make_plan(g, c, s);
      check_plan_structure(g, p);
      // One more device never predicts slower: at worst it is left idle.
      CHECK(p.predicted_ms <= prev + 1e-9);
      prev = p.predicted_ms;
      for (int d = 1; d < p.devices; ++d) {
        bool works = false;
        for (const BlockPlan& bp : p.blocks) works = works || !bp.zones[size_t(d)].empty();
        for (const auto& sl : p.tail_slices) works = works || !sl[size_t(d)].empty();
        if (!works) {
          ++idle_seen;
          CHECK(p.link_bytes[size_t(d)] == 0);
          for (const Transfer& t : p.transfers) CHECK(t.dst != d);
        }
      }
    }
  }
  CHECK(idle_seen > 0);
}

TEST_CASE("planner: frames are sized as the wire encodes them (zeros elided by the measured share)") {
  const Graph g = models::build_synthetic("vgg16:32");
  Cluster c = homogeneous(g, 3, "100mbit,2ms");
  const Plan dense = make_plan(g, c, Scheme::modnn);
  // Half of every layer's outputs zero: fp32 frames carry a bitmap and the non-zero values.
  for (DeviceProfile& d : c.devices)
    for (LayerCost& l : d.layers) l.nonzero = 0.5;
  Plan sparse = dense;
  simulate(g, c, sparse);
  REQUIRE(sparse.transfers.size() == dense.transfers.size());
  for (size_t k = 0; k < dense.transfers.size(); ++k) {
    const Transfer& t = sparse.transfers[k];
    const uint64_t values = uint64_t(t.rows.size()) * g.shape_of(t.node).row_size();
    CAPTURE(t.node);
    CHECK(dense.transfers[k].bytes == values * 4);
    // The input image has no measured share (all values count, and no palettes: the cluster
    // was not told its images' levels, Cluster::input_levels); rows after ReLU do.
    CHECK(t.bytes == (t.node < 0 ? values * 4 : (values + 63) / 64 * 8 + values * 2));
  }
  CHECK(sparse.predicted_ms < dense.predicted_ms);
  // fp16 frames are never elided.
  c.bytes_per_value = 2;
  Plan half = dense;
  simulate(g, c, half);
  for (const Transfer& t : half.transfers)
    CHECK(t.bytes == uint64_t(t.rows.size()) * g.shape_of(t.node).row_size() * 2);
  // Measured: block outputs after ReLU have zeros; the share survives the profile's JSON.
  const size_t evicted = kernels::evicted_bytes(), sweeps = kernels::sweep_count();
  const DeviceProfile m = measure_profile(g, "here", 1);
  CHECK(m.sweep_mb == double(kernels::cache_sweep_bytes()) / 1048576.0);  // what a host holds
  // Every layer was timed with its weights in memory, not in this host's caches, as in an
  // inference: twice at least (reps 1, each timing after a warm-up) with every byte dropped.
  size_t weights = 0;
  for (int n = 0; n < g.size(); ++n) weights += g.node(n).layer->packed_bytes();
  CHECK(weights > 0);
  CHECK(kernels::evicted_bytes() - evicted >= 2 * weights);
  // ...and the caches swept after the drop (kernels/cache.h: clflush alone left ranges cached).
  size_t with_weights = 0;
  for (int n = 0; n < g.size(); ++n) with_weights += g.node(n).layer->packed_bytes() > 0;
  CHECK(with_weights > 2);
  CHECK(kernels::sweep_count() - sweeps >= 2 * with_weights);
  double least = 1;
  for (const LayerCost& l : m.layers) least = std::min(least, l.nonzero);
  CHECK(least < 0.9);
  const DeviceProfile back = DeviceProfile::from_json(m.to_json());
  for (size_t i = 0; i < m.layers.size(); ++i) CHECK(back.layers[i].nonzero == doctest::Approx(m.layers[i].nonzero));
  DeviceProfile one;
  one.name = "x", one.model = g.model, one.layers = {LayerCost{1, 0}};
  std::string bad = one.to_json().dump();  // no "nonzero" key: the default, 1
  bad.replace(bad.find("\"per_row_ms\""), 0, "\"nonzero\":1.5,");
  CHECK_THROWS_AS(DeviceProfile::from_json(Json::parse(bad)), std::runtime_error);
}

TEST_CASE("planner simulate: the host relays rows as they arrive, not in plan order") {
  // MoDNN on three devices over a slow link: device 2's halo comes from device 1's rows. It
  // must leave the host once those are in, not queue behind device 1's halo, which waits for
  // device 2's own (later) gather; the runtime sends it then (2.1 s predicted for VGG-16 at
  // 100 Mbit/s against 2.1 s measured; 2.5 s when relays went in plan order).
  const Graph g = models::build_synthetic("vgg16:64");
  // Zones at the speed shares (make_plan may snap them to Winograd tiles, and at 64x64 that
  // leaves device 2 no halo from device 1 in block 1).
  const Plan p = detail::plan_modnn(g, homogeneous(g, 3, "100mbit,2ms"), 1);
  double gather_from_2 = 0, send_to_2 = 0;
  for (const Event& e : p.timeline) {
    if (e.image != 0 || e.block != 1 || e.device != 0 || e.peer != 2) continue;
    if (e.what == "recv") gather_from_2 = e.end_ms;
    if (e.what == "send") send_to_2 = e.start_ms;
  }
  REQUIRE(gather_from_2 > 0);
  REQUIRE(send_to_2 > 0);
  CHECK(send_to_2 < gather_from_2);
}

// The image of a batch plan that is pipelined (split, its last block on one worker), or -1.
int pipelined_image(const Graph& g, const Plan& p) {
  for (size_t i = 0; i < p.image_plans.size(); ++i)
    if (p.image_plans[i].sole_device() < 0 && finishing_worker(g, p.image_plans[i]) > 0) return int(i);
  return -1;
}

// [first start, last end] of device d's compute of image i's blocks in a plan's predicted
// timeline (not of its tail, which the host computes last).
std::pair<double, double> compute_span(const Plan& p, int d, int i) {
  std::pair<double, double> s{1e300, -1e300};
  for (const Event& e : p.timeline)
    if (e.device == d && e.image == i && e.what == "compute" && e.block < int(p.blocks.size()))
      s = {std::min(s.first, e.start_ms), std::max(s.second, e.end_ms)};
  return s;
}

TEST_CASE("planner: a batch's one leftover image is pipelined: early zones first, then the deep layers whole on a worker") {
  const Graph& g = vgg16_64();
  const Cluster c = homogeneous(g, 3, "1gbit,0.2ms", 2);
  const Plan p = make_plan(g, c, Scheme::halp, 4);
  REQUIRE(p.image_plans.size() == 4);
  CHECK(p.image_plans_match());
  const int pipe = pipelined_image(g, p);
  REQUIRE(pipe >= 0);
  const Plan& v = p.for_image(size_t(pipe));
  const int deep = finishing_worker(g, v);
  REQUIRE(deep > 0);
  // Blocks before the cut: the others' zones, each row once; from the cut: every row on `deep`,
  // and the FC layers too (it keeps their input: the host gathers nothing).
  size_t cut = 0;
  while (cut < v.blocks.size() && v.blocks[cut].zones[size_t(deep)].empty()) ++cut;
  REQUIRE(cut > 0);
  REQUIRE(cut < v.blocks.size());
  for (size_t b = 0; b < v.blocks.size(); ++b) {
    std::vector<int> count(size_t(g.shape_of(v.blocks[b].last - 1).h), 0);
    for (size_t d = 0; d < v.blocks[b].zones.size(); ++d) {
      if (b >= cut && int(d) != deep) CHECK(v.blocks[b].zones[d].empty());
      for (const RowRange& z : v.blocks[b].zones[d])
        for (int y = z.begin; y < z.end; ++y) ++count[size_t(y)];
    }
    for (int n : count) CHECK(n == 1);
  }
  CHECK(holds_whole_slice(g, v, 0, deep));
  CHECK_FALSE(host_gathers_tail_input(g, v));
  // Listed after the deep device's whole image and before the others': the order in which
  // their frames reach each device, which computes them in that order.
  for (int i = 0; i < 4; ++i) {
    if (i == pipe) continue;
    const int w = p.for_image(size_t(i)).sole_device();
    REQUIRE(w >= 0);
    CHECK((i < pipe) == (w == deep));
  }
  // The predicted timeline: the early devices compute their zones of it before their whole
  // images, the deep device after its own; the early halos are not held behind a whole image's
  // result simulated before them (the simulator's gaps).
  int deep_whole = 0;
  while (p.for_image(size_t(deep_whole)).sole_device() != deep) ++deep_whole;
  for (int i = 0; i < 4; ++i) {
    if (i == pipe) continue;
    const int w = p.for_image(size_t(i)).sole_device();
    const auto mine = compute_span(p, w, pipe), whole = compute_span(p, w, i);
    if (w == deep) {
      CHECK(mine.first >= whole.second - 1e-9);
    } else {
      CHECK(mine.second <= whole.first + 1e-9);
      CHECK(mine.second < compute_span(p, deep, deep_whole).second);
    }
  }
  // Faster than the shape it replaces: three whole images and the fourth split by the
  // single-image plan.
  const Plan one = make_plan(g, c, Scheme::halp, 1);
  Plan split = p;
  split.image_plans.clear();
  for (int d = 0; d < 3; ++d) split.image_plans.push_back(whole_image_plan(g, one, d));
  split.image_plans.push_back(one);
  split.blocks = one.blocks;
  simulate(g, c, split);
  CHECK(p.predicted_ms < split.predicted_ms);
  // Another count left over (two for five images): whole images, the rest split.
  const Plan five = make_plan(g, c, Scheme::halp, 5);
  CHECK(pipelined_image(g, five) == -1);
}

TEST_CASE("planner: a batch with an image per device runs images whole, where that is faster and fits") {
  const Graph& g = vgg16_64();
  const Cluster c = homogeneous(g, 3, "1gbit,0.2ms", 2);
  const Plan one = make_plan(g, c, Scheme::halp, 1);
  REQUIRE(one.devices == 3);
  // Five images: three whole, the host's first (it sends the others theirs, then computes), and
  // two split (one left over is pipelined: the test above): each device computes a whole image,
  // with no halos and no recomputed rows.
  const Plan p = make_plan(g, c, Scheme::halp, 5);
  REQUIRE(p.image_plans.size() == 5);
  for (int i = 0; i < 3; ++i) {
    const Plan& w = p.for_image(size_t(i));
    CHECK(w.sole_device() == i);
    CHECK(w.split_tail == splittable_tail(g));  // its FC layers too
    for (const Transfer& t : w.transfers) {
      CHECK((t.src == i || t.dst == i));
      // A worker keeps its last block's output for the FC layers it computes: not gathered.
      if (i > 0) CHECK(t.node != w.blocks.back().last - 1);
    }
  }
  for (size_t i : {3, 4}) {
    CHECK(p.for_image(i).sole_device() == -1);
    CHECK(finishing_worker(g, p.for_image(i)) == 0);
    check_plan_structure(g, p.for_image(i));
  }
  // The host waits longer for a worker's whole image (it sends nothing until done), and for the
  // split one, whose rows wait at each worker behind its whole image: the batch's predicted
  // span; not for its own image, nor where no image runs whole (rows come block by block).
  CHECK(p.whole_image_silence_ms(1) == p.predicted_ms);
  CHECK(p.whole_image_silence_ms(2) == p.predicted_ms);
  CHECK(p.whole_image_silence_ms(3) == p.predicted_ms);
  CHECK(p.whole_image_silence_ms(4) == p.predicted_ms);
  CHECK(p.whole_image_silence_ms(0) == 0);
  CHECK(one.whole_image_silence_ms(0) == 0);
  Plan alone = one;  // a single image run on one worker: it too is silent until its result
  alone.blocks = whole_image_plan(g, one, 1).blocks;
  CHECK(alone.whole_image_silence_ms(0) == alone.predicted_ms);
  // The host computes its share of the split image before it takes the workers' results: in the
  // predicted timeline its first compute for image 3 starts before image 1's result reaches it.
  double split_start = 1e18, result_1 = 0;
  for (const Event& e : p.timeline) {
    if (e.device == 0 && e.what == "compute" && e.image == 3) split_start = std::min(split_start, e.start_ms);
    if (e.device == 0 && e.what == "recv" && e.image == 1) result_1 = std::max(result_1, e.end_ms);
  }
  REQUIRE(result_1 > 0);
  CHECK(split_start < result_1);
  // Faster than the same images split: four single-image plans back to back bound that.
  CHECK(p.predicted_ms < 5 * one.predicted_ms);
  // Too few images for every device: all split.
  CHECK(make_plan(g, c, Scheme::halp, 2).image_plans.empty());
  // A whole image needs the whole model on each board: with room for a split share only, the
  // planner keeps every image split.
  Cluster tight = c;
  const std::vector<DeviceMemory> need = predict_memory(g, c, p);
  for (auto& d : tight.devices) d.memory_mb = need[1].total_mb - 1;
  const Plan q = make_plan(g, tight, Scheme::halp, 5);
  CHECK(q.image_plans.empty());
  CHECK(memory_shortfall(g, tight, q).device == -1);
}
