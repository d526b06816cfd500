// The native weights format (.ebw), little-endian:
//   0  char[8]  magic "EBWEIGHT"
//   8  u32      format version (1)
//   12 u32      flags (0)
//   16 u64      header length H
//   24 u64      data length D
//   32 char[H]  JSON header: model name, input shape, normalisation, labels, and the nodes
//               (type, inputs, attributes, params: name, dims, byte offset into data)
//   .. pad to 64 bytes, then D bytes of float32 tensor data (each tensor 64-byte aligned)
//   .. u64      checksum: hash64 of every byte before it
// Any truncation, corruption or inconsistency is reported as a WeightsError naming the file.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/graph.h"

namespace eb {

struct WeightsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

uint64_t hash64(const void* data, size_t n, uint64_t seed = 0);

// Writes the graph (fused) and its weights; returns the checksum, which is also the model's
// identity on the network. Writes to a temporary file and renames, so no partial file remains.
uint64_t save_weights(Graph& g, const std::string& path);
// Loads, verifies and finalizes a graph. checksum (optional) receives the model identity.
// keep_sources false: each layer's untransformed weights are freed once packed (Graph::keep_sources).
Graph load_weights(const std::string& path, uint64_t* checksum = nullptr, bool keep_sources = true);
// Checks the file as load_weights does (its checksum streamed: nothing of it stays in memory),
// fills the small parameters, and leaves the convolution and FC weights to Graph::load, which
// reads each layer's section (for a slice of an FC layer, only those rows) when a plan needs it.
// What a worker serving a converted model holds: its share of the file, not the file.
Graph load_weights_lazy(const std::string& path, uint64_t* checksum = nullptr);

}  // namespace eb
