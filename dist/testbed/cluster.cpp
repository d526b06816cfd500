#include "dist/testbed/cluster.h"
#include "core/progress.h"

#include <omp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "dist/plan/memory.h"
#include "dist/plan/stats.h"
#include "models/classify.h"
#include "dist/testbed/boards.h"
#include "dist/testbed/dilation.h"
#include "dist/runtime/data_path.h"
#include "dist/runtime/host.h"
#include "dist/runtime/palette_wire.h"
#include "models/zoo.h"

namespace eb::dist {
namespace {
// This process's group for device d in a cgroup v1 hierarchy (cpu or cpuset), created.
std::string make_group(const std::string& hierarchy, int d) {
  const std::string dir =
      hierarchy + "/edgeband_" + std::to_string(getpid()) + "_" + std::to_string(d);
  mkdir(dir.c_str(), 0755);
  return dir;
}
}  // namespace

CpuShares::CpuShares(int devices, bool want, double cores_per_device, bool pin) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  how = "no CPU quota";
  if (want) set_quotas(devices, cores, cores_per_device);
  if (pin) pin_devices(devices, cores);
}

void CpuShares::set_quotas(int devices, unsigned cores, double cores_per_device) {
  const std::string root = "/sys/fs/cgroup/cpu";
  if (access((root + "/cgroup.procs").c_str(), W_OK) != 0) {
    how = "none (cgroup v1 cpu controller not writable; run as root for equal shares)";
    return;
  }
  // A 10 ms period keeps throttling stalls short (at most ~3 ms) in a pipeline of devices that
  // wait on each other; the quota still holds a lone process to its share (measured).
  const double share = cores_per_device > 0 ? cores_per_device : double(cores) / devices;
  const long period = 10000, quota = std::max(1000L, long(double(period) * share));
  for (int d = 0; d < devices; ++d) {
    const std::string dir = make_group(root, d);
    std::ofstream(dir + "/cpu.cfs_period_us") << period;
    std::ofstream(dir + "/cpu.cfs_quota_us") << quota;
    dirs.push_back(dir);
  }
  char buf[200];
  std::snprintf(buf, sizeof buf, "cgroup v1 cfs_quota %.2f of %u cores per device",
                double(quota) / period, cores);
  how = buf;
}

void CpuShares::pin_devices(int devices, unsigned cores) {
  const std::string cs = "/sys/fs/cgroup/cpuset";
  if (cores < 2 || access((cs + "/cgroup.procs").c_str(), W_OK) != 0) {
    how += "; not pinned (needs 2 cores and a writable cgroup v1 cpuset)";
    return;
  }
  std::string mems;
  std::getline(std::ifstream(cs + "/cpuset.mems"), mems);
  // k cores per device; the host, the busiest device under HALP, gets the first k alone and the
  // workers share the other groups round-robin when there are fewer groups than workers.
  const unsigned k = std::max(1u, cores / unsigned(devices)), groups = cores / k;
  for (int d = 0; d < devices; ++d) {
    const std::string dir = make_group(cs, d);
    const unsigned g = d == 0 ? 0 : 1 + unsigned(d - 1) % (groups - 1);
    std::ofstream(dir + "/cpuset.cpus") << g * k << "-" << g * k + k - 1;
    std::ofstream(dir + "/cpuset.mems") << mems;
    cpuset_dirs.push_back(dir);
  }
  how += "; pinned: " + std::to_string(k) + " core(s) per device, the host's alone";
}

void CpuShares::assign(int device, int pid) {
  if (size_t(device) < dirs.size()) std::ofstream(dirs[size_t(device)] + "/cgroup.procs") << pid;
  if (size_t(device) < cpuset_dirs.size())
    std::ofstream(cpuset_dirs[size_t(device)] + "/cgroup.procs") << pid;
}

CpuShares::~CpuShares() {
  if (!dirs.empty()) std::ofstream("/sys/fs/cgroup/cpu/cgroup.procs") << getpid();
  if (!cpuset_dirs.empty()) std::ofstream("/sys/fs/cgroup/cpuset/cgroup.procs") << getpid();
  for (const auto& d : dirs) rmdir(d.c_str());
  for (const auto& d : cpuset_dirs) rmdir(d.c_str());
}

WorkerProcess::WorkerProcess(const std::string& exe, int threads, const std::string& weights,
                             const std::vector<std::string>& extra_args) {
  // Arguments are built before fork: the child of a threaded process may only exec.
  // `exe` may carry a prefix (an emulator: "qemu-aarch64-static -cpu cortex-a72 edgeband").
  const std::string t = std::to_string(threads);
  std::vector<std::string> words;
  std::istringstream split(exe);
  for (std::string w; split >> w;) words.push_back(w);
  if (words.empty()) throw std::invalid_argument("empty worker command");
  std::vector<const char*> argv;
  for (const std::string& w : words) argv.push_back(w.c_str());
  for (const char* a : {"worker", "--listen", "127.0.0.1:0", "--threads", t.c_str(), "--announce"})
    argv.push_back(a);
  if (!weights.empty()) {
    argv.push_back("--weights");
    argv.push_back(weights.c_str());
  }
  for (const std::string& x : extra_args) argv.push_back(x.c_str());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execvp(argv[0], const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  close(fds[1]);
  std::string line;
  char c;
  while (read(fds[0], &c, 1) == 1 && c != '\n') line += c;
  close(fds[0]);
  int port = 0;
  if (std::sscanf(line.c_str(), "PORT %d", &port) != 1) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    throw std::runtime_error("worker process did not start (got '" + line + "')");
  }
  pid_ = pid;
  addr_ = "127.0.0.1:" + std::to_string(port);
}

int WorkerProcess::stop(int grace_ms) {
  if (pid_ <= 0) return -1;
  const int pid = pid_;
  pid_ = -1;
  kill(pid, SIGTERM);
  int status = 0;
  for (int waited = 0; waited < grace_ms; waited += 10) {
    if (waitpid(pid, &status, WNOHANG) == pid) return status;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return status;
}

WorkerProcess::~WorkerProcess() { stop(); }

int default_warmup(double dilate) {
  return dilate > 1 ? 3 : 1;
}

PairedRuns run_paired(HostRuntime& host, const Graph& g, Cluster c, Scheme s,
                      const std::vector<Tensor>& images, int runs, int warmup) {
  warmup = std::max(1, warmup);
  PairedRuns pr;
  const int batch = int(images.size());
  c.input_levels = images_palette_levels(images);  // the frames the runtime will send for them
  pr.plan = make_plan(g, c, s, batch);
  pr.first_plan = pr.plan;
  for (int run = 0; run < warmup + runs; ++run) {
    const bool timed = run >= warmup;
    report_progress(std::string(scheme_name(s)) + ": " +
                    (timed ? "run " + std::to_string(run - warmup + 1) + "/" + std::to_string(runs)
                           : "warm-up " + std::to_string(run + 1) + "/" + std::to_string(warmup)));
    if (timed) {
      double ms = 0;
      for (const Tensor& im : images) ms += timed_forward_ms(g, im);
      pr.local_ms.push_back(ms);
    }
    if (pr.plan.devices > host.alive() + 1) {  // a worker was dropped: plan for the ones left
      c.devices.resize(size_t(host.alive() + 1));
      pr.plan = make_plan(g, c, s, batch);
    }
    pr.last = InferStats{};
    if (pr.plan.devices > 1) {
      const std::vector<double> rtt = host.ping(&pr.last);
      const double slowest = *std::max_element(rtt.begin(), rtt.end());  // -1: none answered
      if (timed && slowest >= 0) pr.ping_ms.push_back(slowest);
      if (pr.plan.devices > host.alive() + 1) {  // the ping found a dead worker
        c.devices.resize(size_t(host.alive() + 1));
        pr.plan = make_plan(g, c, s, batch);
      }
    }
    std::vector<Tensor> out = host.infer(images, pr.plan, &pr.last);
    pr.faults += pr.last.faults;
    pr.fault_messages.insert(pr.fault_messages.end(), pr.last.fault_messages.begin(),
                             pr.last.fault_messages.end());
    pr.loads.insert(pr.loads.end(), pr.last.loads.begin(), pr.last.loads.end());
    if (run == 0)
      pr.warmup_out = std::move(out);
    else if (timed)
      pr.dist_ms.push_back(pr.last.ms);
  }
  return pr;
}

namespace {

// Dilation for this run: the host's factor in this process, the workers' on their command
// lines; turns through a lock file while the devices' sections fit in them. Undone on return.
struct Dilation {
  std::vector<double> factor;  // per device, host first
  std::string turns;           // the lock file, "" = none
  std::string own_file;        // this run's own lock file, removed at the end
  double load = 0;             // cores the devices' sections need together (sum of 1 / F)
  bool on() const { return *std::max_element(factor.begin(), factor.end()) > 1; }
  ~Dilation() {
    if (!on()) return;
    set_compute_dilation(1);
    set_dilation_turns("");
    if (!own_file.empty()) std::remove(own_file.c_str());
  }
  std::string how() const {
    std::string f;
    for (double x : factor) {
      char buf[24];
      std::snprintf(buf, sizeof buf, "%s%.3gx", f.empty() ? "" : ", ", x);
      f += buf;
    }
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    char need[160];
    std::snprintf(need, sizeof need, "needing %.2f of this machine's %u cores%s; ", load, cores,
                  load > 0.7 * cores ? " (over 70%: devices will wait for the CPU and measure "
                                       "slower than planned)" : "");
    return "time dilation: devices " + f + " slower than one core here, 1 thread, " +
           (turns.empty() ? "computing side by side, " : "taking turns to compute, ") + need;
  }
};

void start_dilation(const ClusterOptions& o, Dilation& dl) {
  double& load = dl.load;  // the share of one core the devices' sections need together
  load = 0;
  for (double f : dl.factor) load += 1 / f;
  dl.turns = o.dilate_lock == "none" ? "" : o.dilate_lock;
  // One turn is a queue: at load rho a section waits rho / (2 (1 - rho)) sections on average
  // (M/D/1), which a stretch of F - 1 sections of sleep absorbs while it is small beside it, not
  // near rho = 1. Three Pi-4 devices here (F ~ 3, rho ~ 1) measured 1.78x with turns against
  // 2.21x side by side, predicted 2.65x; four at F ~ 6.3 (rho ~ 0.63, a wait of 0.87 sections)
  // 2.98, 2.95, 3.02x with turns against 2.86, 2.74, 2.93x side by side.
  const double least_f = *std::min_element(dl.factor.begin(), dl.factor.end());
  const bool queue_absorbed = load < 1 && load / (2 * (1 - load)) <= (least_f - 1) / 4;
  if (o.dilate_lock.empty() && queue_absorbed)
    dl.turns = dl.own_file = "/tmp/edgeband-turns-" + std::to_string(getpid()) + ".lock";
  set_compute_dilation(dl.factor[0]);
  set_dilation_turns(dl.turns);
}

// Device d's profile: this machine's, scaled to d's slowdown.
Cluster cluster_of(const ClusterOptions& o, const Graph& g, const Dilation& dl) {
  Cluster cl;
  cl.set_worker_links(parse_link_list(o.link.empty() ? "10gbit,0.05ms" : o.link),
                      size_t(o.devices - 1));
  cl.bytes_per_value = o.fp16 ? 2 : 4;
  cl.edge_first = o.edge_first;
  // Dilated devices: undilated, the fastest of 5, then times each device's F: what the
  // emulation charges (F x the least CPU time seen). Measured dilated, the profile also held late
  // wake-ups and this VM's noise times F: the same 3-device HALP plan was predicted at 335-462 ms
  // from one invocation to the next. Without dilation: the median under the device's CPU share.
  const double f0 = compute_dilation();
  const bool dilated = dl.on();
  if (dilated) set_compute_dilation(1.0);
  DeviceProfile prof = measure_profile(g, "device", dilated ? 5 : 3, dilated);
  prof.data_path = measure_data_path();
  if (dilated) set_compute_dilation(f0);
  cl.encrypted = !o.secret_file.empty();
  for (int d = 0; d < o.devices; ++d) {
    DeviceProfile p = prof;
    const double k = dl.factor[size_t(d)];
    for (LayerCost& c : p.layers) c.fixed_ms *= k, c.per_row_ms *= k;
    p.data_path = prof.data_path.scaled(k);
    cl.devices.push_back(p);
  }
  if (!o.memory.empty()) cl.set_memory(o.memory);
  return cl;
}

}  // namespace

namespace {
// Outputs against local: bit for bit (fp32 wire), or the same top-1 class (fp16).
void compare_outputs(const std::vector<Tensor>& got, const std::vector<Tensor>& want, bool fp16,
                     SchemeResult& r) {
  r.equal = true;
  for (size_t i = 0; i < got.size(); ++i) {
    float dev = 0;
    for (size_t k = 0; k < got[i].size(); ++k)
      dev = std::max(dev, std::fabs(got[i].data()[k] - want[i].data()[k]));
    r.max_abs_dev = std::max(r.max_abs_dev, dev);
    if (fp16)
      r.equal = r.equal && top_k(got[i], 1)[0].index == top_k(want[i], 1)[0].index;
    else
      r.equal = r.equal && dev == 0.0f;
  }
}
}  // namespace

namespace {
void write_trace(const std::string& path, const Json& trace) {
  std::ofstream f(path);
  if (!(f << trace.dump() << "\n") || !f.flush()) throw std::runtime_error("cannot write '" + path + "'");
}
}  // namespace

std::string predicted_trace_path(const std::string& trace) {
  const size_t dot = trace.rfind('.'), slash = trace.rfind('/');
  const bool ext = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  return ext ? trace.substr(0, dot) + ".predicted" + trace.substr(dot) : trace + ".predicted";
}

std::vector<SchemeResult> run_cluster(const ClusterOptions& o, std::vector<Slowdown>* slowdown) {
  if (o.devices < 1 || o.devices > 16) throw std::invalid_argument("--devices must be in [1, 16]");
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  uint64_t hash = 0;
  auto g = std::make_shared<Graph>(models::load_model(o.model, o.weights, &hash, models::Hold::lazy));
  const std::vector<Slowdown> slow = resolve_slowdowns(*g, o.devices, o.dilate, o.board, o.dilate_to, [&](const std::string& m) {
    report_progress("calibrating: timing " + (m.empty() ? g->model : m) + " here, 1 thread");
    if (m.empty()) return time_model_ms(*g);
    return time_model_ms(models::build_synthetic(m));
  });
  if (slowdown) *slowdown = slow;
  Dilation dl;
  for (const Slowdown& s : slow) dl.factor.push_back(s.factor);
  const bool dilated = dl.on();
  const int warmup = o.warmup > 0 ? o.warmup : default_warmup(dl.factor[0] > 1 ? dl.factor[0] : *std::max_element(dl.factor.begin(), dl.factor.end()));
  if (dilated && o.threads > 1)
    throw std::invalid_argument("--dilate needs one compute thread per device");
  const int threads = dilated ? 1 : o.threads > 0 ? o.threads : std::max(1, int(cores) / o.devices);
  omp_set_num_threads(threads);
  if (dilated) start_dilation(o, dl);
  CpuShares shares(o.devices, o.cpu_share && !dilated, o.cores_per_device, o.pin);
  if (dilated) shares.how = dl.how() + shares.how;
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  shares.assign(0, getpid());
  for (int d = 1; d < o.devices; ++d) {
    std::vector<std::string> extra;
    if (!o.secret_file.empty()) extra = {"--secret-file", o.secret_file};
    if (dl.factor[size_t(d)] > 1) extra.insert(extra.end(), {"--dilate", std::to_string(dl.factor[size_t(d)])});
    if (dl.factor[size_t(d)] > 1 && !dl.turns.empty()) extra.insert(extra.end(), {"--dilate-lock", dl.turns});
    workers.push_back(std::make_unique<WorkerProcess>(o.self_exe, threads, o.weights, extra));
    shares.assign(d, workers.back()->pid());
  }
  // Inputs: deterministic pseudo-images.
  std::vector<Tensor> images;
  for (int i = 0; i < o.batch; ++i) {
    Tensor t(g->input);
    for (size_t k = 0; k < t.size(); ++k)
      t.data()[k] = float(int((k * 2654435761u + i * 97) % 255) - 127) / 127.0f;
    images.push_back(t);
  }
  // Local reference on one device of the same share (run_paired times it beside every run).
  std::vector<Tensor> want;
  for (const Tensor& im : images) want.push_back(g->forward(im));
  const Cluster cl = cluster_of(o, *g, dl);

  RuntimeOptions ro;
  ro.fp16 = o.fp16;
  ro.timeout_ms = o.timeout_ms;
  if (!o.secret_file.empty()) ro.creds.psk = load_psk_file(o.secret_file);
  if (!o.link.empty()) {
    ro.shaping.enabled = true, ro.shaping.link = cl.link;
    ro.worker_links = cl.worker_links();
  }
  std::vector<std::string> addrs;
  for (auto& w : workers) addrs.push_back(w->addr());
  HostRuntime host(g, hash, addrs, ro);

  std::vector<SchemeResult> results;
  for (Scheme s : o.schemes) {
    SchemeResult r;
    r.scheme = s;
    r.cpu_share = shares.how;
    Cluster now = cl;
    now.devices.resize(size_t(host.alive() + 1));
    reset_dilation_totals();
    const PairedRuns pr = run_paired(host, *g, now, s, images, o.runs, warmup);
    const DilationTotals spent = dilation_totals();
    for (int k = 1; k < kWorkKinds; ++k)  // not layers: the local runs compute here too
      r.host_data_path_ms[k] = double(spent.cpu_ns[k]) / 1e6 / (Work(k) == Work::plan ? 1 : o.runs + warmup);
    r.devices = pr.first_plan.devices;
    r.predicted_ms = pr.first_plan.predicted_ms;
    r.faults = pr.faults;
    r.peak_rss_kb = pr.last.peak_rss_kb;
    r.peak_rss_kb.resize(size_t(std::max(pr.plan.devices, 1)), 0);
    r.peak_rss_kb[0] = peak_rss_kb();
    for (const DeviceMemory& m : predict_memory(*g, now, pr.plan)) r.predicted_peak_mb.push_back(m.total_mb);
    compare_outputs(pr.warmup_out, want, o.fp16, r);
    r.bytes = pr.last.bytes_sent + pr.last.bytes_received;
    r.latency_ms = median(pr.dist_ms);
    r.local_ms = median(pr.local_ms);
    r.speedup = r.local_ms / r.latency_ms;
    if (!o.trace.empty()) {  // the last run as measured, and the plan's prediction beside it
      const std::string predicted = predicted_trace_path(o.trace);
      write_trace(o.trace, chrome_trace(pr.last, pr.plan.devices));
      write_trace(predicted, chrome_trace(pr.plan));  // the plan the last run ran
      r.wrote = {o.trace + " (the last run's measured timeline)",
                 predicted + " (the planner's predicted timeline)"};
    }
    results.push_back(r);
  }
  return results;
}

}  // namespace eb::dist
