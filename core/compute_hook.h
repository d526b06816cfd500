// A hook around each compute section of graph execution: one layer over a band of its output
// rows, or one channel-split layer over a slice of its output channels. The executors
// (Graph::run_block, the distributed executor's tail slices) bracket every section with a
// ComputeScope; a hook installed process-wide sees each section on the thread that computes it.
// None is installed by default, and core never names what is attached: the testbed's time
// dilation (dist/testbed/dilation.h) is today's one user.
#pragma once
#include <cstdint>

namespace eb {

class Layer;

struct ComputeSection {
  enum class Axis : uint8_t { rows, channels };
  const Layer* layer = nullptr;  // nullptr: unnamed work
  Axis axis = Axis::rows;
  int begin = 0, end = 0;  // [begin, end) along `axis` of the layer's output
};

class ComputeHook {
 public:
  virtual ~ComputeHook() = default;
  virtual void enter(const ComputeSection& s) = 0;  // before the section, on its thread
  virtual void leave(const ComputeSection& s) = 0;  // after it (also when it throws), same thread
};

// Installs `hook` for every thread (not owned; it must outlive its use); nullptr removes it.
// A section already open keeps the hook it entered.
void set_compute_hook(ComputeHook* hook);
ComputeHook* compute_hook();

class ComputeScope {
 public:
  explicit ComputeScope(const ComputeSection& s) : s_(s), hook_(compute_hook()) {
    if (hook_) hook_->enter(s_);
  }
  ~ComputeScope() {
    if (hook_) hook_->leave(s_);
  }
  ComputeScope(const ComputeScope&) = delete;
  ComputeScope& operator=(const ComputeScope&) = delete;

 private:
  ComputeSection s_;
  ComputeHook* hook_;
};

}  // namespace eb
