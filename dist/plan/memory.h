// Predicted peak memory per device (issue 27), so that a plan can be checked against each
// board's memory before it runs.
#pragma once
#include <string>
#include <vector>

#include "core/graph.h"
#include "dist/plan/planner.h"

namespace eb::dist {

struct DeviceMemory {
  double weights_mb = 0;      // packed weights it holds (Layer::packed_bytes)
  double activations_mb = 0;  // its bands (live and cached), or a layer's source while it is packed;
                              // the host's cache sweep (host_sweep_mb)
  double total_mb = 0;        // both, plus kBaseMb (the host: and kHostHeapMb)
};

// What a process holds before any weights: the binary, the C++ and OpenMP runtimes, thread
// stacks touched (measured: an idle `edgeband worker`, VmRSS 2.1 MB; a running one more).
constexpr double kBaseMb = 4.0;
// The host's heap beyond that: its plans and timelines, the frames to and from each worker and
// the bands under kCachedBufferMin, with the holes glibc keeps between them (malloc_info after a
// 3-device MobileNet-V1 cluster run: 3.6-4.0 MB of heap for any device count, 2.2 before the runs;
// without it the host's peak read 14-17% over its prediction, workers 4% under theirs).
constexpr double kHostHeapMb = 3.0;

// A device holds the nodes of the blocks where it has rows and its slices of the split FC
// layers (dist/runtime/executor.h, load_for_plan); the host (device 0) also the rest of the
// tail, and while it runs the whole model (the local comparison, a dropped worker's work) one
// layer or FC slice it streams through memory (Graph::forward). For a host that loads its
// graph lazily, as infer and cluster do; a library host (dist/api) and the deadline path's
// hosts hold the whole model. The host is charged its own cache sweep (host_sweep_mb(c)).
std::vector<DeviceMemory> predict_memory(const Graph& g, const Cluster& c, const Plan& p);
// The cache sweep the host reads (kernels/cache.h), in MB: its profile's where the profile
// recorded one (DeviceProfile::sweep_mb: a Pi 4 whose kernel lists its 1 MB L2 sweeps 2 MB),
// else this machine's (64 MB on a server), which is what an older profile's board was charged.
// `infer` on one machine with another board's profile as the host's thus predicts that board's.
double host_sweep_mb(const Cluster& c);

// The first device whose predicted peak exceeds its board's memory (DeviceProfile::memory_mb;
// 0: unknown, no limit), or device -1 when every device fits.
struct MemoryShortfall {
  int device = -1;
  double need_mb = 0, have_mb = 0;
  std::string message(const Cluster& c) const;  // one line naming the device and the shortfall
};
MemoryShortfall memory_shortfall(const Graph& g, const Cluster& c, const Plan& p);

}  // namespace eb::dist
