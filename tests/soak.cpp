// Soak test: one authenticated `edgeband worker` process under a bounded loopback load for a
// while - several hosts running real requests (every scheme, batches of 1-3, two models),
// rude hosts that vanish mid-handshake, mid-plan or mid-frame, and garbage clients (random
// bytes, no or wrong credentials, oversized and stalled frames). It samples the worker's RSS,
// requires every well-formed request to come back bit-identical to local inference, and stops
// the worker with SIGTERM: under AddressSanitizer its LeakSanitizer report decides the exit
// status.
//   edgeband_soak [--seconds S] [--hosts N] [--garbage N] [--rude N] [--bin PATH]
#include <fcntl.h>
#include <omp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "dist/testbed/cluster.h"
#include "dist/runtime/host.h"
#include "models/zoo.h"
#include "tests/raw_client.h"
#include "tests/reference.h"

using namespace eb;
using namespace eb::dist;
using Clock = std::chrono::steady_clock;

namespace {

long rss_kb(int pid, const char* field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0) return std::atol(line.c_str() + n + 1);
  return -1;
}

struct Deployed {
  std::string name;
  std::shared_ptr<Graph> g;
  uint64_t hash = 0;
  Cluster cluster;
  // Plans by (scheme, batch), made once: the soak tests the worker, and a HALP plan's search
  // takes seconds under the sanitizers, long enough for the worker's idle timeout to end a
  // session that is only planning.
  mutable std::mutex mu;
  mutable std::map<std::pair<Scheme, int>, Plan> plans;
  Plan plan(Scheme s, int batch) const {
    std::lock_guard<std::mutex> lk(mu);
    auto it = plans.find({s, batch});
    if (it == plans.end())
      it = plans.emplace(std::make_pair(s, batch), make_plan(*g, cluster, s, batch)).first;
    return it->second;
  }
};

struct Counters {
  std::atomic<long> requests{0}, images{0}, wrong{0}, failed{0}, sessions{0}, rude{0}, garbage{0};
  std::mutex mu;
  std::vector<std::string> errors;
  void error(const std::string& e) {
    std::lock_guard<std::mutex> lk(mu);
    if (errors.size() < 20) errors.push_back(e);
  }
};

const char* kSchemes[] = {"modnn", "dpfp", "halp"};

void host_loop(int id, const std::string& addr, const Credentials& secret,
               const std::deque<Deployed>& models, Clock::time_point end, Counters& c) {
  omp_set_num_threads(1);
  std::mt19937 rng(1000 + id);
  while (Clock::now() < end) {
    const Deployed& d = models[rng() % models.size()];
    try {
      RuntimeOptions ro;
      ro.creds = secret;
      ro.timeout_ms = 20000;
      HostRuntime host(d.g, d.hash, {addr}, ro);
      ++c.sessions;
      const int n = 1 + int(rng() % 12);
      for (int r = 0; r < n && Clock::now() < end; ++r) {
        const int batch = 1 + int(rng() % 3);
        std::vector<Tensor> images;
        for (int i = 0; i < batch; ++i) images.push_back(ref::random_tensor(d.g->input, rng));
        const Plan plan = d.plan(parse_scheme(kSchemes[rng() % 3]), batch);
        InferStats st;
        const auto out = host.infer(images, plan, &st);
        ++c.requests;
        c.images += batch;
        if (st.faults) {
          ++c.failed;
          c.error("host " + std::to_string(id) + ": " + st.fault_messages.front());
          break;  // the host dropped the worker; start a new session
        }
        for (int i = 0; i < batch; ++i)
          if (!ref::bit_equal(out[size_t(i)], d.g->forward(images[size_t(i)]))) {
            ++c.wrong;
            c.error("host " + std::to_string(id) + ": output differs from local inference");
          }
      }
    } catch (const std::exception& e) {
      ++c.failed;
      c.error("host " + std::to_string(id) + ": " + e.what());
    }
  }
}

// Authenticated hosts that disappear at a random point of a session.
void rude_loop(int id, const std::string& addr, const Credentials& secret,
               const std::deque<Deployed>& models, Clock::time_point end, Counters& c) {
  std::mt19937 rng(2000 + id);
  while (Clock::now() < end) {
    const Deployed& d = models[rng() % models.size()];
    test::RawClient cl(addr, 5000);
    const int stop_at = int(rng() % 4);
    if (stop_at == 0) {  // half a HELLO
      const auto f = cl.frame(MsgType::hello, "{\"model\":\"" + d.name + "\"}");
      cl.write(f.data(), f.size() / 2);
    } else if (cl.handshake(secret, "\"model\":\"" + d.name + "\",\"wire\":\"fp32\"")) {
      if (stop_at >= 2) {
        Json msg = Json::object();
        msg["plan"] = plan_to_wire(d.plan(Scheme::dpfp, 1));
        msg["device"] = 1;
        cl.send(MsgType::plan, msg.dump(), {}, true);
      }
      if (stop_at == 3) {  // the first rows of the input, cut off mid-frame
        const size_t bytes = size_t(d.g->input.w) * size_t(d.g->input.c) * 4 * 8;
        const std::string meta = "{\"image\":1,\"node\":-1,\"row0\":0,\"rows\":8,\"wire\":\"fp32\"}";
        const auto f = cl.frame(MsgType::rows, meta, std::vector<uint8_t>(bytes, 0), true);
        cl.write(f.data(), f.size() - 1 - rng() % (bytes / 2));
      }
    }
    ++c.rude;
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 50));
  }
}

// Strangers: random bytes, no credentials, a wrong secret, oversized claims, a stalled frame.
void garbage_loop(int id, const std::string& addr, Clock::time_point end, Counters& c) {
  std::mt19937 rng(3000 + id);
  Credentials wrong;
  wrong.psk.key.fill(uint8_t('x'));
  wrong.psk.set = true;
  while (Clock::now() < end) {
    test::RawClient cl(addr, 5000);
    switch (rng() % 5) {
      case 0: {
        std::vector<uint8_t> junk(1 + rng() % 2000);
        for (auto& b : junk) b = uint8_t(rng());
        cl.write(junk.data(), junk.size());
        break;
      }
      case 1:
        cl.send(MsgType::hello, "{\"model\":\"mobilenet_v1:0.25:64\"}");
        break;
      case 2:
        cl.handshake(wrong, "\"model\":\"mobilenet_v1:0.25:64\"");
        break;
      case 3: {
        auto f = cl.frame(MsgType::rows, "{}");
        const uint64_t huge = 400ull << 20;
        std::memcpy(f.data() + 24, &huge, 8);
        cl.write(f.data(), f.size());
        break;
      }
      default: {
        const auto f = cl.frame(MsgType::hello, "{\"model\":\"mobilenet_v1:0.25:64\"}");
        cl.write(f.data(), 10);
        std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 300));
        break;
      }
    }
    cl.closed_by_peer();
    ++c.garbage;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int seconds = 60, hosts = 3, garbage = 2, rude = 1;
  std::string bin = EDGEBAND_BIN;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--seconds") seconds = std::atoi(argv[i + 1]);
    else if (k == "--hosts") hosts = std::atoi(argv[i + 1]);
    else if (k == "--garbage") garbage = std::atoi(argv[i + 1]);
    else if (k == "--rude") rude = std::atoi(argv[i + 1]);
    else if (k == "--bin") bin = argv[i + 1];
    else {
      std::fprintf(stderr, "edgeband_soak: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (seconds < 5 || hosts < 1 || garbage < 0 || rude < 0) {
    std::fprintf(stderr, "edgeband_soak: need --seconds >= 5 and --hosts >= 1\n");
    return 2;
  }
  // The pre-shared key, in a file only we may read.
  const std::string secret_path = "/tmp/edgeband_soak_" + std::to_string(getpid()) + ".key";
  {
    std::ofstream f(secret_path);
    f << new_psk_text();
  }
  ::chmod(secret_path.c_str(), 0600);
  Credentials secret;
  secret.psk = load_psk_file(secret_path);
  std::deque<Deployed> models;  // not moved: each holds a mutex
  for (const char* name : {"mobilenet_v1:0.25:64", "mobilenet_v1:0.5:96"}) {
    Deployed& d = models.emplace_back();
    d.name = name;
    d.g = std::make_shared<Graph>(models::load_model(name, "", &d.hash));
    d.cluster.link = parse_link("10gbit,0.01ms");
    for (int k = 0; k < 2; ++k) d.cluster.devices.push_back(estimate_profile(*d.g, "d", 5));
  }
  // The worker's log (one line per refused or dropped stranger) goes to a file, not our output.
  const std::string log_path = "/tmp/edgeband_soak_" + std::to_string(getpid()) + ".log";
  const int saved_stderr = dup(2);
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (log_fd >= 0) dup2(log_fd, 2);
  WorkerProcess worker(bin, 1, "",
                       {"--secret-file", secret_path, "--max-conn", "64", "--handshake-timeout",
                        "2", "--idle-timeout", "20", "--max-frame-mb", "64"});
  dup2(saved_stderr, 2);
  if (log_fd >= 0) ::close(log_fd);
  ::close(saved_stderr);
  std::printf("soak: worker pid %d at %s (log: %s); %d hosts, %d rude hosts, %d garbage clients, %d s\n",
              worker.pid(), worker.addr().c_str(), log_path.c_str(), hosts, rude, garbage, seconds);
  std::fflush(stdout);
  Counters c;
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::seconds(seconds);
  std::vector<std::thread> threads;
  for (int i = 0; i < hosts; ++i)
    threads.emplace_back(host_loop, i, worker.addr(), std::cref(secret), std::cref(models), end,
                         std::ref(c));
  for (int i = 0; i < rude; ++i)
    threads.emplace_back(rude_loop, i, worker.addr(), std::cref(secret), std::cref(models), end,
                         std::ref(c));
  for (int i = 0; i < garbage; ++i)
    threads.emplace_back(garbage_loop, i, worker.addr(), end, std::ref(c));
  // RSS after a warm-up (both models loaded, every plan made, allocator pools filled), then
  // until the end. The hosts make their plans first (seconds under the sanitizers), so the
  // warm-up is counted in answered requests as well as in time.
  const auto warm = t0 + std::chrono::seconds(std::max(3, seconds / 6));
  constexpr long kWarmRequests = 50;
  long rss_warm = -1, rss_max_after = 0;
  auto next_print = t0;
  while (Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const long r = rss_kb(worker.pid(), "VmRSS:");
    if (Clock::now() >= next_print) {
      std::printf("soak: t=%3.0f s  worker RSS %.1f MiB  requests %ld  sessions %ld\n",
                  std::chrono::duration<double>(Clock::now() - t0).count(), r / 1024.0,
                  c.requests.load(), c.sessions.load());
      std::fflush(stdout);
      next_print += std::chrono::seconds(std::max(5, seconds / 12));
    }
    if (Clock::now() >= warm && c.requests.load() >= kWarmRequests) {
      if (rss_warm < 0) rss_warm = r;
      rss_max_after = std::max(rss_max_after, r);
    }
  }
  for (auto& t : threads) t.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const long rss_end = rss_kb(worker.pid(), "VmRSS:"), hwm = rss_kb(worker.pid(), "VmHWM:");
  const int status = worker.stop(60000);
  std::remove(secret_path.c_str());
  const bool clean_exit = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::printf(
      "soak: %ld requests (%ld images) answered, %ld wrong, %ld failed; %ld host sessions, %ld rude "
      "hosts, %ld garbage clients\n",
      c.requests.load(), c.images.load(), c.wrong.load(), c.failed.load(), c.sessions.load(),
      c.rude.load(), c.garbage.load());
  std::printf("soak: worker RSS after warm-up %.1f MiB, highest after warm-up %.1f MiB, at end %.1f "
              "MiB, peak (VmHWM) %.1f MiB\n",
              rss_warm / 1024.0, rss_max_after / 1024.0, rss_end / 1024.0, hwm / 1024.0);
  std::printf("soak: worker exit: %s\n",
              clean_exit ? "0 (clean; no leak reports)"
                         : (WIFEXITED(status) ? ("status " + std::to_string(WEXITSTATUS(status)))
                                                    .c_str()
                                              : "killed"));
  for (const auto& e : c.errors) std::printf("  error: %s\n", e.c_str());
  if (rss_warm < 0)
    std::printf("soak: fewer than %ld requests answered: too few to judge the worker's memory\n",
                kWarmRequests);
  // Flat memory: the end may not exceed the warm level by more than 20% and 32 MiB.
  const bool flat = rss_warm > 0 && rss_end <= rss_warm + std::max(rss_warm / 5, 32L * 1024);
  const bool ok = c.requests > 0 && c.wrong == 0 && c.failed == 0 && clean_exit && flat;
  std::printf("soak: %s\n", ok ? "PASSED" : "FAILED");
  return ok ? 0 : 1;
}
