#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "apps/svg.h"
#include "dist/plan/channel.h"
#include "dist/testbed/reliability.h"
#include "dist/plan/selection.h"
#include "dist/plan/profile.h"
#include "models/catalog.h"
#include "models/zoo.h"

using namespace eb;
using namespace eb::dist;

TEST_CASE("channel: trace files parse, step and repeat; garbage lines are clear errors") {
  const BandwidthTrace t = parse_trace("# t rate\n0 100\n0.5, 10\n\n1.0\t50  # comment\n");
  REQUIRE(t.mbit.size() == 3);
  CHECK(t.period_s == doctest::Approx(1.5));
  CHECK(t.rate_mbit_at(0.2) == 100);
  CHECK(t.rate_mbit_at(0.5) == 10);
  CHECK(t.rate_mbit_at(1.2) == 50);
  CHECK(t.rate_mbit_at(1.7) == 100);  // wraps around
  CHECK(t.mean_mbit() == doctest::Approx((100 * 0.5 + 10 * 0.5 + 50 * 0.5) / 1.5));
  auto error_of = [](const std::string& s) {
    try {
      parse_trace(s, "f.txt");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of("0 10\nhello world\n").find("f.txt:2: expected 'TIME_S RATE_MBIT'") !=
        std::string::npos);
  CHECK(error_of("0 10\n1 20 30\n").find("f.txt:2") != std::string::npos);
  CHECK(error_of("0 10\n1 -5\n").find("f.txt:2: rate") != std::string::npos);
  CHECK(error_of("0 10\n0 20\n").find("strictly increase") != std::string::npos);
  CHECK(error_of("1 10\n").find("start at 0") != std::string::npos);
  CHECK(error_of("# nothing\n").find("no samples") != std::string::npos);
  CHECK_THROWS_AS(load_trace("/nonexistent/trace.txt"), std::invalid_argument);
}

TEST_CASE("channel: generators") {
  const BandwidthTrace on = make_channel("markov:good=80,bad=2,p_gb=0,p_bg=1,step=0.1,duration=5");
  for (double r : on.mbit) CHECK(r == 80);  // never leaves the good state
  const BandwidthTrace flip =
      make_channel("markov:good=80,bad=2,p_gb=1,p_bg=0,step=0.1,duration=5");
  CHECK(flip.mbit[0] == 80);
  for (size_t i = 1; i < flip.mbit.size(); ++i) CHECK(flip.mbit[i] == 2);
  const BandwidthTrace ray = make_channel("rayleigh:mean=50,coherence=0.01,duration=200,seed=7");
  CHECK(ray.mbit.size() == 20000);
  // Rate = mean * log2(1 + snr |h|^2) / log2(1 + snr): by Jensen the average is a bit below mean.
  CHECK(ray.mean_mbit() > 35);
  CHECK(ray.mean_mbit() < 50);
  double lo = 1e9;
  for (double r : ray.mbit) lo = std::min(lo, r);
  CHECK(lo < 5);  // deep fades happen
  CHECK_THROWS_AS(make_channel("rayleigh:mean=-1"), std::invalid_argument);
  CHECK_THROWS_AS(make_channel("rayleigh:bogus=1"), std::invalid_argument);
  CHECK_THROWS_AS(make_channel("wifi:mean=3"), std::invalid_argument);
}

TEST_CASE("channel: the bandwidth estimator converges on a known rate") {
  BandwidthEstimator est(1e9);
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> jitter(0.9, 1.1);
  const double rate = 40e6;
  for (int i = 0; i < 40; ++i) {
    const uint64_t bytes = 50000 + uint64_t(i) * 1000;
    est.add(bytes, double(bytes) * 8 / rate * jitter(rng));
  }
  CHECK(est.bits_per_s() == doctest::Approx(rate).epsilon(0.1));
  est.add(100, 1e-6);  // tiny transfers are latency, not bandwidth: ignored
  CHECK(est.bits_per_s() == doctest::Approx(rate).epsilon(0.1));
  // After a rate change it follows within a few samples.
  for (int i = 0; i < 20; ++i) est.add(100000, 100000 * 8 / 5e6);
  CHECK(est.bits_per_s() == doctest::Approx(5e6).epsilon(0.01));
}

TEST_CASE("selection: the most accurate candidate predicted to meet the deadline") {
  const std::vector<Candidate> c{{"big", 70.9, 80, Scheme::halp},
                                 {"mid", 67.2, 45, Scheme::dpfp},
                                 {"small", 59.1, 20, Scheme::local},
                                 {"tiny", 41.5, 8, Scheme::local}};
  bool meets = false;
  CHECK(select_candidate(c, 100, &meets) == 0);
  CHECK(meets);
  CHECK(select_candidate(c, 80, &meets) == 0);
  CHECK(select_candidate(c, 79.9, &meets) == 1);
  CHECK(select_candidate(c, 30, &meets) == 2);
  CHECK(select_candidate(c, 5, &meets) == 3);  // none meets: the fastest
  CHECK(!meets);
  CHECK_THROWS(select_candidate({}, 10));
  CHECK(models::top1_accuracy("mobilenet_v1:0.5:160") == doctest::Approx(59.1));
  CHECK(models::top1_accuracy("mobilenet_v1") == doctest::Approx(70.9));
  CHECK(models::top1_accuracy("vgg16:64") < 0);
}

TEST_CASE("selection: the choice says why (the pick, and the more accurate one predicted late)") {
  const std::vector<Candidate> c{{"big", 70.9, 80, Scheme::halp},
                                 {"mid", 67.2, 45, Scheme::dpfp},
                                 {"small", 59.1, 20, Scheme::local}};
  Choice ch = choose(c, 50);
  CHECK(ch.index == 1);
  CHECK(ch.meets);
  CHECK(ch.reason ==
        "mid: 67.2% top-1, predicted 45.0 ms (dpfp) <= 50 ms deadline; the more accurate big "
        "predicted 80.0 ms (halp)");
  ch = choose(c, 100);
  CHECK(ch.index == 0);
  CHECK(ch.reason.find("the most accurate candidate") != std::string::npos);
  ch = choose(c, 10);  // none meets: the fastest, flagged
  CHECK(ch.index == 2);
  CHECK(!ch.meets);
  CHECK(ch.reason ==
        "no candidate is predicted to meet the 10 ms deadline: small predicted 20.0 ms (local) "
        "is the fastest, 59.1% top-1");
}

TEST_CASE("selection: select_model plans every candidate on the cluster and the link it is given") {
  // Two real graphs on two estimated (not measured) devices: the predictions are deterministic.
  const Graph small = models::load_model("mobilenet_v1:0.25:64", "");
  const Graph big = models::load_model("mobilenet_v1:0.5:128", "");
  auto option = [](const std::string& name, double top1, const Graph& g) {
    const DeviceProfile d = estimate_profile(g, "d", 2.0);
    return ModelOption{name, top1, &g, std::vector<DeviceProfile>(2, d)};
  };
  const std::vector<ModelOption> options{option("small", 40, small), option("big", 56, big)};
  Cluster shape;
  shape.link = parse_link("1gbit,0.2ms");
  const Predictions p = predict(options, shape);
  REQUIRE(p.candidates.size() == 2);
  Cluster c2 = shape;
  c2.devices = options[1].devices;
  CHECK(p.candidates[1].predicted_ms == doctest::Approx(best_plan(big, c2).predicted_ms));
  CHECK(p.plans[1].predicted_ms == p.candidates[1].predicted_ms);
  const double s_ms = p.candidates[0].predicted_ms, b_ms = p.candidates[1].predicted_ms;
  REQUIRE(s_ms < b_ms);
  Selection sel = select_model(options, shape, b_ms * 1.01);
  CHECK(sel.candidate.model == "big");
  CHECK(sel.choice.meets);
  CHECK(sel.plan.predicted_ms == doctest::Approx(b_ms));
  sel = select_model(options, shape, (s_ms + b_ms) / 2);
  CHECK(sel.candidate.model == "small");
  CHECK(sel.choice.reason.find("the more accurate big predicted") != std::string::npos);
  sel = select_model(options, shape, s_ms / 2);
  CHECK(sel.candidate.model == "small");
  CHECK(!sel.choice.meets);
  // A slower link (the live estimate falling) can only make the predictions longer.
  shape.link = parse_link("1mbit,0.2ms");
  CHECK(predict(options, shape).candidates[1].predicted_ms >= b_ms);
  CHECK_THROWS(predict({ModelOption{"none", 1, nullptr, {}}}, shape));
  // Memoised for a stream of requests: a rate within the same 10% step plans nothing new.
  PredictionMemo memo;
  shape.link = parse_link("100mbit,0.2ms");
  const double at_100 = memo.predict(options, shape).candidates[1].predicted_ms;
  shape.link.bits_per_s = 101e6;
  CHECK(memo.predict(options, shape).candidates[1].predicted_ms == at_100);
  CHECK(memo.plans_made() == 1);
  shape.link.bits_per_s = 10e6;
  CHECK(memo.predict(options, shape).candidates[1].predicted_ms >= at_100);
  CHECK(memo.plans_made() == 2);
  // An option's input levels are its own (predict ignores shape's) and part of the key.
  shape.input_levels = 200;
  CHECK(memo.predict(options, shape).candidates[1].predicted_ms >= at_100);
  CHECK(memo.plans_made() == 2);
  std::vector<ModelOption> eight_bit = options;
  eight_bit[1].input_levels = 200;
  memo.predict(eight_bit, shape);
  CHECK(memo.plans_made() == 3);
}

TEST_CASE("reliability: a deterministic log matches a hand computation") {
  // Three requests; fixed schemes A and B; two candidates.
  std::vector<RequestLog> log(3);
  log[0].scheme_ms = {10, 30};
  log[1].scheme_ms = {25, 15};
  log[2].scheme_ms = {50, 20};
  for (auto& q : log)
    q.candidates = {{"big", 70, 18, Scheme::halp}, {"small", 40, 5, Scheme::local}};
  log[0].candidate_ms = {17, 6};
  log[1].candidate_ms = {22, 4};  // big predicted 18, took 22
  log[2].candidate_ms = {19, 5};
  const auto rows = reliability_table(log, {"A", "B"}, 70, {20, 16});
  REQUIRE(rows.size() == 6);
  // Deadline 20: A meets 1 of 3, B 2 of 3; selection picks big (18 <= 20): met 17, 19 -> 2 of 3.
  CHECK(rows[0].scheme == "A");
  CHECK(rows[0].reliability == doctest::Approx(1.0 / 3));
  CHECK(rows[0].effective_accuracy == doctest::Approx(70.0 / 3));
  CHECK(rows[1].reliability == doctest::Approx(2.0 / 3));
  CHECK(rows[2].scheme == "halp+select");
  CHECK(rows[2].reliability == doctest::Approx(2.0 / 3));
  CHECK(rows[2].mean_accuracy == doctest::Approx(70));
  CHECK(rows[2].effective_accuracy == doctest::Approx(140.0 / 3));
  // Deadline 16: A 1/3, B 1/3; selection picks small (big predicted 18 > 16): all met, accuracy 40.
  CHECK(rows[3].reliability == doctest::Approx(1.0 / 3));
  CHECK(rows[4].reliability == doctest::Approx(1.0 / 3));
  CHECK(rows[5].reliability == doctest::Approx(1.0));
  CHECK(rows[5].mean_accuracy == doctest::Approx(40));
  CHECK(parse_range("20:50:10") == std::vector<double>{20, 30, 40, 50});
  CHECK_THROWS(parse_range("50:20:10"));
  CHECK_THROWS(parse_range("1:2"));
}

TEST_CASE("svg: one polyline per series, escaped text, bad input rejected") {
  PlotSpec spec;
  spec.title = "a < b & c";
  const std::string svg =
      svg_line_plot(spec, {{"one", {1, 2, 3}, {0.1, 0.5, 0.9}}, {"two", {1, 2}, {1, 0}}});
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  size_t lines = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1))
    ++lines;
  CHECK(lines == 2);
  CHECK(svg.find("a &lt; b &amp; c") != std::string::npos);
  CHECK_THROWS(svg_line_plot(spec, {{"bad", {1, 2}, {1}}}));
  CHECK_THROWS(svg_line_plot(spec, {}));
}
