// One vector vocabulary for every ISA: xsimd batches for SIMD arches, a plain float for the
// scalar fallback, so each microkernel is written once and instantiated per arch.
#pragma once
#include <cstddef>

#ifndef EB_SCALAR_ONLY
#include <xsimd/xsimd.hpp>

#include <type_traits>
#endif

namespace eb::kernels::simd {

struct scalar_arch {};

template <class Arch>
struct Vec;

#ifndef EB_SCALAR_ONLY
template <class Arch>
struct Vec {
  using B = xsimd::batch<float, Arch>;
  static constexpr size_t n = B::size;
  static B load(const float* p) { return B::load_unaligned(p); }
  static void store(float* p, const B& v) { v.store_unaligned(p); }
  static B set1(float x) { return B(x); }
  static B zero() { return B(0.0f); }
  // The project builds with -ffp-contract=off (the scalar path must round the same on every
  // architecture), and xsimd 8's fma for avx512f is the generic a*b+c: without the intrinsic it
  // compiles to a multiply and an add. fma3<avx2> and neon64 map to vfmadd/fmla themselves.
  // tests/check_fma.sh disassembles the built kernels and fails if the FMAs are gone.
  static B fma(const B& a, const B& b, const B& c) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<Arch, xsimd::avx512f>) return B(_mm512_fmadd_ps(a, b, c));
#endif
    return xsimd::fma(a, b, c);
  }
  static B max(const B& a, const B& b) { return xsimd::max(a, b); }
  static B min(const B& a, const B& b) { return xsimd::min(a, b); }
};
#endif

template <>
struct Vec<scalar_arch> {
  using B = float;
  static constexpr size_t n = 1;
  static B load(const float* p) { return *p; }
  static void store(float* p, B v) { *p = v; }
  static B set1(float x) { return x; }
  static B zero() { return 0.0f; }
  static B fma(B a, B b, B c) { return a * b + c; }
  static B max(B a, B b) { return a > b ? a : b; }
  static B min(B a, B b) { return a < b ? a : b; }
};

}  // namespace eb::kernels::simd
