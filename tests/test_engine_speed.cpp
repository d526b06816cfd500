// Deterministic guards for the engine's speed work (tests never time anything): the choices that
// made it fast must stay made. The FMA guard is tests/check_fma.sh (ctest kernels_fma).
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "dist/testbed/cluster.h"
#include "kernels/conv.h"
#include "kernels/microkernels.h"
#include "tests/helpers.h"

using namespace eb;

TEST_CASE(
    "kernels: VGG-16's wide Winograd layers run per-thread blocks on 2 threads, deep ones shared") {
  // (tile, tiles at 224x224, channels) per layer; the per-thread path kept each core's
  // transforms on that core: conv1_2 went from 22.8 to 16.9 ms, conv3_x from 14 to 12.5 ms on 2
  // threads (at F(4x4); conv1_2 and conv2_x now take F(6x6), conv3 and conv4 F(4x4)).
  struct L {
    int tile;
    size_t tiles, c, k;
    bool per_thread;
  };
  const L layers[] = {{6, 38 * 38, 64, 64, true},   {6, 19 * 19, 64, 128, true},
                      {6, 19 * 19, 128, 128, true}, {4, 56 * 56, 64, 64, true},
                      {4, 28 * 28, 64, 128, true},  {4, 28 * 28, 128, 128, true},
                      {4, 14 * 14, 256, 256, true}, {4, 7 * 7, 512, 512, false},
                      {4, 4 * 4, 512, 512, false}};  // the last two: conv4, and conv5 at F(4x4)
  for (size_t mr : {size_t(6), size_t(8), size_t(12)})
    for (const L& l : layers) {
      CAPTURE(mr);
      CAPTURE(l.tiles);
      const kernels::WinoSchedule s = kernels::winograd_schedule(l.tile, l.tiles, l.c, l.k, mr, 2);
      CHECK(s.per_thread == l.per_thread);
      CHECK(size_t(s.blocks) * s.tiles_per_block >= l.tiles);  // every tile in some block
      if (s.per_thread) CHECK(s.blocks % 2 == 0);              // as many blocks per thread
      // One thread never needs the per-thread path (it is the shared one without barriers).
      CHECK_FALSE(kernels::winograd_schedule(l.tile, l.tiles, l.c, l.k, mr, 1).per_thread);
    }
  // VGG-16's conv5 at F(2x2): 7x7 tiles of 512x512, the shared path.
  for (size_t mr : {size_t(6), size_t(8), size_t(12)})
    CHECK_FALSE(kernels::winograd_schedule(2, 7 * 7, 512, 512, mr, 2).per_thread);
}

TEST_CASE("dist threads: workers wait passively between layers unless the user chose a policy") {
  // libgomp reads OMP_WAIT_POLICY before main: the worker re-executes itself with it set, so a
  // worker's /proc/PID/environ (the environment it was exec'd with) names it.
  auto environ_of = [](int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/environ");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    for (char& ch : s)
      if (ch == '\0') ch = '\n';
    return "\n" + s;
  };
  {
    dist::WorkerProcess w(std::string("env -u OMP_WAIT_POLICY ") + EDGEBAND_BIN, 1);
    CHECK(environ_of(w.pid()).find("\nOMP_WAIT_POLICY=passive\n") != std::string::npos);
  }
  {
    dist::WorkerProcess w(std::string("env OMP_WAIT_POLICY=active ") + EDGEBAND_BIN, 1);
    const std::string env = environ_of(w.pid());
    CHECK(env.find("\nOMP_WAIT_POLICY=active\n") != std::string::npos);
    CHECK(env.find("OMP_WAIT_POLICY=passive") == std::string::npos);
  }
}

TEST_CASE(
    "dist threads: infer and cluster warn when devices on this machine ask for more threads than "
    "cores") {
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  const std::string over = std::to_string(cores + 1);
  // cluster checks --threads x devices before spawning anything: a missing weights file then
  // stops it.
  test::CliResult c =
      test::run_edgeband("cluster --devices 2 --threads " + over + " --weights /nonexistent.ebw");
  CHECK(c.code != 0);
  CHECK(c.out.find("warning: 2 devices x " + over + " threads on " + std::to_string(cores) +
                   " cores") != std::string::npos);
  test::CliResult quiet =
      test::run_edgeband("cluster --devices 2 --threads 0 --weights /nonexistent.ebw");
  CHECK(quiet.out.find("warning") == std::string::npos);
#if defined(__SANITIZE_THREAD__)
  // libgomp is not instrumented: with two OpenMP threads ThreadSanitizer reports its barriers as
  // races (the TSan suite runs one thread), and this part needs more threads than cores / 2.
  return;
#endif
  // infer with a loopback worker: the host's threads and the worker's (all cores by default).
  dist::WorkerProcess w(EDGEBAND_BIN, 1);
  test::CliResult i =
      test::run_edgeband("infer --model vgg16:32 --workers " + w.addr() + " --threads " +
                         std::to_string(cores) + " --runs 1 --warmup 1 --scheme halp");
  CHECK(i.out.find("warning: the host and 1 worker on this machine") != std::string::npos);
  // Same kernels on both devices: the distributed answer is the local one, bit for bit, and
  // infer says so.
  CHECK(i.code == 0);
  CHECK(i.out.find("output equals local: yes, bit for bit") != std::string::npos);
}
