#include "core/compute_hook.h"

#include <atomic>

namespace eb {
namespace {
std::atomic<ComputeHook*> g_hook{nullptr};
}  // namespace

void set_compute_hook(ComputeHook* hook) {
  g_hook.store(hook);
}

ComputeHook* compute_hook() {
  return g_hook.load(std::memory_order_acquire);
}

const char* work_name(Work w) {
  switch (w) {
    case Work::layer: return "layer";
    case Work::encode: return "encode";
    case Work::decode: return "decode";
    case Work::seal: return "seal";
    case Work::open: return "open";
    case Work::plan: return "plan";
  }
  return "?";
}

}  // namespace eb
