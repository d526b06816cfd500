// Operators of modern ImageNet networks (issue 28): channel concatenation, elementwise and
// channel-broadcast multiply, sigmoid-family activations, zero padding, grouped convolution and
// ceil-mode pooling. Each layer against a plain reference and on every band split; each ONNX
// mapping through the test-side writer; the weights file round trip; whole small networks
// (a SqueezeNet fire module, a squeeze-and-excitation block) computed in bands.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <random>

#include "core/layers/branch_ops.h"
#include "core/layers/conv2d.h"
#include "core/layers/elementwise.h"
#include "core/layers/global_avg_pool.h"
#include "core/layers/pool2d.h"
#include "core/weights_io.h"
#include "dist/plan/local_executor.h"
#include "dist/runtime/host.h"
#include "dist/runtime/worker.h"
#include "models/import/importers.h"
#include "models/zoo.h"
#include "tests/helpers.h"
#include "tests/local_workers.h"
#include "tests/onnx_export.h"
#include "tests/proto_writer.h"
#include "tests/tflite_export.h"
#include "tests/fuzz/target.h"

using namespace eb;

namespace {

int rand_int(std::mt19937& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

std::string tmp_path(const std::string& name) {
  return "/tmp/edgeband_branch_" + std::to_string(::getpid()) + "_" + name;
}

Graph import_onnx_bytes(const std::string& bytes) {
  const std::string p = tmp_path("model.onnx");
  std::ofstream(p, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), std::streamsize(bytes.size()));
  Graph g = import::import_model({p}, {"test", ""});
  ::unlink(p.c_str());
  return g;
}

// Full forward of a layer on whole inputs.
Tensor run_layer(Layer& l, const std::vector<Tensor>& in) {
  std::vector<Shape> shapes;
  for (const Tensor& t : in) shapes.push_back(t.shape());
  l.configure(shapes);
  l.prepare();
  std::vector<Band> bands;
  for (const Tensor& t : in) bands.push_back(Band{t, 0});
  std::vector<const Band*> ptrs;
  for (const Band& b : bands) ptrs.push_back(&b);
  Band out{Tensor(l.output_shape()), 0};
  l.forward(ptrs, out);
  return out.t;
}

void check_close(const Tensor& got, const Tensor& want, float rel) {
  REQUIRE(got.shape() == want.shape());
  CHECK(ref::max_abs_diff(got, want) <= rel * std::max(1.0f, ref::max_abs(want)));
}

// Appends a layer and configures it at once, so that the next one can be chosen to fit.
int add(Graph& g, const std::string& name, std::unique_ptr<Layer> l, std::vector<int> in = {-2}) {
  const int id = g.add(name, std::move(l), std::move(in));
  Node& n = g.node(id);
  std::vector<Shape> shapes;
  for (int k : n.inputs) shapes.push_back(g.shape_of(k));
  n.layer->configure(shapes);
  return id;
}

Conv2DParams conv_p(long cin, long cout, long k, long s, long pad, long groups = 1) {
  Conv2DParams p;
  p.cin = cin, p.cout = cout, p.kh = p.kw = k, p.sh = p.sw = s, p.groups = groups;
  p.pad_t = p.pad_l = p.pad_b = p.pad_r = pad;
  return p;
}

// SqueezeNet's fire module: squeeze 1x1, then expand 1x1 and 3x3 side by side, concatenated.
int fire(Graph& g, const std::string& name, int in, long squeeze, long expand) {
  const long c = g.shape_of(in).c;
  const int s = add(g, name + "/squeeze", std::make_unique<Conv2D>(conv_p(c, squeeze, 1, 1, 0)), {in});
  const int s_act = add(g, name + "/squeeze/relu", std::make_unique<ActivationLayer>(Activation::relu), {s});
  const int e1 = add(g, name + "/e1", std::make_unique<Conv2D>(conv_p(squeeze, expand, 1, 1, 0)), {s_act});
  const int e3 = add(g, name + "/e3", std::make_unique<Conv2D>(conv_p(squeeze, expand, 3, 1, 1)), {s_act});
  return add(g, name + "/concat", std::make_unique<Concat>(2), {e1, e3});
}

// Squeeze-and-excitation (MobileNet-V3/EfficientNet): global mean, two 1x1 convs, a sigmoid
// gate, and the map scaled per channel by it. The gate needs every row of `in`.
int squeeze_excite(Graph& g, const std::string& name, int in, UnaryOp gate) {
  const long c = g.shape_of(in).c, mid = std::max(1L, c / 2);
  add(g, name + "/pool", std::make_unique<GlobalAvgPool>(), {in});
  add(g, name + "/fc1", std::make_unique<Conv2D>(conv_p(c, mid, 1, 1, 0)));
  add(g, name + "/relu", std::make_unique<ActivationLayer>(Activation::relu));
  add(g, name + "/fc2", std::make_unique<Conv2D>(conv_p(mid, c, 1, 1, 0)));
  const int gt = add(g, name + "/gate", std::make_unique<Unary>(gate, 1.0f / 6, 0.5f));
  return add(g, name + "/scale", std::make_unique<Mul>(), {in, gt});
}

// ShuffleNet-V2's basic unit: half the channels pass, the other half go through 1x1, depthwise
// 3x3, 1x1; concatenated and shuffled in two groups.
int shuffle_unit(Graph& g, const std::string& name, int in) {
  const long c = g.shape_of(in).c, h = c / 2;
  const int a = add(g, name + "/keep", std::make_unique<SliceChannels>(0, h), {in});
  add(g, name + "/split", std::make_unique<SliceChannels>(h, c), {in});
  add(g, name + "/pw1", std::make_unique<Conv2D>(conv_p(h, h, 1, 1, 0)));
  add(g, name + "/pw1/relu", std::make_unique<ActivationLayer>(Activation::relu));
  Conv2DParams dw = conv_p(h, h, 3, 1, 1);
  dw.depthwise = true;
  add(g, name + "/dw", std::make_unique<Conv2D>(dw));
  const int b = add(g, name + "/pw2", std::make_unique<Conv2D>(conv_p(h, h, 1, 1, 0)));
  add(g, name + "/concat", std::make_unique<Concat>(2), {a, b});
  return add(g, name + "/shuffle", std::make_unique<ChannelShuffle>(2));
}

// A random small network built from the new operators and a few old ones.
Graph random_branchy_net(std::mt19937& rng) {
  Graph g;
  g.input = {rand_int(rng, 8, 17), rand_int(rng, 8, 17), rand_int(rng, 1, 4)};
  add(g, "stem", std::make_unique<Conv2D>(conv_p(g.input.c, 4 * rand_int(rng, 1, 3), 3, 1, 1)), {-1});
  const int blocks = rand_int(rng, 2, 4);
  for (int b = 0; b < blocks; ++b) {
    const std::string n = "b" + std::to_string(b);
    const int last = g.size() - 1;
    const Shape s = g.shape_of(last);
    switch (rand_int(rng, 0, 5)) {
      case 0: fire(g, n, last, rand_int(rng, 1, 4), rand_int(rng, 1, 5)); break;
      case 1: squeeze_excite(g, n, last, b % 2 ? UnaryOp::sigmoid : UnaryOp::hard_sigmoid); break;
      case 2: {  // grouped 3x3 with some groups > 1 dividing the channels
        long groups = 1;
        for (long d = 2; d <= s.c; ++d)
          if (s.c % d == 0 && rand_int(rng, 0, 1)) groups = d;
        add(g, n, std::make_unique<Conv2D>(conv_p(s.c, s.c / groups * rand_int(rng, 1, 2) * groups,
                                                  3, rand_int(rng, 1, 2), 1, groups)));
        break;
      }
      case 3: {  // explicit padding, then a conv (folded on import) or a max pool (a pad layer)
        add(g, n + "/pad", std::make_unique<ZeroPad>(rand_int(rng, 0, 2), rand_int(rng, 0, 2),
                                                     rand_int(rng, 0, 2), rand_int(rng, 0, 2)));
        if (rand_int(rng, 0, 1))
          add(g, n, std::make_unique<Conv2D>(conv_p(s.c, rand_int(rng, 1, 6), 3, 1, 1)));
        else
          add(g, n, std::make_unique<Pool2D>(kernels::PoolKind::max, 2, 1, 1, 1, 0, 0));
        break;
      }
      case 4:
        add(g, n, std::make_unique<Unary>(UnaryOp(rand_int(rng, 0, 3)), 0.25f, 0.4f));
        break;
      default: {  // x * y of two equal maps
        const int a = add(g, n + "/a", std::make_unique<Conv2D>(conv_p(s.c, s.c, 1, 1, 0)), {last});
        add(g, n, std::make_unique<Mul>(), {last, a});
      }
    }
  }
  models::fill_synthetic(g, uint64_t(rng()));
  return g;
}

// Every output band of the whole graph, computed from only the input rows it needs, equals
// the full-image result.
void check_graph_bands(const Graph& g, const Tensor& in, std::mt19937& rng) {
  const Tensor full = g.forward(in);
  for (const RowRange r : test::band_cases(full.h(), rng)) {
    const RowRange need = g.block_needs(0, g.size(), r)[0];
    const Band got = g.run_block(0, g.size(), Band{in.rows(need).clone(), need.begin}, r);
    INFO("rows [" << r.begin << "," << r.end << ")");
    CHECK(ref::bit_equal(got.t, full.rows(r)));
  }
}

// A small SqueezeNet-like network: stem, ceil-mode pool, two fire modules; with `se`, a
// squeeze-and-excitation block (a global dependency mid-network) and hard-swish after them,
// else a ShuffleNet unit.
Graph fire_net(bool se, int h, int w) {
  Graph g;
  g.input = {h, w, 3};
  add(g, "stem", std::make_unique<Conv2D>(conv_p(3, 8, 3, 2, 0)), {-1});
  add(g, "stem/relu", std::make_unique<ActivationLayer>(Activation::relu));
  add(g, "pool", std::make_unique<Pool2D>(kernels::PoolKind::max, 3, 2));
  int f = fire(g, "fire2", g.size() - 1, 4, 6);
  f = fire(g, "fire3", f, 4, 8);
  if (se) {
    squeeze_excite(g, "se", f, UnaryOp::hard_sigmoid);
    add(g, "act", std::make_unique<Unary>(UnaryOp::hard_swish));
  } else {
    shuffle_unit(g, "shuffle", f);
  }
  models::fill_synthetic(g, 9);
  test::OnnxExportOptions opt;
  opt.ceil_mode = true;  // as SqueezeNet's pools
  opt.shape_ops = true;  // the shuffle's view sizes follow the ceil-mode shapes
  return import_onnx_bytes(test::export_onnx(g, opt));
}

dist::Cluster estimated_cluster(const Graph& g, int n) {
  dist::Cluster c;
  c.link = dist::parse_link("10gbit,0.01ms");  // fast: the planner really splits
  for (int i = 0; i < n; ++i) c.devices.push_back(dist::estimate_profile(g, "d", 5));
  return c;
}

int count_type(const Graph& g, const std::string& type) {
  int k = 0;
  for (int i = 0; i < g.size(); ++i) k += g.node(i).layer->type() == type;
  return k;
}

}  // namespace

TEST_CASE("branch ops: concat, mul, unary and pad match the reference; every band split is exact") {
  std::mt19937 rng(28);
  for (int t = 0; t < 12; ++t) {
    const int h = rand_int(rng, 1, 9), w = rand_int(rng, 1, 7);
    CAPTURE(t);
    std::vector<Tensor> parts;
    for (int i = rand_int(rng, 2, 4); i > 0; --i)
      parts.push_back(ref::random_tensor({h, w, rand_int(rng, 1, 9)}, rng));
    Concat cat(int(parts.size()));
    const Tensor joined = run_layer(cat, parts);
    CHECK(ref::bit_equal(joined, ref::concat(parts)));
    test::check_bands(cat, parts, joined, rng);

    const Tensor a = ref::random_tensor({h, w, rand_int(rng, 1, 9)}, rng);
    for (const Shape gs : {a.shape(), Shape{1, 1, a.c()}}) {
      const Tensor b = ref::random_tensor(gs, rng);
      Mul mul;
      const Tensor prod = run_layer(mul, {a, b});
      check_close(prod, ref::mul(a, b), 1e-6f);
      test::check_bands(mul, {a, b}, prod, rng);
    }
    for (UnaryOp op : {UnaryOp::sigmoid, UnaryOp::hard_sigmoid, UnaryOp::silu, UnaryOp::hard_swish}) {
      CAPTURE(unary_name(op));
      const Tensor x = ref::random_tensor(a.shape(), rng, -8, 8);
      Unary u(op, 0.2f, 0.5f);
      const Tensor y = run_layer(u, {x});
      check_close(y, ref::unary(unary_name(op), x, 0.2, 0.5), 1e-5f);
      test::check_bands(u, x, y, rng);
    }
    const long pt = rand_int(rng, 0, 3), pl = rand_int(rng, 0, 3), pb = rand_int(rng, 0, 3),
               pr = rand_int(rng, 0, 3);
    if (a.c() % 2 == 0 || a.c() % 3 == 0) {
      ChannelShuffle shuffle(a.c() % 2 == 0 ? 2 : 3);
      const Tensor shuffled = run_layer(shuffle, {a});
      CHECK(ref::bit_equal(shuffled, ref::channel_shuffle(a, a.c() % 2 == 0 ? 2 : 3)));
      test::check_bands(shuffle, a, shuffled, rng);
    }
    const long c0 = rand_int(rng, 0, a.c() - 1), c1 = rand_int(rng, int(c0) + 1, a.c());
    SliceChannels slice(c0, c1);
    const Tensor sliced = run_layer(slice, {a});
    CHECK(ref::bit_equal(sliced, ref::slice_channels(a, c0, c1)));
    test::check_bands(slice, a, sliced, rng);
    ZeroPad pad(pt, pl, pb, pr);
    const Tensor padded = run_layer(pad, {a});
    CHECK(ref::bit_equal(padded, ref::zero_pad(a, pt, pl, pb, pr)));
    test::check_bands(pad, a, padded, rng);
  }
}

TEST_CASE("branch ops: invalid shapes and parameters are clear errors") {
  Concat cat(2);
  CHECK_THROWS_AS(cat.configure({{4, 4, 2}, {4, 5, 2}}), std::invalid_argument);
  CHECK_THROWS_AS(Concat(1), std::invalid_argument);
  Mul mul;
  CHECK_THROWS_AS(mul.configure({{4, 4, 2}, {1, 1, 3}}), std::invalid_argument);
  CHECK_THROWS_AS(mul.configure({{4, 4, 2}, {4, 1, 2}}), std::invalid_argument);
  CHECK_THROWS_AS(ZeroPad(0, -1, 0, 0), std::invalid_argument);
  ChannelShuffle shuffle(4);
  CHECK_THROWS_AS(shuffle.configure({{2, 2, 6}}), std::invalid_argument);
  SliceChannels slice(2, 5);
  CHECK_THROWS_AS(slice.configure({{2, 2, 4}}), std::invalid_argument);
  CHECK_THROWS_AS(SliceChannels(3, 3), std::invalid_argument);
  CHECK_THROWS_AS(Unary(UnaryOp::hard_sigmoid, NAN, 0.5f), std::invalid_argument);
  CHECK_THROWS_AS(Conv2D(conv_p(6, 4, 3, 1, 1, 4)), std::invalid_argument);  // 4 does not divide 6
  CHECK_THROWS_AS(Conv2D(conv_p(6, 6, 3, 1, 1, 0)), std::invalid_argument);
}

TEST_CASE("conv2d: grouped convolution matches the reference on every ISA; every band split is exact") {
  std::mt19937 rng(29);
  test::for_each_isa([&](kernels::Isa isa) {
    CAPTURE(kernels::isa_name(isa));
    for (int t = 0; t < 8; ++t) {
      const long groups = rand_int(rng, 2, 4), k = 1 + 2 * rand_int(rng, 0, 2);
      Conv2DParams p = conv_p(groups * rand_int(rng, 1, 6), groups * rand_int(rng, 1, 6), k,
                              rand_int(rng, 1, 2), rand_int(rng, 0, int(k) / 2), groups);
      p.act = Activation(rand_int(rng, 0, 2));
      Conv2D conv(p);
      conv.weight() = ref::random_vec(conv.weight().size(), rng, -0.5f, 0.5f);
      conv.bias() = ref::random_vec(conv.bias().size(), rng, -0.1f, 0.1f);
      const Tensor in = ref::random_tensor({rand_int(rng, int(k), 13), rand_int(rng, int(k), 11), int(p.cin)}, rng);
      const Tensor got = run_layer(conv, {in});
      CHECK(conv.algo() == Conv2D::Algo::grouped);
      const ref::ConvSpec s{k, k, p.sh, p.sw, p.pad_t, p.pad_l, p.pad_b, p.pad_r, false, p.act};
      CAPTURE(groups);
      CAPTURE(p.cin);
      CAPTURE(p.cout);
      check_close(got, ref::conv2d_grouped(in, conv.weight(), conv.bias(), p.cout, s, groups), 2e-5f);
      test::check_bands(conv, in, got, rng);
    }
  });
  Conv2D dense_algo_on_groups(conv_p(4, 4, 3, 1, 1, 2));
  dense_algo_on_groups.configure({{5, 5, 4}});
  dense_algo_on_groups.force_algo(Conv2D::Algo::im2col);
  CHECK_THROWS_AS(dense_algo_on_groups.prepare(), std::logic_error);
}

TEST_CASE("onnx: random networks with concat, mul, sigmoid family, pad and grouped conv convert") {
  std::mt19937 rng(30);
  for (int trial = 0; trial < 16; ++trial) {
    CAPTURE(trial);
    Graph g = random_branchy_net(rng);
    test::OnnxExportOptions opt;
    opt.pad_inputs = trial % 2 == 0;
    opt.hard_swish_op = trial % 3 == 0;
    Graph imported = import_onnx_bytes(test::export_onnx(g, opt));
    const Tensor in = ref::random_tensor(g.input, rng);
    check_close(imported.forward(in), ref::forward(g, in), 1e-5f);
    check_graph_bands(imported, in, rng);
  }
}

TEST_CASE("onnx: a Pad before a conv joins its padding; before a pool it stays a layer") {
  std::mt19937 rng(31);
  for (bool conv : {true, false}) {
    Graph g;
    g.input = {9, 8, 3};
    add(g, "pad", std::make_unique<ZeroPad>(1, 2, 0, 1), {-1});
    if (conv)
      add(g, "conv", std::make_unique<Conv2D>(conv_p(3, 5, 3, 1, 1)));
    else
      add(g, "pool", std::make_unique<Pool2D>(kernels::PoolKind::max, 3, 2));
    models::fill_synthetic(g, 5);
    Graph imported = import_onnx_bytes(test::export_onnx(g));
    CHECK(count_type(imported, "pad") == (conv ? 0 : 1));
    const Tensor in = ref::random_tensor(g.input, rng);
    check_close(imported.forward(in), ref::forward(g, in), 1e-5f);
  }
}

// A squeeze-and-excitation gate made with Linear layers, as hand-written models do: Flatten,
// Gemm, Sigmoid, Reshape to [1, C, 1, 1], Mul; and a Pad that is the graph's output.
TEST_CASE("onnx: a Linear SE gate reshaped to [1, C, 1, 1] scales the map; a final Pad is kept") {
  using test::Proto;
  auto node = [](const std::string& op, const std::vector<std::string>& in, const std::string& out) {
    Proto n;
    for (const std::string& i : in) n.bytes(1, i);
    return n.bytes(2, out).bytes(3, out).bytes(4, op);
  };
  auto tensor = [](const std::string& name, const std::vector<int64_t>& dims, int type,
                   const std::string& raw) {
    Proto t;
    for (int64_t d : dims) t.varint(1, uint64_t(d));
    return t.varint(2, uint64_t(type)).bytes(8, name).bytes(9, raw);
  };
  auto f32 = [](const std::vector<float>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  };
  auto i64 = [](const std::vector<int64_t>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 8);
  };
  auto value_info = [](const std::string& name, const std::vector<int64_t>& dims) {
    Proto shape;
    for (int64_t d : dims) shape.msg(1, Proto().varint(1, uint64_t(d)));
    return Proto().bytes(1, name).msg(2, Proto().msg(1, Proto().varint(1, 1).msg(2, shape)));
  };
  const std::vector<float> w = {0.5f, -1.0f, 2.0f, 0.25f}, b = {0.1f, -0.2f};
  Proto graph;
  graph.msg(1, node("GlobalAveragePool", {"x"}, "p")).msg(1, node("Flatten", {"p"}, "f"));
  Proto gemm = node("Gemm", {"f", "w", "b"}, "g");
  gemm.msg(5, Proto().bytes(1, "transB").varint(3, 1).varint(20, 2));
  graph.msg(1, gemm).msg(1, node("Sigmoid", {"g"}, "s")).msg(1, node("Reshape", {"s", "shape"}, "r"));
  graph.msg(1, node("Mul", {"r", "x"}, "m")).msg(1, node("Pad", {"m", "pads"}, "y"));
  graph.msg(5, tensor("w", {2, 2}, 1, f32(w))).msg(5, tensor("b", {2}, 1, f32(b)));
  graph.msg(5, tensor("shape", {4}, 7, i64({1, 2, 1, 1})));
  graph.msg(5, tensor("pads", {8}, 7, i64({0, 0, 1, 0, 0, 0, 0, 2})));
  graph.msg(11, value_info("x", {1, 2, 4, 3})).msg(12, value_info("y", {1, 2, 5, 5}));
  Proto model;
  model.varint(1, 8).msg(7, graph).msg(8, Proto().bytes(1, "").varint(2, 13));
  Graph g = import_onnx_bytes(model.str());

  std::mt19937 rng(36);
  const Tensor x = ref::random_tensor({4, 3, 2}, rng);
  Tensor gate(1, 1, 2);
  for (int o = 0; o < 2; ++o) {
    double z = b[size_t(o)];
    for (int c = 0; c < 2; ++c) {
      double mean = 0;
      for (int yy = 0; yy < 4; ++yy)
        for (int xx = 0; xx < 3; ++xx) mean += x.at(yy, xx, c) / 12.0;
      z += w[size_t(o * 2 + c)] * mean;
    }
    gate.at(0, 0, o) = float(1 / (1 + std::exp(-z)));
  }
  const Tensor want = ref::zero_pad(ref::mul(x, gate), 1, 0, 0, 2);
  check_close(g.forward(x), want, 1e-5f);
  CHECK(count_type(g, "pad") == 1);
}

TEST_CASE("onnx: x * Sigmoid(x) is one SiLU layer; a sigmoid used elsewhere too is still built") {
  std::mt19937 rng(39);
  for (bool shared : {false, true}) {
    Graph g;
    g.input = {7, 6, 3};
    const int x = add(g, "conv", std::make_unique<Conv2D>(conv_p(3, 5, 3, 1, 1)), {-1});
    const int s = add(g, "sigmoid", std::make_unique<Unary>(UnaryOp::sigmoid), {x});
    const int m = add(g, "silu", std::make_unique<Mul>(), {x, s});
    if (shared) add(g, "sum", std::make_unique<Add>(), {m, s});
    models::fill_synthetic(g, 4);
    Graph imported = import_onnx_bytes(test::export_onnx(g));
    CHECK(count_type(imported, "mul") == 0);
    CHECK(count_type(imported, "unary") == (shared ? 2 : 1));
    const Tensor in = ref::random_tensor(g.input, rng);
    check_close(imported.forward(in), ref::forward(g, in), 1e-5f);
  }
}

// One ONNX node reading x [1, 2, 4, 4] (and float constants named in `consts`): the importer's
// error, or "" when it converts.
// Constants are 1-D unless `dims` gives their shape.
std::string one_node_error(const test::Proto& node, const std::map<std::string, std::vector<float>>& consts,
                           const std::map<std::string, std::vector<int64_t>>& dims = {}) {
  using test::Proto;
  Proto graph;
  graph.msg(1, node);
  for (const auto& [name, v] : consts) {
    Proto t;
    const auto d = dims.find(name);
    for (int64_t k : d == dims.end() ? std::vector<int64_t>{int64_t(v.size())} : d->second)
      t.varint(1, uint64_t(k));
    t.varint(2, 1).bytes(8, name);
    t.bytes(9, std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
    graph.msg(5, t);
  }
  auto vi = [](const std::string& name, std::vector<int64_t> shape_dims) {
    Proto shape;
    for (int64_t d : shape_dims) shape.msg(1, Proto().varint(1, uint64_t(d)));
    return Proto().bytes(1, name).msg(2, Proto().msg(1, Proto().varint(1, 1).msg(2, shape)));
  };
  graph.msg(11, vi("x", {1, 2, 4, 4})).msg(12, vi("y", {1, 2, 4, 4}));
  Proto model;
  model.varint(1, 8).msg(7, graph).msg(8, Proto().bytes(1, "").varint(2, 13));
  try {
    import_onnx_bytes(model.str());
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("onnx: unsupported forms of the new operators are one-line errors naming the node") {
  using test::Proto;
  auto node = [](const std::string& op, const std::vector<std::string>& in) {
    Proto n;
    for (const std::string& i : in) n.bytes(1, i);
    return n.bytes(2, "y").bytes(3, "n1").bytes(4, op);
  };
  auto attr_i = [](const std::string& k, int64_t v) { return Proto().bytes(1, k).varint(3, uint64_t(v)).varint(20, 2); };
  auto attr_s = [](const std::string& k, const std::string& v) { return Proto().bytes(1, k).bytes(4, v).varint(20, 3); };
  auto has = [](const std::string& err, const std::string& what) {
    INFO(err);
    CHECK(err.find("'n1'") != std::string::npos);
    CHECK(err.find(what) != std::string::npos);
  };
  has(one_node_error(node("Concat", {"x", "x"}).msg(5, attr_i("axis", 2)), {}), "along channels");
  CHECK(one_node_error(node("Concat", {"x", "x"}).msg(5, attr_i("axis", 1)), {}) == "");
  has(one_node_error(node("Pad", {"x", "p"}).msg(5, attr_s("mode", "reflect")), {{"p", {0, 0, 1, 1, 0, 0, 1, 1}}}),
      "constant padding");
  has(one_node_error(node("Pad", {"x", "p"}), {{"p", {0, 0, -1, 1, 0, 0, 1, 1}}}), "out of range");
  has(one_node_error(node("Pad", {"x", "p"}), {{"p", {0, 1, 1, 1, 0, 0, 1, 1}}}), "H and W");
  has(one_node_error(node("Pad", {"x", "p"}), {{"p", {0, 0, NAN, 1, 0, 0, 1, 1}}}), "small integer");
  has(one_node_error(node("Pad", {"x", "p", "v"}), {{"p", {0, 0, 1, 1, 0, 0, 1, 1}}, {"v", {1}}}),
      "zero padding");
  has(one_node_error(node("ReduceMean", {"x"}).msg(5, Proto().bytes(1, "axes").varint(8, 1).varint(20, 7)), {}),
      "axes 2, 3");
  has(one_node_error(node("Mul", {"x", "k"}), {{"k", {1, 2, 3}}}), "per-channel or scalar");
  has(one_node_error(node("Conv", {"x", "w"}).msg(5, attr_i("group", 3)),
                     {{"w", std::vector<float>(18, 1.0f)}}, {{"w", {3, 1, 3, 2}}}),
      "group 3");
  has(one_node_error(node("HardSigmoid", {"x"}).msg(5, Proto().bytes(1, "alpha").fixed32(2, INFINITY).varint(20, 1)), {}),
      "finite");
}

TEST_CASE("onnx: MaxPool and AveragePool with ceil_mode=1 round the output size up") {
  std::mt19937 rng(32);
  for (int t = 0; t < 24; ++t) {
    const long k = rand_int(rng, 2, 3), s = rand_int(rng, 1, 3), pad = rand_int(rng, 0, int(k) - 1);
    const bool is_max = t % 2 == 0;
    Graph g;
    g.input = {rand_int(rng, int(k), 14), rand_int(rng, int(k), 14), rand_int(rng, 1, 5)};
    add(g, "pool", std::make_unique<Pool2D>(is_max ? kernels::PoolKind::max : kernels::PoolKind::average,
                                            k, s, pad, pad, pad, pad), {-1});
    test::OnnxExportOptions opt;
    opt.ceil_mode = true;
    Graph imported = import_onnx_bytes(test::export_onnx(g, opt));
    const Tensor in = ref::random_tensor(g.input, rng);
    CAPTURE(g.input.str());
    CAPTURE(k);
    CAPTURE(s);
    CAPTURE(pad);
    const Tensor want = ref::pool2d_ceil(in, is_max, k, s, pad, pad, pad, pad);
    check_close(imported.forward(in), want, 1e-6f);
    check_graph_bands(imported, in, rng);
  }
  // A SqueezeNet-like first pool: 3x3 stride 2 on 112 rows gives 55 with floor, 56 with ceil.
  Graph g;
  g.input = {112, 112, 1};
  add(g, "pool", std::make_unique<Pool2D>(kernels::PoolKind::max, 3, 2), {-1});
  test::OnnxExportOptions opt;
  opt.ceil_mode = true;
  CHECK(import_onnx_bytes(test::export_onnx(g, opt)).output_shape() == Shape{56, 56, 1});
}

// PyTorch's avg_pool2d with count_include_pad: the divisor is the window clipped to the padded
// input (padding counts, ceil_mode's overhang does not).
Tensor avgpool_include_pad(const Tensor& in, long k, long s, long pad, bool ceil) {
  auto out_size = [&](long n) {
    const long span = n + 2 * pad - k;
    long o = (ceil ? (span + s - 1) / s : span / s) + 1;
    if (ceil && (o - 1) * s >= n + pad) --o;
    return o;
  };
  Tensor out(int(out_size(in.h())), int(out_size(in.w())), in.c());
  for (int y = 0; y < out.h(); ++y)
    for (int x = 0; x < out.w(); ++x)
      for (int c = 0; c < in.c(); ++c) {
        const long y0 = y * s - pad, x0 = x * s - pad;
        const long y1 = std::min(y0 + k, in.h() + pad), x1 = std::min(x0 + k, in.w() + pad);
        double sum = 0;
        for (long iy = std::max(y0, 0L); iy < std::min(y1, long(in.h())); ++iy)
          for (long ix = std::max(x0, 0L); ix < std::min(x1, long(in.w())); ++ix)
            sum += in.at(int(iy), int(ix), c);
        out.at(y, x, c) = float(sum / double((y1 - y0) * (x1 - x0)));
      }
  return out;
}

TEST_CASE("onnx: AveragePool with count_include_pad=1 (and ceil_mode) counts the padding") {
  std::mt19937 rng(38);
  for (int t = 0; t < 16; ++t) {
    const long k = rand_int(rng, 2, 3), s = rand_int(rng, 1, 2), pad = rand_int(rng, 1, int(k) - 1);
    const bool ceil = t % 2 == 1;
    Graph g;
    g.input = {rand_int(rng, int(k), 12), rand_int(rng, int(k), 12), rand_int(rng, 1, 4)};
    add(g, "pool", std::make_unique<Pool2D>(kernels::PoolKind::average, k, s, pad, pad, pad, pad), {-1});
    test::OnnxExportOptions opt;
    opt.ceil_mode = ceil;
    opt.count_include_pad = true;
    Graph imported = import_onnx_bytes(test::export_onnx(g, opt));
    const Tensor in = ref::random_tensor(g.input, rng);
    CAPTURE(g.input.str());
    CAPTURE(k);
    CAPTURE(s);
    CAPTURE(pad);
    CAPTURE(ceil);
    check_close(imported.forward(in), avgpool_include_pad(in, k, s, pad, ceil), 1e-6f);
    check_graph_bands(imported, in, rng);
  }
}

TEST_CASE("onnx: a SqueezeNet fire module and an SE block: exact, and in bands") {
  std::mt19937 rng(33);
  Graph imported = fire_net(true, 17, 13);
  CHECK(count_type(imported, "concat") == 2);
  CHECK(count_type(imported, "mul") == 1);    // the SE scale; x * HardSigmoid(x) is one layer
  CHECK(count_type(imported, "unary") == 2);  // the SE gate and hard-swish
  const Tensor in = ref::random_tensor(imported.input, rng);
  const Tensor got = imported.forward(in);
  CHECK(got.shape() == Shape{4, 3, 16});  // ceil mode: 8x6 -> 4x3 (floor would give 3x2)
  check_graph_bands(imported, in, rng);
}

// Every scheme's plan, executed in-process and across loopback workers, equals local inference;
// with the SE block too, whose gate needs every row of its input.
TEST_CASE("dist loopback: converted fire-module/ShuffleNet and SE networks equal local inference") {
  std::mt19937 rng(35);
  for (bool se : {false, true}) {
    CAPTURE(se);
    auto g = std::make_shared<Graph>(fire_net(se, 61, 57));
    const std::string path = tmp_path(se ? "se.ebw" : "fire.ebw");
    const uint64_t hash = save_weights(*g, path);
    const Tensor in = ref::random_tensor(g->input, rng);
    const Tensor want = g->forward(in);
    const test::LocalWorkers workers(2, path);
    dist::HostRuntime host(g, hash, workers.addrs, {});
    for (dist::Scheme s : {dist::Scheme::modnn, dist::Scheme::dpfp, dist::Scheme::halp}) {
      CAPTURE(dist::scheme_name(s));
      const dist::Plan p = dist::make_plan(*g, estimated_cluster(*g, 3), s);
      CHECK(ref::bit_equal(dist::execute_locally(*g, p, in), want));
      dist::InferStats st;
      CHECK(ref::bit_equal(host.infer({in}, p, &st).at(0), want));
      CHECK(st.faults == 0);
    }
    ::unlink(path.c_str());
  }
}

// MobileNet-V3 / EfficientNet-Lite style, as TFLite writes them: PAD then VALID convs,
// HARD_SWISH, a depthwise branch beside a LOGISTIC one, CONCATENATION, squeeze-and-excitation
// (MEAN, two 1x1 convs, LOGISTIC, MUL), MUL/ADD by constants, and a residual ADD.
Graph tflite_like_net(std::mt19937& rng) {
  Graph g;
  g.input = {rand_int(rng, 9, 20), rand_int(rng, 9, 20), 3};
  add(g, "pad", std::make_unique<ZeroPad>(1, 1, rand_int(rng, 0, 1), rand_int(rng, 0, 1)), {-1});
  add(g, "stem", std::make_unique<Conv2D>(conv_p(3, 2 * rand_int(rng, 1, 4), 3, 2, 0)));
  add(g, "stem/relu6", std::make_unique<ActivationLayer>(Activation::relu6));
  const int hs = add(g, "hswish", std::make_unique<Unary>(UnaryOp::hard_swish));
  const long c = g.shape_of(hs).c;
  add(g, "a", std::make_unique<Conv2D>(conv_p(c, rand_int(rng, 1, 5), 1, 1, 0)), {hs});
  const int a = add(g, "a/sigmoid", std::make_unique<Unary>(UnaryOp::sigmoid));
  add(g, "b/pad", std::make_unique<ZeroPad>(1, 1, 1, 1), {hs});
  Conv2DParams dw = conv_p(c, c, 3, 1, 0);
  dw.depthwise = true;
  const int b = add(g, "b", std::make_unique<Conv2D>(dw));
  const int cat = add(g, "concat", std::make_unique<Concat>(2), {a, b});
  squeeze_excite(g, "se", cat, UnaryOp::sigmoid);
  const long cc = g.shape_of(cat).c;
  add(g, "affine", std::make_unique<BatchNorm>(cc, 0.0f));
  add(g, "residual", std::make_unique<Add>(), {g.size() - 1, cat});
  models::fill_synthetic(g, uint64_t(rng()));
  auto* bn = dynamic_cast<BatchNorm*>(g.node(g.size() - 2).layer.get());
  bn->mean.assign(size_t(cc), 0.0f);  // a plain affine: TFLite writes it as MUL and ADD
  bn->var.assign(size_t(cc), 1.0f);
  return g;
}

TEST_CASE("tflite: CONCATENATION, LOGISTIC, HARD_SWISH, MUL, ADD, PAD and MEAN convert exactly") {
  std::mt19937 rng(37);
  for (int trial = 0; trial < 8; ++trial) {
    CAPTURE(trial);
    Graph g = tflite_like_net(rng);
    const std::string p = tmp_path("model.tflite"), bytes = test::export_tflite(g);
    std::ofstream(p, std::ios::binary | std::ios::trunc)
        .write(bytes.data(), std::streamsize(bytes.size()));
    Graph imported = import::import_model({p}, {"tflite", ""});
    ::unlink(p.c_str());
    CHECK(count_type(imported, "concat") == 1);
    CHECK(count_type(imported, "mul") == 1);
    const Tensor in = ref::random_tensor(g.input, rng);
    check_close(imported.forward(in), ref::forward(g, in), 1e-5f);
    check_graph_bands(imported, in, rng);
  }
}

TEST_CASE("onnx: ShuffleNet units (Slice, Concat, Reshape-Transpose-Reshape) convert; shapes as constants or Shape arithmetic") {
  std::mt19937 rng(40);
  for (bool shape_ops : {false, true}) {
    CAPTURE(shape_ops);
    Graph g;
    g.input = {rand_int(rng, 6, 14), rand_int(rng, 6, 14), 3};
    add(g, "stem", std::make_unique<Conv2D>(conv_p(3, 2 * rand_int(rng, 1, 4), 3, 2, 1)), {-1});
    shuffle_unit(g, "u1", shuffle_unit(g, "u0", g.size() - 1));
    models::fill_synthetic(g, 12);
    test::OnnxExportOptions opt;
    opt.shape_ops = shape_ops;
    Graph imported = import_onnx_bytes(test::export_onnx(g, opt));
    CHECK(count_type(imported, "channel_shuffle") == 2);
    CHECK(count_type(imported, "slice_channels") == 4);
    const Tensor in = ref::random_tensor(g.input, rng);
    check_close(imported.forward(in), ref::forward(g, in), 1e-5f);
    check_graph_bands(imported, in, rng);
  }
}

TEST_CASE("onnx: Split along channels; torch.chunk's opset-11 Slice bounds by shape arithmetic (Add, Mul of constants); a channel-shuffle view used any other way is an error") {
  using test::Proto;
  auto node = [](const std::string& op, const std::vector<std::string>& in,
                 const std::vector<std::string>& out) {
    Proto n;
    for (const std::string& i : in) n.bytes(1, i);
    for (const std::string& o : out) n.bytes(2, o);
    return n.bytes(3, out[0]).bytes(4, op);
  };
  auto ints = [](const std::string& k, const std::vector<int64_t>& v) {
    Proto a;
    a.bytes(1, k);
    for (int64_t x : v) a.varint(8, uint64_t(x));
    return a.varint(20, 7);
  };
  auto shape = [](const std::string& name, const std::vector<int64_t>& v) {
    Proto t;
    t.varint(1, v.size()).varint(2, 7).bytes(8, name);
    return t.bytes(9, std::string(reinterpret_cast<const char*>(v.data()), v.size() * 8));
  };
  auto model = [](Proto graph) {
    Proto input_shape;
    for (int64_t d : {1, 6, 3, 2}) input_shape.msg(1, Proto().varint(1, uint64_t(d)));
    auto vi = [&](const std::string& n) {
      return Proto().bytes(1, n).msg(2, Proto().msg(1, Proto().varint(1, 1).msg(2, input_shape)));
    };
    graph.msg(11, vi("x")).msg(12, vi("y"));
    Proto m;
    m.varint(1, 8).msg(7, graph).msg(8, Proto().bytes(1, "").varint(2, 11));
    return m.str();
  };
  std::mt19937 rng(41);
  const Tensor x = ref::random_tensor({3, 2, 6}, rng);
  {  // Split [2, 4] then Concat in the other order
    Proto graph;
    graph.msg(1, node("Split", {"x"}, {"a", "b"}).msg(5, ints("split", {2, 4})).msg(5, Proto().bytes(1, "axis").varint(3, 1).varint(20, 2)));
    graph.msg(1, node("Concat", {"b", "a"}, {"y"}).msg(5, Proto().bytes(1, "axis").varint(3, 1).varint(20, 2)));
    Graph g = import_onnx_bytes(model(graph));
    const Tensor want = ref::concat({ref::slice_channels(x, 2, 6), ref::slice_channels(x, 0, 2)});
    CHECK(ref::bit_equal(g.forward(x), want));
  }
  {  // torch.chunk(x, 2, 1) as PyTorch 1.13 exports it at opset 11 (ShuffleNet-V2):
     // half = (C + 1) / 2 from Shape/Gather/Add/Div, bounds half * 1 and half * 2.
    auto scalar = [](const std::string& name, int64_t v) {
      return Proto().varint(2, 7).bytes(8, name).bytes(9, std::string(reinterpret_cast<const char*>(&v), 8));
    };
    Proto graph;
    graph.msg(5, scalar("i1", 1)).msg(5, scalar("one", 1)).msg(5, scalar("two", 2));
    graph.msg(5, shape("k1", {1})).msg(5, shape("k2", {2})).msg(5, shape("zero", {0}));
    graph.msg(5, shape("axis", {1}));
    graph.msg(1, node("Shape", {"x"}, {"s"})).msg(1, node("Gather", {"s", "i1"}, {"c"}));
    graph.msg(1, node("Add", {"c", "one"}, {"c1"})).msg(1, node("Div", {"c1", "two"}, {"half"}));
    graph.msg(1, node("Mul", {"half", "k1"}, {"e0"})).msg(1, node("Mul", {"half", "k2"}, {"e1"}));
    graph.msg(1, node("Slice", {"x", "zero", "e0", "axis"}, {"a"}));
    graph.msg(1, node("Slice", {"x", "e0", "e1", "axis"}, {"b"}));
    graph.msg(1, node("Concat", {"b", "a"}, {"y"}).msg(5, Proto().bytes(1, "axis").varint(3, 1).varint(20, 2)));
    Graph g = import_onnx_bytes(model(graph));
    const Tensor want = ref::concat({ref::slice_channels(x, 3, 6), ref::slice_channels(x, 0, 3)});
    CHECK(ref::bit_equal(g.forward(x), want));
  }
  {  // the 5-D view read by a Relu
    Proto graph;
    graph.msg(5, shape("s", {1, 2, 3, 3, 2}));
    graph.msg(1, node("Reshape", {"x", "s"}, {"v"})).msg(1, node("Relu", {"v"}, {"y"}));
    CHECK_THROWS_WITH(import_onnx_bytes(model(graph)), doctest::Contains("channel shuffle"));
  }
  {  // a transpose other than the shuffle's
    Proto graph;
    graph.msg(5, shape("s", {1, 2, 3, 3, 2}));
    graph.msg(1, node("Reshape", {"x", "s"}, {"v"}));
    graph.msg(1, node("Transpose", {"v"}, {"y"}).msg(5, ints("perm", {0, 1, 2, 4, 3})));
    CHECK_THROWS_WITH(import_onnx_bytes(model(graph)), doctest::Contains("perm 0,2,1,3,4"));
  }
  {  // a 5-D view that is not [N, g, C/g, H, W]
    Proto graph;
    graph.msg(5, shape("s", {1, 4, 3, 3, 2}));
    graph.msg(1, node("Reshape", {"x", "s"}, {"y"}));
    CHECK_THROWS_WITH(import_onnx_bytes(model(graph)), doctest::Contains("[N, g, C/g, H, W]"));
  }
}

TEST_CASE("graph: a hard-swish between classifier FCs stays in the host-only tail") {
  Graph g;
  g.input = {9, 9, 3};
  add(g, "conv", std::make_unique<Conv2D>(conv_p(3, 8, 3, 2, 1)), {-1});
  const int body = add(g, "hswish", std::make_unique<Unary>(UnaryOp::hard_swish));
  add(g, "pool", std::make_unique<GlobalAvgPool>());
  add(g, "fc1", std::make_unique<Conv2D>(conv_p(8, 6, 1, 1, 0)));
  add(g, "head/hswish", std::make_unique<Unary>(UnaryOp::hard_swish));
  add(g, "fc2", std::make_unique<Conv2D>(conv_p(6, 4, 1, 1, 0)));
  models::fill_synthetic(g, 2);
  Graph imported = import_onnx_bytes(test::export_onnx(g));
  REQUIRE(imported.size() == 6);
  CHECK(imported.spatial_end() == body + 1);
  CHECK(imported.node(body).layer->spatial());
}

TEST_CASE("weights: concat, mul, unary, pad and grouped conv round-trip; bad attributes are refused") {
  std::mt19937 rng(34);
  Graph g;
  g.input = {12, 10, 4};
  add(g, "pad", std::make_unique<ZeroPad>(1, 0, 2, 1), {-1});
  add(g, "grouped", std::make_unique<Conv2D>(conv_p(4, 8, 3, 1, 1, 2)));
  const int f = fire(g, "fire", g.size() - 1, 3, 4);
  const int u = shuffle_unit(g, "shuffle", f);
  squeeze_excite(g, "se", u, UnaryOp::sigmoid);
  add(g, "silu", std::make_unique<Unary>(UnaryOp::silu));
  models::fill_synthetic(g, 3);
  const Tensor in = ref::random_tensor(g.input, rng);
  const Tensor want = ref::forward(g, in);
  g.finalize();
  const std::string p = tmp_path("branch.ebw");
  save_weights(g, p);
  Graph loaded = load_weights(p);
  ::unlink(p.c_str());
  CHECK(ref::bit_equal(loaded.forward(in), g.forward(in)));
  check_close(loaded.forward(in), want, 1e-5f);

  auto attrs = [](const std::string& json) { return Json::parse(json); };
  CHECK_THROWS(make_layer("concat", attrs(R"({"inputs":1})")));
  CHECK_THROWS(make_layer("concat", attrs(R"({"inputs":100000})")));
  CHECK_THROWS(make_layer("unary", attrs(R"({"op":"tanh","alpha":0.2,"beta":0.5})")));
  CHECK_THROWS(make_layer("unary", attrs(R"({"op":"sigmoid","alpha":"x","beta":0.5})")));
  CHECK_THROWS(make_layer("pad", attrs(R"({"pad":[0,0,-1,0]})")));
  CHECK_THROWS(make_layer("pad", attrs(R"({"pad":[0,0,1]})")));
  CHECK_THROWS(make_layer("channel_shuffle", attrs(R"({"groups":0})")));
  CHECK_THROWS(make_layer("slice_channels", attrs(R"({"begin":4,"end":2})")));
  CHECK_THROWS(make_layer("slice_channels", attrs(R"({"begin":-1,"end":2})")));
  const std::string conv =
      R"({"cin":6,"cout":6,"kernel":[3,3],"stride":[1,1],"pad":[1,1,1,1],"depthwise":false,)"
      R"("activation":"none","groups":)";
  CHECK_NOTHROW(make_layer("conv2d", attrs(conv + "3}")));
  CHECK_THROWS(make_layer("conv2d", attrs(conv + "4}")));
  CHECK_THROWS(make_layer("conv2d", attrs(conv + "0}")));
  CHECK_THROWS(make_layer("conv2d", attrs(conv + "-6}")));
}

TEST_CASE("cli: convert warns on an ONNX model without normalisation; --preset sets it") {
  Graph g;
  g.input = {6, 6, 3};
  add(g, "conv", std::make_unique<Conv2D>(conv_p(3, 4, 3, 1, 1)), {-1});
  add(g, "act", std::make_unique<Unary>(UnaryOp::silu));
  models::fill_synthetic(g, 1);
  const std::string onnx = tmp_path("cli.onnx"), ebw = tmp_path("cli.ebw");
  const std::string bytes = test::export_onnx(g);
  std::ofstream(onnx, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));

  test::CliResult r = test::run_edgeband("convert " + onnx + " -o " + ebw);
  CHECK(r.code == 0);
  CHECK(r.out.find("WARNING") != std::string::npos);
  CHECK(r.out.find("--preset imagenet") != std::string::npos);

  r = test::run_edgeband("convert " + onnx + " -o " + ebw + " --preset imagenet");
  CHECK(r.code == 0);
  CHECK(r.out.find("WARNING") == std::string::npos);
  Graph loaded = load_weights(ebw);
  CHECK(loaded.norm.mean[0] == doctest::Approx(123.675));
  CHECK(loaded.norm.std[2] == doctest::Approx(57.375));

  r = test::run_edgeband("convert " + onnx + " -o " + ebw + " --preset inception --std 64");
  CHECK(r.code == 0);
  loaded = load_weights(ebw);
  CHECK(loaded.norm.mean[1] == 127.5f);
  CHECK(loaded.norm.std[1] == 64.0f);

  r = test::run_edgeband("convert " + onnx + " -o " + ebw + " --preset caffe");
  CHECK(r.code != 0);

  // A converted network with a squeeze-and-excitation block plans for 3 devices.
  Graph se = fire_net(true, 33, 31);
  save_weights(se, ebw);
  r = test::run_edgeband("plan --weights " + ebw + " --devices 3 --scheme all --link 1gbit,0.2ms");
  CHECK(r.code == 0);
  INFO(r.out);
  CHECK(r.out.find("halp") != std::string::npos);
  ::unlink(onnx.c_str());
  ::unlink(ebw.c_str());
}

// The fuzz seeds for these operators (tests/fuzz/seeds/{import,weights}) are valid inputs, and
// inputs one corrupted byte away from them are handled by the fuzz targets without crashing.
TEST_CASE("fuzz seeds: the new operators' models load; corrupted copies are clean rejects") {
  auto read = [](const std::string& rel) {
    std::ifstream f(std::string(EDGEBAND_SOURCE_DIR) + "/tests/fuzz/seeds/" + rel, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  // Named .seed, not .ebw: git ignores *.ebw.
  for (const char* w : {"weights/fire_se.seed", "weights/fire_shuffle.seed"}) {
    CAPTURE(w);
    CHECK_NOTHROW(load_weights(std::string(EDGEBAND_SOURCE_DIR) + "/tests/fuzz/seeds/" + w));
  }
  for (const char* m : {"import/branch_ops.onnx", "import/mobilenet_v3_like.tflite"}) {
    CAPTURE(m);
    std::string b = read(m);
    REQUIRE(b.size() > 100);
    import::NetBuilder nb;
    const std::string_view body(b.data() + 1, b.size() - 1);
    CHECK_NOTHROW(b[0] == 2 ? import::import_onnx(nb, body, -1) : import::import_tflite(nb, body, -1));
    for (size_t i = 1; i < b.size(); ++i) {
      std::string c = b;
      c[i] = char(c[i] ^ (0x5a + int(i % 7)));
      eb_fuzz_import(reinterpret_cast<const uint8_t*>(c.data()), c.size());
    }
  }
}
