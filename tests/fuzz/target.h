// Every fuzz target is one function, eb_fuzz_NAME(data, size). The libFuzzer entry point is
// added only in the fuzz build; the unit tests compile the same files with EB_FUZZ_REPLAY and
// feed tests/fuzz/regressions/NAME-* through the very code that once crashed.
#pragma once
#include <cstddef>
#include <cstdint>

#define EB_FUZZ_TARGETS(X) \
  X(import) X(weights) X(frame) X(handshake) X(image) X(json) X(trace) X(profile) X(labels) \
  X(hello) X(reply)

#define EB_FUZZ_DECLARE(name) int eb_fuzz_##name(const uint8_t* data, size_t size);
EB_FUZZ_TARGETS(EB_FUZZ_DECLARE)

#ifdef EB_FUZZ_REPLAY
#define EB_FUZZ_ENTRY(name)
#else
#define EB_FUZZ_ENTRY(name)                                                    \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    return eb_fuzz_##name(data, size);                                         \
  }
#endif

// EB_FUZZ_TARGET(json) { ...body using data, size... }
#define EB_FUZZ_TARGET(name) \
  EB_FUZZ_ENTRY(name)        \
  int eb_fuzz_##name(const uint8_t* data, size_t size)
