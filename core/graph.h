// A network: layers in topological order, each reading the outputs of earlier nodes (-1 is the
// network input). Chains (VGG, MobileNet) and residual graphs (an Add of two branches) share
// one band machinery: the rows each node must produce are found by walking the receptive field
// backwards from the rows wanted at the end of a block.
#pragma once
#include <array>
#include <functional>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

#include "core/layer.h"

namespace eb {

struct Node {
  std::string name;
  std::unique_ptr<Layer> layer;
  std::vector<int> inputs;  // node ids, -1 = network input
};

// Per-channel input normalisation: x' = (x - mean) / std, x in [0, 255].
struct Normalization {
  std::array<float, 3> mean{127.5f, 127.5f, 127.5f};
  std::array<float, 3> std{127.5f, 127.5f, 127.5f};
};

class Graph {
 public:
  std::string model;  // canonical model name, e.g. "mobilenet_v1:0.5:160"
  Shape input;
  Normalization norm;
  std::vector<std::string> labels;  // optional class names
  int label_offset = 0;             // index of the first real class (1 with a background class)

  // Appends a node reading `inputs` (default: the previous node). Returns its id.
  int add(std::string name, std::unique_ptr<Layer> layer, std::vector<int> inputs = {-2});
  // Fuses BatchNorm and activations into convolutions, infers shapes, and packs weights unless
  // pack_weights is false (the fuzzers check structure without paying for the packing).
  void finalize(bool pack_weights = true);
  // Repacks every layer's weights for the active kernel table.
  void prepare();

  // --- weight memory (issue 27) ----------------------------------------------------------
  // False: prepare() packs each layer and frees its untransformed weights, one layer after
  // another, so the model is held once (params() then throw; set before finalize()). What run,
  // bench, hosts and workers use; converters and tests keep the sources.
  bool keep_sources = true;
  // A lazy graph: finalize(false) chooses kernels only and load() fills (through `fill`, which
  // writes a node's params(), or for a slice of output channels of a fully connected layer
  // only those rows: FullyConnected::source_rows), packs and frees each node's weights when a
  // plan needs them.
  using WeightFill = std::function<void(Node&, RowRange channels)>;
  void set_weight_fill(WeightFill fill) { fill_ = std::move(fill); }
  bool lazy() const { return bool(fill_); }
  // Makes node i ready for forward() (channels empty) or for forward_channels() over
  // `channels`. Thread-safe (a worker's sessions share one graph); nothing to do when ready.
  void load(int i, RowRange channels = {}) const;
  // Whether node i is ready for that (thread-safe, as load()).
  bool holds(int i, RowRange channels = {}) const;
  // Frees node i's packed weights (Layer::unload); load() can fill them again.
  void unload(int i) const;
  // A lazy graph runs a node it does not hold by loading it, running it and releasing it (an
  // FC layer in slices of about this many bytes of weights), and loads again what it held: the
  // host holds only its plan's share, yet runs the whole model for the local comparison, a
  // profile or a dropped worker's work. Only the computing is timed (layer_ms). Not for a graph
  // that several threads run at once (a worker loads its share first and never streams).
  static constexpr size_t kStreamSliceBytes = size_t(16) << 20;
  // Node n of a lazy graph split by channels (an FC layer) in such slices: loads each, calls
  // run(c0, c1), releases it; then loads again the slice the node held before.
  void for_each_slice(int n, const std::function<void(int c0, int c1)>& run) const;
  // Bytes of weights the layers hold now.
  size_t weight_bytes() const;

  int size() const { return int(nodes_.size()); }
  const Node& node(int i) const { return nodes_.at(size_t(i)); }
  Node& node(int i) { return nodes_.at(size_t(i)); }
  Shape shape_of(int id) const { return id < 0 ? input : nodes_.at(size_t(id)).layer->output_shape(); }
  Shape output_shape() const { return shape_of(size() - 1); }
  double flops() const;

  // Full-image inference. layer_ms (optional) receives each node's wall time (a streamed
  // node's computing only, not its loading).
  Tensor forward(const Tensor& in, std::vector<double>* layer_ms = nullptr) const;

  // --- bands -----------------------------------------------------------------------------
  // A block [first, last) may start before node `first` only if node first-1 (or the input)
  // is the one tensor crossing that boundary.
  bool is_cut(int first) const;
  // First node of the host-only tail (global pooling, FC, softmax); size() if none.
  int spatial_end() const;
  // Rows each node of block [first, last) must produce so that node last-1 yields `out`;
  // element 0 is the block input (node first-1 or the network input), element k+1 node first+k.
  std::vector<RowRange> block_needs(int first, int last, RowRange out) const;
  // The same into `need`, whose storage is reused: the planner asks this for every zone of
  // every plan it simulates.
  void block_needs(int first, int last, RowRange out, std::vector<RowRange>& need) const;
  // Element 0 alone: the rows of the block input that `out` needs.
  RowRange block_input_rows(int first, int last, RowRange out) const;
  // Runs block [first, last) on a band of its input and returns rows `out` of its last node.
  Band run_block(int first, int last, const Band& input, RowRange out,
                 std::vector<double>* layer_ms = nullptr) const;

 private:
  // `timed`: each piece meets its weights in memory and its input in the caches, as a board
  // holding the layer would (kernels/cache.h), so that layer_ms times what that board runs.
  double forward_streamed(int n, const std::vector<const Band*>& ins, Band& out, bool timed) const;
  std::vector<Node> nodes_;
  bool finalized_ = false;
  WeightFill fill_;
  std::unique_ptr<std::mutex> load_mu_ = std::make_unique<std::mutex>();
};

// Milliseconds of one forward of `in`: wall time, or where a lazy graph streams layers it
// does not hold, the sum of its layers' computing, loading excluded (what a device holding the
// whole model would take). The output goes to `out` if given.
double timed_forward_ms(const Graph& g, const Tensor& in, Tensor* out = nullptr);

}  // namespace eb
