#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "dist/testbed/boards.h"
#include "dist/testbed/dilation.h"
#include "core/layers/conv2d.h"
#include "core/layers/elementwise.h"
#include "core/layers/fully_connected.h"
#include "core/layers/global_avg_pool.h"
#include "core/layers/pool2d.h"
#include "models/zoo.h"
#include "tests/helpers.h"

using namespace eb;

namespace {

// Fused engine vs. the reference forward of the *unfused* graph (separate BN and activation
// nodes): checks kernels, BN folding and activation fusion together.
void check_model_against_reference(const std::string& name, float tol) {
  Graph unfused = models::build_unfused(models::parse_model_name(name));
  models::fill_synthetic(unfused);
  Graph fused = models::build_synthetic(name);
  for (int i = 0; i < fused.size(); ++i) {  // every BN and activation was folded away
    CHECK(fused.node(i).layer->type() != "batchnorm");
    CHECK(fused.node(i).layer->type() != "activation");
  }
  std::mt19937 rng(7);
  const Tensor in = ref::random_tensor(fused.input, rng);
  const Tensor want = ref::forward(unfused, in);
  const Tensor got = fused.forward(in);
  CAPTURE(name);
  REQUIRE(got.shape() == want.shape());
  CHECK(ref::max_abs_diff(got, want) <= tol);
  // Probabilities are a distribution and the synthetic net is not degenerate.
  double sum = 0;
  for (size_t i = 0; i < got.size(); ++i) sum += got.data()[i];
  CHECK(sum == doctest::Approx(1.0).epsilon(1e-4));
}

// Splits the spatial layers of g into the given blocks, computes each block's output segment per
// device from only the rows the receptive field requires, stitches, then runs the host tail.
Tensor run_split(const Graph& g, const Tensor& in, const std::vector<int>& cuts, int devices,
                 std::mt19937& rng) {
  Band cur{in, 0};
  int first = 0;
  for (int last : cuts) {
    const Shape s = g.shape_of(last - 1);
    Tensor stitched(s);
    // Random uneven segments covering every row once.
    std::vector<int> edges{0, s.h};
    for (int d = 1; d < devices; ++d) edges.push_back(std::uniform_int_distribution<int>(0, s.h)(rng));
    std::sort(edges.begin(), edges.end());
    for (size_t d = 0; d + 1 < edges.size(); ++d) {
      const RowRange seg{edges[d], edges[d + 1]};
      if (seg.empty()) continue;
      const RowRange need = g.block_needs(first, last, seg)[0];
      Band halo_band{cur.t.rows({need.begin - cur.row0, need.end - cur.row0}).clone(), need.begin};
      Band out = g.run_block(first, last, halo_band, seg);
      std::copy(out.t.data(), out.t.data() + out.t.size(), stitched.row(seg.begin));
    }
    cur = Band{stitched, 0};
    first = last;
  }
  if (first < g.size()) cur = g.run_block(first, g.size(), cur, {0, 1});
  return cur.t;
}

}  // namespace

TEST_CASE("VGG-16 (32x32) and MobileNet-V1 (several widths) match the reference network") {
  check_model_against_reference("vgg16:32", 1e-4f);
  check_model_against_reference("mobilenet_v1:0.25:128", 1e-4f);
  check_model_against_reference("mobilenet_v1:1.0:96", 1e-4f);
}

TEST_CASE("model names parse and reject nonsense") {
  CHECK(models::parse_model_name("mobilenet_v1").canonical() == "mobilenet_v1:1:224");
  CHECK(models::parse_model_name("mobilenet_v1:0.5:160").canonical() == "mobilenet_v1:0.5:160");
  CHECK(models::parse_model_name("vgg16").canonical() == "vgg16:224");
  CHECK_THROWS(models::parse_model_name("resnet50"));
  CHECK_THROWS(models::parse_model_name("mobilenet_v1:0.3"));
  CHECK_THROWS(models::parse_model_name("mobilenet_v1:1.0:100"));
  CHECK_THROWS(models::parse_model_name("vgg16:abc"));
  const Graph g = models::build_synthetic("mobilenet_v1:0.5:160");
  CHECK(g.output_shape() == Shape{1, 1, 1001});
  CHECK(g.shape_of(g.spatial_end() - 1) == Shape{5, 5, 512});
  const Graph v = models::build_synthetic("vgg16:64");
  CHECK(v.shape_of(v.spatial_end() - 1) == Shape{2, 2, 512});
}

TEST_CASE("band execution: 1..8 devices, uneven splits, 1-3 fused blocks equal the full image") {
  std::mt19937 rng(8);
  // vgg16:96: conv4 is 12x12, which runs Winograd F(2x2) (2-row tiles).
  for (const char* name : {"vgg16:64", "mobilenet_v1:0.5:128", "vgg16:96"}) {
    const Graph g = models::build_synthetic(name);
    int f23 = 0;
    for (int n = 0; n < g.size(); ++n) f23 += g.node(n).layer->row_granule() == 2;
    if (std::string(name) == "vgg16:96") REQUIRE(f23 == 3);
    const Tensor in = ref::random_tensor(g.input, rng);
    const Tensor full = g.forward(in);
    const int se = g.spatial_end();
    for (int devices = 1; devices <= 8; ++devices) {
      std::vector<int> cuts;
      const int nblocks = 1 + devices % 3;
      for (int b = 1; b < nblocks; ++b) cuts.push_back(se * b / nblocks);
      cuts.push_back(se);
      CAPTURE(name);
      CAPTURE(devices);
      CHECK(ref::bit_equal(run_split(g, in, cuts, devices, rng), full));
    }
  }
}

TEST_CASE("residual graph: Add of two branches runs banded and matches the reference") {
  std::mt19937 rng(9);
  Graph g;
  g.input = {21, 17, 8};
  auto conv = [&](long cin, long cout, long k, long s, Activation act) {
    Conv2DParams p;
    p.cin = cin;
    p.cout = cout;
    p.kh = p.kw = k;
    p.sh = p.sw = s;
    p.pad_t = p.pad_l = p.pad_b = p.pad_r = k / 2;
    p.act = act;
    return std::make_unique<Conv2D>(p);
  };
  const int stem = g.add("stem", conv(8, 16, 3, 1, Activation::relu), {-1});
  const int a = g.add("a1", conv(16, 16, 3, 1, Activation::relu), {stem});
  const int a2 = g.add("a2", conv(16, 16, 3, 1, Activation::none), {a});
  const int sum = g.add("add", std::make_unique<Add>(Activation::relu), {a2, stem});
  const int down = g.add("down", conv(16, 24, 3, 2, Activation::relu), {sum});
  const int skip = g.add("skip", conv(16, 24, 1, 2, Activation::none), {sum});
  const int sum2 = g.add("add2", std::make_unique<Add>(), {down, skip});
  g.add("relu", std::make_unique<ActivationLayer>(Activation::relu), {sum2});
  g.add("pool", std::make_unique<GlobalAvgPool>());
  g.add("fc", std::make_unique<FullyConnected>(24, 10));
  models::fill_synthetic(g, 5);
  g.finalize();
  CHECK(g.size() == 9);  // the standalone ReLU fused into add2
  CHECK(g.is_cut(1));
  CHECK_FALSE(g.is_cut(2));  // stem's output is still needed by "add"
  CHECK(g.is_cut(4));
  CHECK_FALSE(g.is_cut(5));
  const Tensor in = ref::random_tensor(g.input, rng);
  const Tensor full = g.forward(in);
  CHECK(ref::max_abs_diff(full, ref::forward(g, in)) <= 1e-4f);
  for (int devices = 2; devices <= 5; ++devices)
    CHECK(ref::bit_equal(run_split(g, in, {1, 4, g.spatial_end()}, devices, rng), full));
  CHECK_THROWS_AS(g.run_block(2, 4, Band{full, 0}, {0, 1}), std::logic_error);
}

TEST_CASE("graph rejects malformed construction") {
  Graph g;
  g.input = {8, 8, 3};
  CHECK_THROWS(g.add("bad", std::make_unique<Add>(), {-1}));      // Add needs two inputs
  CHECK_THROWS(g.add("fwd", std::make_unique<Softmax>(), {3}));   // not an earlier node
  Conv2DParams p;
  p.cin = 4;  // input has 3 channels
  p.cout = 4;
  g.add("c", std::make_unique<Conv2D>(p), {-1});
  CHECK_THROWS_AS(g.finalize(), std::invalid_argument);
}

namespace {
int64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
// Restore the process-wide dilation, and turn its turns off, however the test case ends.
struct TurnsOff {
  ~TurnsOff() { set_dilation_turns(""); }
};
struct DilationGuard {
  ~DilationGuard() { set_compute_dilation(1.0); }
};
}  // namespace

TEST_CASE("compute dilation: sections last at least factor x their CPU time, tiny ones add up") {
  DilationGuard restore;
  CHECK_THROWS_AS(set_compute_dilation(0.5), std::invalid_argument);
  CHECK_THROWS_AS(set_compute_dilation(101), std::invalid_argument);
  CHECK_THROWS_AS(set_compute_dilation(std::nan("")), std::invalid_argument);
  CHECK(compute_dilation() == 1.0);
  volatile double sink = 0;
  auto spin = [&](int n) {
    for (int i = 0; i < n; ++i) sink = sink + std::sqrt(double(i));
  };
  for (const double factor : {2.0, 4.0}) {
    for (const int work : {2000000, 5000}) {  // a few ms per section, and a few us (deferred)
      CAPTURE(factor);
      CAPTURE(work);
      set_compute_dilation(factor);
      const int sections = work > 100000 ? 4 : 400;
      // CPU time inside the sections only: sleeping and waking cost CPU time too, outside them.
      double cpu = 0;
      const int64_t wall0 = clock_ns(CLOCK_MONOTONIC);
      for (int s = 0; s < sections; ++s) {
        DilatedSection slow;
        const int64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        spin(work);
        cpu += double(clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0);
      }
      const double wall = double(clock_ns(CLOCK_MONOTONIC) - wall0);
      MESSAGE("dilation " << factor << ", " << sections << " sections: " << wall / 1e6 << " ms for "
                          << cpu / 1e6 << " ms CPU");
      // The slack: a deferred sleep under 0.1 ms and oversleep paid back (<= 1 ms).
      CHECK(wall >= factor * cpu - 1.2e6);
    }
  }
  // Off: a graph runs unchanged and gives the same result as with dilation on.
  set_compute_dilation(1.0);
  Graph g = models::build_synthetic("mobilenet_v1:0.25:32");
  std::mt19937 rng(3);
  const Tensor in = ref::random_tensor(g.input, rng);
  const Tensor plain = g.forward(in);
  set_compute_dilation(3.0);
  CHECK(ref::bit_equal(g.forward(in), plain));
}

TEST_CASE("compute dilation: devices taking turns never compute at once, and still stretch") {
  DilationGuard restore;
  TurnsOff turns_off;
  CHECK_THROWS_WITH_AS(set_dilation_turns("/nonexistent-dir/turns.lock"),
                       doctest::Contains("/nonexistent-dir/turns.lock"), std::runtime_error);
  CHECK(dilation_turns().empty());
  const std::string lock = "/tmp/edgeband_turns_test_" + std::to_string(::getpid()) + ".lock";
  const double factor = 4.0;
  set_compute_dilation(factor);
  // Three "devices" (threads) run sections; `inside` counts the section bodies running at once.
  // In its first section each thread waits (up to 100 ms) for all three to be inside, so without
  // turns all three are, whatever the cores and the load; with turns never more than one.
  auto run = [&](bool turns, double* worst_ratio) {
    set_dilation_turns(turns ? lock : "");
    std::atomic<int> ready{0}, inside{0}, most{0};
    std::mutex mu;
    *worst_ratio = 1e9;
    std::vector<std::thread> ts;
    for (int who = 0; who < 3; ++who)
      ts.emplace_back([&] {
        ++ready;
        while (ready.load() < 3) {
        }
        double cpu = 0;
        const int64_t wall0 = clock_ns(CLOCK_MONOTONIC);
        for (int s = 0; s < 5; ++s) {
          DilatedSection slow;
          const int64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
          const int now = ++inside;
          for (int m = most.load(); now > m && !most.compare_exchange_weak(m, now);) {
          }
          const int64_t give_up = clock_ns(CLOCK_MONOTONIC) + 100000000;
          while (s == 0 && most.load() < 3 && clock_ns(CLOCK_MONOTONIC) < give_up) {
          }
          volatile double sink = 0;
          for (int i = 0; i < 300000; ++i) sink = sink + std::sqrt(double(i));
          --inside;
          cpu += double(clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0);
        }
        const double wall = double(clock_ns(CLOCK_MONOTONIC) - wall0);
        std::lock_guard<std::mutex> lk(mu);
        *worst_ratio = std::min(*worst_ratio, (wall + 1.2e6) / cpu);
      });
    for (auto& t : ts) t.join();
    return most.load();
  };
  double ratio = 0;
  CHECK(run(false, &ratio) == 3);
  CHECK(ratio >= factor);
  CHECK(run(true, &ratio) == 1);
  CHECK(dilation_turns() == lock);
  // Waiting for the turn is part of the stretch: still at least factor x the CPU time.
  CHECK(ratio >= factor);
  std::remove(lock.c_str());
}

TEST_CASE("compute dilation: only layers wait for the turn, not a frame's data-path work") {
  DilationGuard restore;
  TurnsOff turns_off;
  const std::string lock = "/tmp/edgeband_turns_dp_test_" + std::to_string(::getpid()) + ".lock";
  set_compute_dilation(2.0);
  set_dilation_turns(lock);
  // Another device holds the turn (its own open file description, as another process's).
  const int other = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(other >= 0);
  REQUIRE(::flock(other, LOCK_EX) == 0);
  auto section = [](Work w) {
    return std::async(std::launch::async, [w] {
      DilatedSection s(section_of(w));
      volatile double sink = 0;
      for (int i = 0; i < 100000; ++i) sink = sink + std::sqrt(double(i));
    });
  };
  // A frame's checksum, encryption and encoding run meanwhile (on a board, on another core).
  // (Every future is joined only after the turn is released, so a failure cannot hang.)
  std::vector<std::future<void>> data_path;
  for (Work w : {Work::seal, Work::open, Work::encode, Work::decode}) {
    data_path.push_back(section(w));
    CHECK(data_path.back().wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  }
  // A layer, or the planner, waits until the turn is released: neither finishes while it is held.
  std::future<void> layer = section(Work::layer), plan = section(Work::plan);
  CHECK(layer.wait_for(std::chrono::milliseconds(300)) == std::future_status::timeout);
  CHECK(plan.wait_for(std::chrono::milliseconds(1)) == std::future_status::timeout);
  ::flock(other, LOCK_UN);
  CHECK(layer.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  CHECK(plan.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  ::close(other);
  std::remove(lock.c_str());
}

TEST_CASE("board calibration: the slowdown is the board's published time over this machine's, per device") {
  const Graph g = models::build_synthetic("vgg16:32");  // no figure of its own: VGG-16 224 stands in
  std::vector<std::string> timed;
  auto here = [&](const std::string& m) {
    timed.push_back(m);
    return m.empty() ? 2.0 : 100.0;  // ms: the model itself, the reference model
  };
  const auto boards = dist::resolve_slowdowns(g, 3, "", "pi4,pi3,x86", "", here);
  REQUIRE(boards.size() == 3);
  double pi4 = 0, pi3 = 0;
  for (const auto& f : dist::board_figures()) {
    if (std::string(f.model) != "vgg16:224") continue;
    (std::string(f.board) == "pi4" ? pi4 : pi3) = f.ms;
  }
  CHECK(boards[0].factor == doctest::Approx(pi4 / 100.0));
  CHECK(boards[1].factor == doctest::Approx(pi3 / 100.0));
  CHECK(boards[2].factor == 1.0);
  CHECK(boards[0].source.find("Raspberry Pi 4") != std::string::npos);
  CHECK(timed == std::vector<std::string>{"vgg16:224"});  // measured once for both boards
  // Target times scale the model's own time; plain factors pass through; one item = all.
  const auto to = dist::resolve_slowdowns(g, 2, "", "", "20,40", here);
  CHECK(to[0].factor == doctest::Approx(10.0));
  CHECK(to[1].factor == doctest::Approx(20.0));
  const auto f = dist::resolve_slowdowns(g, 2, "9", "", "", here);
  CHECK((f[0].factor == 9.0 && f[1].factor == 9.0));
  CHECK_THROWS_AS(dist::resolve_slowdowns(g, 3, "9,9", "", "", here), std::invalid_argument);
  CHECK_THROWS_AS(dist::resolve_slowdowns(g, 2, "9", "pi4", "", here), std::invalid_argument);
  CHECK_THROWS_AS(dist::resolve_slowdowns(g, 2, "", "pi5", "", here), std::invalid_argument);
  CHECK_THROWS_AS(dist::resolve_slowdowns(g, 2, "0.5", "", "", here), std::invalid_argument);
}
