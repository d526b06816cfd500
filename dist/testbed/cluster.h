// `edgeband cluster`: a whole testbed on one machine. Spawns N-1 worker processes on 127.0.0.1,
// optionally gives every device (host included) an equal CPU share with cgroup v1 CFS quotas,
// runs local and distributed inference with link shaping, checks that the distributed output
// equals the local output, and reports latency, speedup and bytes per scheme.
#pragma once
#include <string>
#include <vector>

#include "core/compute_hook.h"
#include "dist/plan/planner.h"
#include "dist/runtime/host.h"
#include "dist/testbed/boards.h"

namespace eb::dist {

struct ClusterOptions {
  std::string model = "vgg16";
  std::string weights;
  int devices = 3;
  std::vector<Scheme> schemes{Scheme::halp};
  std::string link;  // "" = unshaped loopback
  int batch = 1;
  int runs = 3;
  int warmup = 0;         // untimed distributed runs first; 0 = default_warmup(dilate)
  int threads = 0;        // per device; 0 = cores / devices (at least 1)
  bool cpu_share = true;  // cgroup v1 quota per device when available
  double cores_per_device = 0;  // the quota; 0 = cores / devices (the whole machine is shared)
  bool pin = false;             // CpuShares' cpuset pinning
  // Slow devices (dist/testbed/dilation.h; one thread each, instead of CPU quotas), as comma
  // lists with one item for all devices or one per device, host first; at most one is given
  // (dist/testbed/boards.h): factors, boards (calibrated here), or target times of the model.
  std::string dilate, board, dilate_to;
  std::string memory;  // each board's memory (Cluster::set_memory), "" = no limit
  // Dilated devices take turns to compute (set_dilation_turns): "" = while their sections fill
  // at most half of one core (the sum of 1/F over the devices <= 0.5), through a lock file of
  // this run's own; "none" = never; else that lock file.
  std::string dilate_lock;
  bool fp16 = false;
  bool edge_first = false;
  int timeout_ms = 30000;
  std::string trace;  // Chrome trace of the last run of the last scheme
  std::string secret_file;  // set: workers and host authenticate with it
  std::string self_exe = "/proc/self/exe";
};

struct SchemeResult {
  Scheme scheme;
  int devices = 1;
  double latency_ms = 0, local_ms = 0, speedup = 0, predicted_ms = 0;
  bool equal = false;  // bit-identical to local (fp32 wire) / same top-1 (fp16 wire)
  float max_abs_dev = 0;
  uint64_t bytes = 0;  // per batch, all links, both directions
  int faults = 0;
  // Measured peak RSS per device in KiB after this scheme's runs ([0]: the host process; a
  // worker's is its process's high-water mark, so it includes the schemes run before).
  std::vector<long> peak_rss_kb;
  std::vector<double> predicted_peak_mb;  // per device, for the last plan, as peak_rss_kb (dist/plan/memory.h)
  std::string cpu_share;  // how the CPU was shared
  // Dilated runs: the host's CPU time per distributed run outside layers, per kind of work
  // (index: int(Work); dist/testbed/dilation.h; planning: in all, it plans before the runs); a
  // board spends F x that.
  double host_data_path_ms[kWorkKinds] = {};
  std::vector<std::string> wrote;  // files written (--trace), each with what it holds
};

// Where `cluster --trace run.json` puts the predicted timeline: run.predicted.json.
std::string predicted_trace_path(const std::string& trace);

// `slowdown`, when given, receives each device's dilation and where it came from.
std::vector<SchemeResult> run_cluster(const ClusterOptions& o, std::vector<Slowdown>* slowdown = nullptr);

// Plans for `images` (c.input_levels is set from them: images_palette_levels).
// `warmup` untimed distributed runs (at least one), then `runs` distributed runs of `images`, each
// paired with a local run of the same images in this process, so that a machine whose speed
// drifts moves both sides of the ratio alike (`cluster` and `infer` both measure this way). A
// worker the host drops is planned around from the next run on.
// Before every distributed run the host pings its workers, untimed (HostRuntime::ping): they sat
// idle through the local run, and on a VM a process idle that long can take 2-30 ms to wake up
// (README, Measured performance, "The start of each call"), which the first halo exchange would
// charge to the run.
struct PairedRuns {
  Plan first_plan, plan;           // the plan of the warm-up and of the last run
  std::vector<Tensor> warmup_out;  // the warm-up's outputs
  InferStats last;                 // the last run's statistics
  std::vector<double> dist_ms, local_ms;
  std::vector<double> ping_ms;  // per timed run: the slowest worker's round trip before it
  int faults = 0;  // over every run, warm-up included
  std::vector<std::string> fault_messages;
  std::vector<InferStats::Load> loads;  // every run's plan loading on the workers (new plans)
};
PairedRuns run_paired(HostRuntime& host, const Graph& g, Cluster c, Scheme s,
                      const std::vector<Tensor>& images, int runs, int warmup = 1);
// One warm-up run normally. Under time dilation three: a device's layer takes F x the least CPU
// time its process has seen for that layer and band (dist/testbed/dilation.h), and a band a plan cuts
// is new to the workers, whereas the local run's full-height layers have been timed several
// times already (profile, reference output); until those minima settle the distributed runs
// are stretched from noisier first samples.
int default_warmup(double dilate);

// cgroup v1 CPU quotas: one group per device, quota = cores / devices unless given; `how` says
// what was done (or why not). Groups are removed by the destructor.
// pin: a cpuset group per device too: max(1, cores / devices) cores each, the host's alone and
// the workers round-robin on the rest, so the host's compute never waits for a worker's CPU.
class CpuShares {
 public:
  // cores_per_device <= 0: the machine's cores split evenly.
  CpuShares(int devices, bool want, double cores_per_device = 0, bool pin = false);
  ~CpuShares();
  CpuShares(const CpuShares&) = delete;
  CpuShares& operator=(const CpuShares&) = delete;
  void assign(int device, int pid);
  std::string how;

 private:
  void set_quotas(int devices, unsigned cores, double cores_per_device);
  void pin_devices(int devices, unsigned cores);
  std::vector<std::string> dirs, cpuset_dirs;
};

// A local `edgeband worker` child process on 127.0.0.1 (port chosen by the OS and announced on
// its stdout). The destructor stops it (SIGTERM, then SIGKILL after 10 s) and reaps it.
class WorkerProcess {
 public:
  WorkerProcess(const std::string& exe, int threads, const std::string& weights = "",
                const std::vector<std::string>& extra_args = {});
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;
  int pid() const { return pid_; }
  const std::string& addr() const { return addr_; }
  // SIGTERM, then SIGKILL after `grace_ms`; returns the wait status (see waitpid(2)).
  int stop(int grace_ms = 10000);

 private:
  int pid_ = -1;
  std::string addr_;
};

}  // namespace eb::dist
