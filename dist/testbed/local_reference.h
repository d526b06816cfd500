// The local side of `cluster`'s speedups: one more emulated device, a child process holding the
// whole model, that times a local inference whenever the host asks.
//
// Why not the host itself: a host holds only its share of the model (issue 27), so its local run
// streams every other layer through memory, and on the 2-core VM the distributed run after such
// a pass computed its deep layers ~40% slower (a worker's CPU per run 33-37 ms after a warm-up
// without local runs, 46-54 ms after each local pass; docs/PERFORMANCE.md, "The local reference
// on a board of its own"). A board that holds the whole model is what "one device" means, and
// the host's own memory stays its share.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "core/graph.h"
#include "core/tensor.h"

namespace eb::dist {

// The deterministic pseudo-images `cluster` infers: image i of a batch.
std::vector<Tensor> pseudo_images(const Shape& input, int batch);

// How the child is started: `edgeband local-reference` with these settings.
struct LocalReferenceOptions {
  std::string exe = "/proc/self/exe";
  std::string model, weights;  // as `cluster` was given them
  int batch = 1;
  int threads = 1;
  double dilate = 1;       // the host's factor: the reference is a board like it
  std::string turns;       // the dilation lock file, "" = none
};

// Parent side. The constructor returns once the child has loaded the model and run every image
// once (untimed); throws std::runtime_error if it could not start. The destructor closes its
// stdin, which ends it, and reaps it.
class LocalReference {
 public:
  explicit LocalReference(const LocalReferenceOptions& o);
  ~LocalReference();
  LocalReference(const LocalReference&) = delete;
  LocalReference& operator=(const LocalReference&) = delete;
  int pid() const { return pid_; }
  // Milliseconds of one local inference of the batch's images on the reference device (the sum
  // over the images). Throws std::runtime_error if the child is gone or answers nonsense.
  double time_ms();

 private:
  void stop();  // closes the pipes, waits up to 10 s for the child, then kills it
  int pid_ = -1;
  FILE* to_ = nullptr;    // the child's stdin
  FILE* from_ = nullptr;  // the child's stdout
};

// Child side (`edgeband local-reference`): runs each of `images` once, prints "READY", then
// answers every line "run" on `in` with "MS <milliseconds>" (timed_forward_ms summed over the
// images) on `out`, until end of input. Returns 0, or 1 on a line it does not know.
int serve_local_reference(const Graph& g, const std::vector<Tensor>& images, FILE* in, FILE* out);

}  // namespace eb::dist
