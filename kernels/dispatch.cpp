#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/microkernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace eb::kernels {

#if !EB_HAVE_AVX2
const KernelTable* avx2_table() { return nullptr; }
#endif
#if !EB_HAVE_AVX512
const KernelTable* avx512_table() { return nullptr; }
#endif
#if !EB_HAVE_NEON
const KernelTable* neon_table() { return nullptr; }
#endif

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "?";
}

Isa parse_isa(const char* name) {
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon})
    if (std::strcmp(name, isa_name(i)) == 0) return i;
  throw std::invalid_argument(std::string("unknown ISA '") + name +
                              "' (expected scalar, avx2, avx512 or neon)");
}

#if defined(__x86_64__) || defined(__i386__)
// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
static bool cpu_has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#endif

static bool cpu_runs(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
#if defined(__x86_64__) || defined(__i386__)
    case Isa::avx2:  // and F16C (the fp16 wire), which every AVX2 CPU has
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && cpu_has_f16c();
#else
    case Isa::avx2:
    case Isa::avx512: return false;
#endif
    case Isa::neon:
#if defined(__aarch64__)
      return true;  // Advanced SIMD is mandatory on aarch64.
#else
      return false;
#endif
  }
  return false;
}

const KernelTable* table_for(Isa isa) {
  if (!cpu_runs(isa)) return nullptr;
  switch (isa) {
    case Isa::scalar: return scalar_table();
    case Isa::avx2: return avx2_table();
    case Isa::avx512: return avx512_table();
    case Isa::neon: return neon_table();
  }
  return nullptr;
}

static const KernelTable* choose() {
  if (const char* env = std::getenv("EDGEBAND_ISA"); env && *env) {
    const KernelTable* t = table_for(parse_isa(env));
    if (!t) throw std::runtime_error(std::string("EDGEBAND_ISA=") + env + " is not available here");
    return t;
  }
  for (Isa i : {Isa::avx512, Isa::avx2, Isa::neon})
    if (const KernelTable* t = table_for(i)) return t;
  return scalar_table();
}

static const KernelTable*& current() {
  static const KernelTable* t = choose();
  return t;
}

const KernelTable& active() { return *current(); }

void set_active(Isa isa) {
  const KernelTable* t = table_for(isa);
  if (!t) throw std::runtime_error(std::string("ISA ") + isa_name(isa) + " is not available here");
  current() = t;
}

double measure_fma_peak_gflops(const KernelTable& t, double seconds) {
  using clock = std::chrono::steady_clock;
  size_t iters = 1 << 14;
  volatile float sink = 0;
  double best = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const auto t0 = clock::now();
    sink = sink + t.fma_probe(iters);
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    if (s < seconds / 5) {  // too short to time: longer, not counted
      iters *= 2, --attempt;
      continue;
    }
    best = std::max(best, double(iters) * double(t.fma_probe_flops) / s / 1e9);
  }
  return best;
}

}  // namespace eb::kernels
