// Device profile: measured time of every layer as a function of band height on one device,
// fitted as fixed + per_row * rows, where rows counts the rows the kernel computes: a band of a
// Winograd layer computes whole tiles (Layer::row_granule: 4 rows, 6 on large maps, 2 on small ones), so 17 rows
// of an F(4x4) layer cost 20. Produced by
// `edgeband profile`, saved as JSON, and read by the planner (one file per board).
#pragma once
#include <string>
#include <vector>

#include "core/graph.h"
#include "core/json.h"

namespace eb::dist {

struct LayerCost {
  double fixed_ms = 0;
  double per_row_ms = 0;
  // Share of the layer's output values that are not zero (measured on a whole inference where
  // its output is a block boundary, else 1): fp32 frames elide zeros, so it sizes the frames.
  double nonzero = 1;
};

// CPU time per byte of a frame spent outside the layers (measured by the runtime:
// dist/runtime/data_path.h). Encode (zero elision, fp16) and decode (into the feature map) run on
// a device's compute thread; the checksum or the encryption on the connection's own thread, in
// line with its wire, once at each end. All 0: not measured (an older profile), not charged.
struct DataPathCost {
  double encode_ns = 0, decode_ns = 0;
  double checksum_ns = 0;  // an unencrypted link
  double aead_ns = 0;      // an encrypted one (ChaCha20-Poly1305)
  DataPathCost scaled(double k) const { return {encode_ns * k, decode_ns * k, checksum_ns * k, aead_ns * k}; }
};

struct DeviceProfile {
  std::string name;
  std::string model;
  int threads = 1;
  std::vector<LayerCost> layers;  // one per graph node
  DataPathCost data_path;
  double memory_mb = 0;  // the board's usable memory (`profile --memory`); 0: unknown, no limit
  // The cache sweep this board's profile and streamed local runs read (kernels::cache_sweep_bytes
  // there: twice its largest cache, 2-64 MB), which a host holds; 0: not recorded (an older
  // profile, an estimate), so a plan charges the planning machine's.
  double sweep_mb = 0;
  double layer_ms(int node, int rows) const;  // `rows` computed rows
  // Rows `rows` of node `node`, widened to the rows its kernel computes.
  double band_ms(const Graph& g, int node, RowRange rows) const;
  double full_ms(const Graph& g) const;  // whole network on this device
  Json to_json() const;
  static DeviceProfile from_json(const Json& j);  // validates; throws std::runtime_error
};

// Times every layer on the whole map and, where the map is tall enough, on one row granule, each
// time with its weights evicted from the caches (Layer::evict_weights, then kernels::sweep_caches)
// and its input read back into them, in reps + 1 rounds over
// the layers (the first warms up) each with a whole inference (a lazy host's streamed FC layers:
// slice by slice before the rounds), then scales the fit to the time of the whole inferences
// (see calibrate). Each time is the median of `reps`, or with `least` the
// fastest: what an emulated slow device is charged (F x the least CPU time seen,
// dist/testbed/dilation.h).
DeviceProfile measure_profile(const Graph& g, const std::string& name, int reps,
                              bool least = false);
// "900M", "1G", "512MiB", "2GB", "0" (unknown: no limit) in MB (binary units); throws
// std::invalid_argument naming the spelling.
double parse_memory_mb(const std::string& spec);
// This machine's usable memory (MemAvailable), in MB; 0 where it cannot be read.
double available_memory_mb();
// Scales every layer's cost so that the whole model costs whole_ms. Layer timings are short: a
// device whose CPU is throttled (a cgroup CPU quota, as `edgeband cluster` gives each emulated
// device; a hot board) runs them at burst speed, and predictions from them alone were half a
// throttled device's real latency.
void calibrate(DeviceProfile& p, const Graph& g, double whole_ms);
DeviceProfile load_profile(const std::string& path, const Graph& g);  // checks model and layers
void save_profile(const DeviceProfile& p, const std::string& path);

}  // namespace eb::dist

namespace eb::dist {
// A FLOP-based estimate (per_row = row FLOPs / rate, plus a fixed cost per layer) for devices
// that cannot be measured here, e.g. a Raspberry Pi 4 at ~10 GFLOP/s; deterministic for tests.
DeviceProfile estimate_profile(const Graph& g, const std::string& name, double gflops,
                               double fixed_ms = 0.02);
}  // namespace eb::dist
