// One small interface for every operator (after ncnn's Layer): shape, receptive field, FLOPs,
// weights, and forward on any band of output rows.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/tensor.h"

namespace eb {

enum class Activation { none, relu, relu6 };
const char* activation_name(Activation a);
Activation parse_activation(const std::string& s);

// A named weight tensor owned by a layer.
struct Param {
  std::string name;
  std::vector<long> dims;
  std::vector<float>* data;
};

class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string type() const = 0;
  virtual int num_inputs() const { return 1; }
  // Validates the input shapes and returns the output shape; called once by Graph.
  virtual Shape configure(const std::vector<Shape>& in) = 0;
  // Rows of input `i` needed to compute output rows `out` (may exceed the image; Graph clips).
  virtual RowRange input_rows(RowRange out, int i) const = 0;
  // False for layers that need their whole input (global pooling, fully connected, softmax):
  // the planner runs those on the host.
  virtual bool spatial() const { return true; }
  virtual double flops(RowRange out) const = 0;
  // Computes out.rows() from inputs that hold at least input_rows(out.rows(), i).
  virtual void forward(const std::vector<const Band*>& in, Band& out) const = 0;
  // Non-spatial layers whose outputs are independent dot products (fully connected): channels
  // [c0, c1) of the single output row into out[0, c1 - c0), bit-identical to forward()'s.
  // False: this layer cannot be split by channels.
  virtual bool forward_channels(const Band& /*in*/, int /*c0*/, int /*c1*/, float* /*out*/) const {
    return false;
  }
  virtual bool splits_channels() const { return false; }
  // Output rows are computed in groups aligned to multiples of this (Winograd tiles): a band
  // whose ends are aligned to it computes no row twice.
  virtual int row_granule() const { return 1; }

  virtual std::vector<Param> params() { return {}; }
  // params()' names and shapes, data null, without allocating anything: a lazy loader checks a
  // file's sections before any weight exists.
  virtual std::vector<Param> param_shapes() {
    std::vector<Param> ps = params();
    for (Param& p : ps) p.data = nullptr;
    return ps;
  }
  // Whether a lazy graph leaves this layer's params to Graph::load (the convolutions and FC
  // layers, which hold the weights that matter); the others are filled when it is built.
  virtual bool loads_lazily() const { return false; }
  virtual Json attrs() const { return Json::object(); }
  // Repack weights for the active kernels (after loading or an ISA change).
  virtual void prepare() {}
  // --- weight memory (issue 27) ---------------------------------------------------------
  // Chooses the kernels without packing: the rows a band needs depend on them (Winograd tiles).
  virtual void choose_kernels() {}
  // Packs like prepare(), then frees the untransformed weights, so a device holds each weight
  // once; prepare() and params() throw afterwards. `channels` (non-empty): only the output
  // channels forward_channels() will be asked for (a device's slice of a split FC layer).
  virtual void pack_and_release(RowRange channels = {}) {
    (void)channels;
    prepare();
  }
  // Whether forward() (channels empty) or forward_channels() over `channels` can run now: a
  // lazily loaded layer cannot until it is packed.
  virtual bool ready(RowRange channels = {}) const {
    (void)channels;
    return true;
  }
  // The output channels to fill and pack so that `channels` become ready: a layer that holds a
  // slice widens it to whole panels and to what it holds already (empty: the whole layer).
  virtual RowRange load_range(RowRange channels) const { return channels; }
  // Lets params() be filled again after pack_and_release (a lazy graph loading more of a layer).
  virtual void reopen() {}
  // Frees what loading packed, so that a lazy graph can load the layer again from its weight
  // source (the host streams the layers it does not hold through memory, Graph::forward).
  // BatchNorm folds applied at packing are applied again at the next load.
  virtual void unload() {}
  // Output channels held packed now for forward_channels(): a slice, all, or none (empty).
  virtual RowRange loaded_channels() const { return {}; }
  // Drops the packed weights from this CPU's caches. A board reads a large layer's weights from
  // memory every inference; here a layer just loaded (the host streams what it does not hold) or
  // just timed would be read from the cache, and VGG-16's fc6 twice as fast as a board's. Not
  // enough alone on every CPU: timings also sweep the caches after it (kernels::sweep_caches).
  virtual void evict_weights() const {}
  // Bytes the packed weights for `channels` (empty: all) take, computed from the shapes: what
  // a device will hold for this layer once loaded (the planner's memory model).
  virtual size_t packed_bytes(RowRange channels = {}) const {
    (void)channels;
    return 0;
  }
  // Bytes that exist beside the packed weights for `channels` while they are packed: the
  // untransformed weights, or where packing transposes them in place one panel of scratch.
  virtual size_t source_bytes(RowRange channels = {}) const {
    (void)channels;
    return 0;
  }
  // Bytes of weights held now, untransformed and packed (the memory model, tests).
  virtual size_t weight_bytes() const { return 0; }
  // Absorb a following activation into the epilogue; false if this layer cannot.
  virtual bool fuse_activation(Activation) { return false; }
  // Absorb a following y = gamma * (x - mean) / sqrt(var + eps) + beta; false if it cannot.
  virtual bool fold_batchnorm(const std::vector<float>& /*gamma*/, const std::vector<float>& /*beta*/,
                              const std::vector<float>& /*mean*/, const std::vector<float>& /*var*/,
                              float /*eps*/) {
    return false;
  }

  const std::vector<Shape>& input_shapes() const { return in_shapes_; }
  // Throws std::invalid_argument unless every input band holds the rows `out` needs. Called
  // before kernels start, so a bad band is a clean error, not an abort inside OpenMP.
  void check_inputs(const std::vector<const Band*>& in, const Band& out) const;
  const Shape& output_shape() const { return out_shape_; }

 protected:
  std::vector<Shape> in_shapes_;
  Shape out_shape_;
};

// Before a timing: l's weights out of the caches (evict_weights, then kernels::sweep_caches), its
// inputs in them, as a plan meets the layer: the layers between evicted its weights, the one
// before just wrote its input. The profile and a lazy graph's timed streaming both call it. A
// layer without weights is left as it is.
void meet_as_in_a_plan(const Layer& l, const std::vector<const Band*>& ins);

// Batch-norm folding for weights laid out one output channel per contiguous run (OHWI conv,
// [out][in] fully connected): scales each run and rewrites the bias.
void fold_batchnorm_rows(std::vector<float>& w, std::vector<float>& b, const std::vector<float>& gamma,
                         const std::vector<float>& beta, const std::vector<float>& mean,
                         const std::vector<float>& var, float eps);

// A BatchNorm folded before the weights it scales were loaded (a lazily loaded graph): applied
// when they are.
struct PendingFold {
  std::vector<float> gamma, beta, mean, var;
  float eps;
};

// Builds a layer from its type name and attributes (weights format, converters).
std::unique_ptr<Layer> make_layer(const std::string& type, const Json& attrs);

}  // namespace eb
