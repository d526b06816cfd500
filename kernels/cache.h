// Cache maintenance for measurements: what a board with a small cache reads from memory (a
// large layer's weights, once per inference) should be timed that way here too.
#pragma once
#include <cstddef>
#include <string>

namespace eb::kernels {

// Writes back and drops the cache lines of [p, p + bytes) from every cache level (x86 clflush,
// AArch64 dc civac); elsewhere nothing. Contents are unchanged.
void evict_from_caches(const void* p, size_t bytes);
// Bytes evict_from_caches has been asked to drop in this process: what tests check, since a
// cache's state cannot be observed without timing it.
size_t evicted_bytes();

// Reads a buffer of cache_sweep_bytes() (mapped on first use and kept): the caches then hold it,
// as they hold other layers' data when a plan meets a layer again. clflush alone is not enough
// everywhere: on this project's AMD EPYC VM a 16 MB range just flushed read at 30-38 GB/s,
// against 23-24 after a 64 MB sweep, so the profile timed fc6's slices 30% faster than a device
// holding the layer ran them (docs/PERFORMANCE.md).
void sweep_caches();
// Twice the largest cache this machine reports, within [2 MB, 64 MB] (a VM may report the
// whole socket's L3: 508 MB here, of which one core reaches 32).
size_t cache_sweep_bytes();
// Sweeps so far in this process, for tests.
size_t sweep_count();
// A sysfs cache size ("48K", "1024K", "32M", "512") in bytes; 0 if unreadable.
size_t parse_cache_size(const std::string& text);
// Reads a byte per line of [p, p + bytes): after a sweep, what a layer's input band is in an
// inference, just written by the layer before.
void read_into_caches(const void* p, size_t bytes);

}  // namespace eb::kernels
