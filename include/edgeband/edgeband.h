// edgeband's public API: the one header a program using the installed library includes.
//
//   find_package(edgeband REQUIRED)
//   target_link_libraries(app PRIVATE edgeband::edgeband)
//
// It loads a model, classifies an image on this machine, plans one image's inference for a
// cluster of devices, and runs that plan as the host over `edgeband worker` processes. Every
// function throws std::exception subclasses with a readable what() on bad input (a missing
// file, an unknown model, a worker that cannot be reached). Examples: apps/examples/.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace edgeband {

// One class of a classifier's output.
struct Prediction {
  int index = 0;      // class index in the model's output
  float probability = 0;
  std::string label;  // "" when the model carries no labels
};

class Model {
 public:
  // `name`: a built-in model, "vgg16[:RES]" or "mobilenet_v1[:ALPHA[:RES]]", with synthetic
  // weights; `weights_path`: a native .ebw file (`edgeband export`, `edgeband convert`), whose
  // model must match `name` when both are given ("" = the file's own model).
  static Model load(const std::string& name, const std::string& weights_path = "");
  std::string name() const;  // canonical, e.g. "mobilenet_v1:0.25:128"
  int input_size() const;    // the square input's side in pixels
  // Classifies an image file (JPEG, PNG, BMP, PPM, ...) on this machine: centre crop, resize,
  // normalise, one inference. The `top` most probable classes, most probable first.
  std::vector<Prediction> classify(const std::string& image_path, int top = 5) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

// How one image is split: MoDNN (layer by layer), DPFP (fused blocks), HALP (host-assisted).
enum class Scheme { local, modnn, dpfp, halp };
Scheme parse_scheme(const std::string& name);  // "local", "modnn", "dpfp", "halp"

struct ClusterSpec {
  int devices = 1;                   // the host and devices - 1 workers, each like this machine
  std::string link = "1gbit,0.2ms";  // every worker's link to the host: "RATE,DELAY"
};

// What the planner decided and predicts.
struct PlanSummary {
  Scheme scheme = Scheme::local;
  int devices = 1;
  int blocks = 0;           // fused blocks of the spatial layers
  double predicted_ms = 0;  // one image, from the cost model
  uint64_t bytes = 0;       // moved over all links per image
  std::string json;         // the whole plan, as `edgeband plan --json` prints it
};

// Plans one image of `model` for the cluster. Profiles this machine first (a few seconds for
// large models): every device is assumed to be as fast as this one.
PlanSummary plan(const Model& model, const ClusterSpec& cluster, Scheme scheme);

struct HostOptions {
  std::string link = "1gbit,0.2ms";  // what the planner assumes for every worker's link
  int timeout_ms = 10000;            // a silent worker is dropped after this long
  // Keys (docs/SECURITY.md): the pre-shared key of `edgeband worker --secret-file`, or this
  // host's key with the workers' public keys (`--key` and `--authorized-keys` on the workers).
  // Without, workers must be on this machine unless `insecure` (nothing encrypted).
  std::string secret_file;
  std::string key_file, worker_keys_file;
  bool insecure = false;
};

struct DistributedResult {
  std::vector<Prediction> top;  // as Model::classify: bit-identical to the local answer
  double ms = 0;                // wall time of the distributed inference
  double predicted_ms = 0;      // what the planner predicted
  uint64_t bytes = 0;           // sent and received by the host
  int faults = 0;               // workers dropped (their share was recomputed on the host)
};

// This process as the host (device 0) of a cluster of `edgeband worker` processes.
class Host {
 public:
  // Connects to every worker ("HOST:PORT") and checks they hold the same model.
  Host(const Model& model, const std::vector<std::string>& workers, HostOptions options = {});
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;
  int workers_alive() const;
  // Plans for the live workers and classifies one image distributed across them.
  DistributedResult classify(const std::string& image_path, Scheme scheme = Scheme::halp,
                             int top = 5);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgeband
