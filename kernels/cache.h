// Cache maintenance for measurements: what a board with a small cache reads from memory (a
// large layer's weights, once per inference) should be timed that way here too.
#pragma once
#include <cstddef>

namespace eb::kernels {

// Writes back and drops the cache lines of [p, p + bytes) from every cache level (x86 clflush,
// AArch64 dc civac); elsewhere nothing. Contents are unchanged.
void evict_from_caches(const void* p, size_t bytes);
// Bytes evict_from_caches has been asked to drop in this process: what tests check, since a
// cache's state cannot be observed without timing it.
size_t evicted_bytes();

}  // namespace eb::kernels
