#include "dist/testbed/dilation.h"

#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace eb {
namespace {

std::atomic<double> g_factor{1.0};
// Per kind of work: owed sleep (> 0) or sleep paid in advance (< 0), so that each kind pays
// its own stretch and the totals per kind stay exact.
thread_local int64_t t_debt_ns[kWorkKinds] = {};

std::mutex g_totals_mu;
DilationTotals g_totals;  // guarded by g_totals_mu

void add_to_totals(Work w, int64_t cpu, int64_t charged, int64_t wall) {
  std::lock_guard<std::mutex> lk(g_totals_mu);
  g_totals.cpu_ns[int(w)] += cpu;
  g_totals.charged_ns[int(w)] += charged;
  g_totals.wall_ns[int(w)] += wall;
  ++g_totals.sections[int(w)];
}

std::mutex g_turns_mu;
std::string g_turns_path;           // guarded by g_turns_mu
std::atomic<int> g_turns_epoch{0};  // bumped on every change: threads reopen

int open_lock_file(const std::string& path) {
  return ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
}

// This thread's descriptor of the turns file (its own open file description, so that flock
// excludes the other threads of this process too); -1 = no turns.
struct ThreadTurns {
  int fd = -1, epoch = -1;
  bool held = false;  // a section of this thread holds the turn
  ~ThreadTurns() {
    if (fd >= 0) ::close(fd);
  }
  int get() {
    const int e = g_turns_epoch.load();
    if (e != epoch) {
      if (fd >= 0) ::close(fd);
      std::string path;
      {
        std::lock_guard<std::mutex> lk(g_turns_mu);
        path = g_turns_path;
      }
      fd = path.empty() ? -1 : open_lock_file(path);
      epoch = e;
    }
    return fd;
  }
};
thread_local ThreadTurns t_turns;

int64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct WorkKey {
  const void* what;
  ComputeSection::Axis axis;
  int a, b;
  bool operator==(const WorkKey& o) const {
    return what == o.what && axis == o.axis && a == o.a && b == o.b;
  }
};
struct WorkKeyHash {
  size_t operator()(const WorkKey& k) const {
    return std::hash<const void*>()(k.what) ^ (size_t(uint32_t(k.a)) * 0x9E3779B97F4A7C15ull) ^
           (size_t(uint32_t(k.b)) << 21) ^ (size_t(k.axis) << 52);
  }
};

// The least CPU time seen for this work, `cpu` included (unnamed work: `cpu` itself).
int64_t least_cpu_ns(const ComputeSection& w, int64_t cpu) {
  if (!w.layer) return cpu;
  const WorkKey key{w.layer, w.axis, w.begin, w.end};
  static std::mutex mu;
  static std::unordered_map<WorkKey, int64_t, WorkKeyHash> least;
  std::lock_guard<std::mutex> lk(mu);
  const auto it = least.find(key);
  if (it != least.end()) return it->second = std::min(it->second, cpu);
  if (least.size() < 100000) least.emplace(key, cpu);  // plans repeat: bounded
  return cpu;
}

// Attaches dilation to graph execution: a DilatedSection around every compute section, kept on
// a per-thread stack between enter and leave (sections nest).
class DilationHook final : public ComputeHook {
 public:
  void enter(const ComputeSection& s) override { open_.emplace_back(std::make_unique<DilatedSection>(s)); }
  void leave(const ComputeSection&) override { open_.pop_back(); }

 private:
  static thread_local std::vector<std::unique_ptr<DilatedSection>> open_;
};
thread_local std::vector<std::unique_ptr<DilatedSection>> DilationHook::open_;
DilationHook g_hook;

}  // namespace

void set_compute_dilation(double factor) {
  if (!(factor >= 1.0 && factor <= 100.0))
    throw std::invalid_argument("compute dilation must be in [1, 100]");
  g_factor.store(factor);
  set_compute_hook(factor > 1.0 ? &g_hook : nullptr);
}

double compute_dilation() {
  return g_factor.load();
}

void set_dilation_turns(const std::string& lock_file) {
  if (!lock_file.empty()) {
    const int fd = open_lock_file(lock_file);
    if (fd < 0)
      throw std::runtime_error("cannot open the dilation lock file '" + lock_file +
                               "': " + std::strerror(errno));
    ::close(fd);
  }
  std::lock_guard<std::mutex> lk(g_turns_mu);
  g_turns_path = lock_file;
  ++g_turns_epoch;
}

std::string dilation_turns() {
  std::lock_guard<std::mutex> lk(g_turns_mu);
  return g_turns_path;
}

DilationTotals dilation_totals() {
  std::lock_guard<std::mutex> lk(g_totals_mu);
  return g_totals;
}

void reset_dilation_totals() {
  std::lock_guard<std::mutex> lk(g_totals_mu);
  g_totals = DilationTotals{};
}

DilatedSection::DilatedSection(const ComputeSection& work) : factor_(g_factor.load()), work_(work) {
  if (factor_ <= 1.0) return;
  wall0_ns_ = clock_ns(CLOCK_MONOTONIC);
  // The outermost heavy section of this thread (a layer, the planner) takes the turn; the wait is
  // part of the stretch. A frame's work does not: its checksum or encryption runs on the
  // connection's thread, on a core of its own on a board, and its encoding and decoding are short
  // copies on the compute thread. Waiting for another device's layer held every frame back by up
  // to that layer's CPU time (VGG-16 HALP, 3 devices: median 2.13x -> 2.28x).
  if (!t_turns.held && (work_.work == Work::layer || work_.work == Work::plan)) {
    const int fd = t_turns.get();
    if (fd >= 0) {
      while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
      }
      turn_fd_ = fd;
      t_turns.held = true;
    }
  }
  cpu0_ns_ = clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

DilatedSection::~DilatedSection() {
  if (factor_ <= 1.0) return;
  const int64_t used = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0_ns_;
  if (turn_fd_ >= 0) {
    ::flock(turn_fd_, LOCK_UN);
    t_turns.held = false;
  }
  const int64_t charged = least_cpu_ns(work_, used);
  const int64_t start = clock_ns(CLOCK_MONOTONIC);
  int64_t& debt = t_debt_ns[int(work_.work)];
  // Time lost to preemption counts as part of the stretch: the emulated device was busy then.
  int64_t owe = int64_t(double(charged) * factor_) - (start - wall0_ns_) + debt;
  if (owe < 100000) {
    debt = std::max<int64_t>(owe, -1000000);
    add_to_totals(work_.work, used, charged, start - wall0_ns_);
    return;
  }
  const int64_t until = start + owe;
  timespec ts{time_t(until / 1000000000), long(until % 1000000000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) != 0) {
  }
  // Waking late pays part of the next sections' stretch; bounded (here and above) so one long
  // stall (a descheduled VM) is not paid back as a burst of full-speed compute.
  const int64_t end = clock_ns(CLOCK_MONOTONIC), late = end - until;
  debt = late > 1000000 ? -1000000 : -late;
  add_to_totals(work_.work, used, charged, end - wall0_ns_);
}

}  // namespace eb
