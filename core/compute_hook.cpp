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

}  // namespace eb
