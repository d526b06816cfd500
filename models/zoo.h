// Built-in model definitions. Names: "vgg16[:RES]", "mobilenet_v1[:ALPHA[:RES]]".
#pragma once
#include <cstdint>
#include <string>

#include "core/graph.h"

namespace eb::models {

struct ModelSpec {
  std::string family;  // "vgg16" | "mobilenet_v1"
  double alpha = 1.0;
  int resolution = 224;
  std::string canonical() const;  // "vgg16:224", "mobilenet_v1:0.5:160"
};

ModelSpec parse_model_name(const std::string& name);  // throws on unknown names
// The graph with BN and activations as separate nodes (as trained); call finalize() to fuse.
Graph build_unfused(const ModelSpec& spec);
// Deterministic synthetic weights (He-uniform convs, plausible BN statistics) from a seed.
void fill_synthetic(Graph& g, uint64_t seed = 2022);
// How a process holds a model's weights (issue 27): `full` keeps the untransformed weights
// beside the packed ones (converters, tests); `lean` packs layer after layer and frees each
// source, so each weight is held once (run, bench, plan, the deadline path's hosts); `lazy`
// loads nothing until Graph::load() asks for a node, or the slice of an FC layer, a plan gives
// this device (workers, and the hosts of infer and cluster, which stream the rest).
enum class Hold { full, lean, lazy };
// build_unfused + fill_synthetic + finalize.
Graph build_synthetic(const std::string& name, uint64_t seed = 2022, Hold hold = Hold::full);

// TF "SAME" padding for one dimension: {before, after}.
struct Pad {
  long before, after;
};
Pad same_padding(long in, long k, long stride);

}  // namespace eb::models

namespace eb::models {
// The model to run: from a weights file when one is given (its model must match `name` when a
// name is given), else the built-in definition with synthetic weights. `hash` receives the
// model identity (weights checksum; for synthetic models a hash of name and seed).
// A weights file is checked whole at once either way; `lazy` then reads each layer's section
// from it when Graph::load asks (load_weights_lazy).
Graph load_model(const std::string& name, const std::string& weights_path, uint64_t* hash = nullptr,
                 Hold hold = Hold::full);
}  // namespace eb::models
