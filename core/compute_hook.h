// A hook around each section of CPU work on a device's data path: one layer over a band of its
// output rows, one channel-split layer over a slice of its output channels, and the work around
// them (encoding rows for the wire, decoding them into feature maps, sealing and opening frames,
// planning). The executors, the peer and the host bracket every section with a ComputeScope; a
// hook installed process-wide sees each section on the thread that runs it.
// None is installed by default, and core never names what is attached: the testbed's time
// dilation (dist/testbed/dilation.h) is today's one user.
#pragma once
#include <cstdint>

namespace eb {

class Layer;

// What a section spends its CPU on. Not a layer: `layer` is nullptr.
enum class Work : uint8_t {
  layer,   // a layer's rows or channel slice
  encode,  // feature rows to a ROWS frame's payload (fp16, zero elision, palettes)
  decode,  // a ROWS payload into a feature map (copy, widen, expand, look up)
  seal,    // authenticated encryption of a frame (or its checksum, unsealed)
  open,    // decryption and authentication of a frame (or its checksum check)
  plan,    // the planner, when a host plans or re-plans
};
constexpr int kWorkKinds = 6;
const char* work_name(Work w);

struct ComputeSection {
  enum class Axis : uint8_t { rows, channels };
  const Layer* layer = nullptr;  // nullptr: not a layer (see `work`)
  Axis axis = Axis::rows;
  int begin = 0, end = 0;  // [begin, end) along `axis` of the layer's output
  Work work = Work::layer;
};

// A section of data-path work that is not a layer.
inline ComputeSection section_of(Work w) {
  ComputeSection s;
  s.work = w;
  return s;
}

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
