#include "core/graph.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <stdexcept>

#include "core/buffer_cache.h"
#include "core/compute_hook.h"
#include "core/layers/conv2d.h"
#include "core/layers/elementwise.h"

namespace eb {

int Graph::add(std::string name, std::unique_ptr<Layer> layer, std::vector<int> inputs) {
  if (finalized_) throw std::logic_error("graph already finalized");
  if (inputs.size() == 1 && inputs[0] == -2) inputs[0] = size() - 1;
  const int id = size();
  if (int(inputs.size()) != layer->num_inputs())
    throw std::invalid_argument("node '" + name + "': wrong number of inputs");
  for (int i : inputs)
    if (i < -1 || i >= id)
      throw std::invalid_argument("node '" + name + "': input " + std::to_string(i) +
                                  " is not an earlier node");
  nodes_.push_back({std::move(name), std::move(layer), std::move(inputs)});
  return id;
}

void Graph::finalize(bool pack_weights) {
  if (finalized_) return;
  if (nodes_.empty()) throw std::invalid_argument("graph has no layers");
  if (input.h <= 0 || input.w <= 0 || input.c <= 0)
    throw std::invalid_argument("graph input shape " + input.str() + " is invalid");
  std::vector<int> consumers(nodes_.size(), 0);
  for (const Node& n : nodes_)
    for (int i : n.inputs)
      if (i >= 0) ++consumers[size_t(i)];
  // Fold BatchNorm and activations into the single producer that feeds them.
  std::vector<int> alias(nodes_.size());
  std::vector<bool> drop(nodes_.size(), false);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    alias[i] = int(i);
    Node& n = nodes_[i];
    for (int& in : n.inputs)
      if (in >= 0) in = alias[size_t(in)];
    if (n.inputs.size() != 1 || n.inputs[0] < 0 || consumers[size_t(n.inputs[0])] != 1) continue;
    Layer* prev = nodes_[size_t(n.inputs[0])].layer.get();
    if (auto* bn = dynamic_cast<BatchNorm*>(n.layer.get())) {
      if (prev->fold_batchnorm(bn->gamma, bn->beta, bn->mean, bn->var, bn->eps)) drop[i] = true;
    } else if (auto* act = dynamic_cast<ActivationLayer*>(n.layer.get())) {
      if (prev->fuse_activation(act->activation())) drop[i] = true;
    }
    if (drop[i]) {
      alias[i] = n.inputs[0];
      consumers[size_t(n.inputs[0])] = consumers[i];
    }
  }
  std::vector<Node> kept;
  std::vector<int> renum(nodes_.size(), -1);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (drop[i]) continue;
    renum[i] = int(kept.size());
    kept.push_back(std::move(nodes_[i]));
  }
  for (Node& n : kept)
    for (int& in : n.inputs)
      if (in >= 0) in = renum[size_t(alias[size_t(in)])];
  nodes_ = std::move(kept);
  for (Node& n : nodes_) {
    std::vector<Shape> in_shapes;
    for (int i : n.inputs) in_shapes.push_back(shape_of(i));
    try {
      n.layer->configure(in_shapes);
    } catch (const std::exception& e) {
      throw std::invalid_argument("node '" + n.name + "': " + e.what());
    }
  }
  finalized_ = true;
  for (Node& n : nodes_) n.layer->choose_kernels();
  if (pack_weights) prepare();
}

void Graph::prepare() {
  tune_heap_for_inference();
  for (Node& n : nodes_) keep_sources ? n.layer->prepare() : n.layer->pack_and_release();
}

bool Graph::holds(int i, RowRange channels) const {
  std::lock_guard<std::mutex> lk(*load_mu_);
  return node(i).layer->ready(channels);
}

void Graph::load(int i, RowRange channels) const {
  tune_heap_for_inference();
  std::lock_guard<std::mutex> lk(*load_mu_);
  Node& n = const_cast<Node&>(node(i));  // the layer's weights, not the graph's structure
  if (n.layer->ready(channels)) return;
  if (!fill_)
    throw std::logic_error("node '" + n.name + "' is not loaded and the graph has no weight source");
  const RowRange want = n.layer->load_range(channels);
  n.layer->reopen();
  fill_(n, want);
  n.layer->pack_and_release(want);
}

void Graph::unload(int i) const {
  std::lock_guard<std::mutex> lk(*load_mu_);
  const_cast<Node&>(node(i)).layer->unload();
}

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

struct Release {  // unloads a node a lazy graph streams, also when its layer throws
  const Graph& g;
  int n;
  ~Release() { g.unload(n); }
};
}  // namespace

void Graph::for_each_slice(int n, const std::function<void(int c0, int c1)>& run) const {
  const Layer& l = *nodes_.at(size_t(n)).layer;
  const RowRange held = l.loaded_channels();  // this device's slice of the layer, if any
  unload(n);
  const int channels = l.output_shape().c;
  const size_t channel_bytes = l.input_shapes().at(0).size() * sizeof(float);
  const int step = int(std::max<size_t>(1, kStreamSliceBytes / channel_bytes));
  for (int c0 = 0; c0 < channels;) {
    load(n, {c0, std::min(channels, c0 + step)});
    Release release{*this, n};
    const int c1 = std::min(channels, l.loaded_channels().end);  // whole panels, or all of it
    run(c0, c1);
    c0 = c1;
  }
  if (!held.empty()) load(n, held);
}

double Graph::forward_streamed(int n, const std::vector<const Band*>& ins, Band& out, bool timed) const {
  const Layer& l = *nodes_[size_t(n)].layer;
  auto as_held = [&] {  // just loaded: a board holding the layer reads it from memory
    if (timed) meet_as_in_a_plan(l, ins);
  };
  double ms = 0;
  auto run_timed = [&ms](const ComputeSection& s, const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    {
      ComputeScope section(s);
      f();
    }
    ms += ms_since(t0);
  };
  if (l.splits_channels()) {
    for_each_slice(n, [&](int c0, int c1) {
      as_held();
      run_timed({&l, ComputeSection::Axis::channels, c0, c1},
            [&] { l.forward_channels(*ins.at(0), c0, c1, out.t.data() + c0); });
    });
    return ms;
  }
  load(n);
  Release release{*this, n};
  as_held();
  run_timed({&l, ComputeSection::Axis::rows, out.row0, out.row0 + out.t.h()}, [&] { l.forward(ins, out); });
  return ms;
}

size_t Graph::weight_bytes() const {
  size_t b = 0;
  for (const Node& n : nodes_) b += n.layer->weight_bytes();
  return b;
}

double Graph::flops() const {
  double f = 0;
  for (const Node& n : nodes_) f += n.layer->flops({0, n.layer->output_shape().h});
  return f;
}

Tensor Graph::forward(const Tensor& in, std::vector<double>* layer_ms) const {
  if (in.shape() != input)
    throw std::invalid_argument("input " + in.shape().str() + " does not match model input " +
                                input.str());
  return run_block(0, size(), Band{in, 0}, {0, output_shape().h}, layer_ms).t;
}

bool Graph::is_cut(int first) const {
  if (first <= 0 || first >= size()) return first == 0 || first == size();
  for (int j = first; j < size(); ++j)
    for (int i : nodes_[size_t(j)].inputs)
      if (i < first - 1) return false;
  return true;
}

int Graph::spatial_end() const {
  int e = size();
  while (e > 0 && !nodes_[size_t(e - 1)].layer->spatial()) --e;
  return e;
}

std::vector<RowRange> Graph::block_needs(int first, int last, RowRange out) const {
  std::vector<RowRange> need;
  block_needs(first, last, out, need);
  return need;
}

RowRange Graph::block_input_rows(int first, int last, RowRange out) const {
  thread_local std::vector<RowRange> need;
  block_needs(first, last, out, need);
  return need[0];
}

void Graph::block_needs(int first, int last, RowRange out, std::vector<RowRange>& need) const {
  if (first < 0 || last > size() || first >= last) throw std::out_of_range("bad block range");
  need.assign(size_t(last - first + 1), RowRange{});
  need.back() = out.clip(shape_of(last - 1).h);
  for (int n = last - 1; n >= first; --n) {
    const RowRange mine = need[size_t(n - first + 1)];
    if (mine.empty()) continue;
    const Node& node = nodes_[size_t(n)];
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      const int src = node.inputs[k];
      if (src < first - 1) throw std::logic_error("block does not start at a cut");
      const RowRange r = node.layer->input_rows(mine, int(k)).clip(shape_of(src).h);
      RowRange& slot = need[size_t(src - first + 1)];
      slot = slot.unite(r);
    }
  }
}

Band Graph::run_block(int first, int last, const Band& block_in, RowRange out,
                      std::vector<double>* layer_ms) const {
  const std::vector<RowRange> need = block_needs(first, last, out);
  if (!block_in.rows().contains(need[0]))
    throw std::invalid_argument("block input band does not hold the rows it needs");
  // Free each intermediate band after its last consumer inside the block.
  std::vector<int> last_use(size_t(last - first), -1);
  for (int n = first; n < last; ++n)
    for (int i : nodes_[size_t(n)].inputs)
      if (i >= first) last_use[size_t(i - first)] = n;
  std::vector<Band> bands(size_t(last - first));
  if (layer_ms) layer_ms->assign(size_t(size()), 0.0);
  for (int n = first; n < last; ++n) {
    const Node& node = nodes_[size_t(n)];
    const RowRange r = need[size_t(n - first + 1)];
    const Shape s = node.layer->output_shape();
    Band& ob = bands[size_t(n - first)];
    ob.row0 = r.begin;
    ob.t = Tensor::uninitialized({r.size(), s.w, s.c});
    if (r.empty()) continue;
    std::vector<const Band*> ins;
    for (int i : node.inputs) ins.push_back(i == first - 1 ? &block_in : &bands[size_t(i - first)]);
    double ms = 0;
    if (fill_ && !node.layer->ready()) {
      ms = forward_streamed(n, ins, ob, layer_ms != nullptr);
    } else {
      const auto t0 = std::chrono::steady_clock::now();
      {
        ComputeScope section({node.layer.get(), ComputeSection::Axis::rows, r.begin, r.end});
        node.layer->forward(ins, ob);
      }
      ms = ms_since(t0);
    }
    if (layer_ms) (*layer_ms)[size_t(n)] = ms;
    for (int i : node.inputs)
      if (i >= first && last_use[size_t(i - first)] == n && i != last - 1)
        bands[size_t(i - first)].t = Tensor();
  }
  Band& result = bands.back();
  const RowRange want = out.clip(shape_of(last - 1).h);
  if (result.rows() == want) return result;
  return Band{result.t.rows({want.begin - result.row0, want.end - result.row0}), want.begin};
}

double timed_forward_ms(const Graph& g, const Tensor& in, Tensor* out) {
  bool streams = false;
  for (int n = 0; n < g.size() && g.lazy() && !streams; ++n) streams = !g.node(n).layer->ready();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<double> layer_ms;
  Tensor y = g.forward(in, &layer_ms);
  const double wall = ms_since(t0);
  if (out) *out = std::move(y);
  return streams ? std::accumulate(layer_ms.begin(), layer_ms.end(), 0.0) : wall;
}

}  // namespace eb
