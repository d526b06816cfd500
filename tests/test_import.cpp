#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>

#include "models/classify.h"
#include "core/image.h"
#include "core/layers/conv2d.h"
#include "core/layers/elementwise.h"
#include "core/layers/fully_connected.h"
#include "core/layers/global_avg_pool.h"
#include "core/layers/pool2d.h"
#include "core/weights_io.h"
#include "models/import/importers.h"
#include "models/zoo.h"
#include "tests/helpers.h"
#include "tests/onnx_export.h"
#include "tests/proto_writer.h"

using namespace eb;
using eb::test::Proto;

namespace {

std::string tmp_file(const std::string& name, const std::string& bytes) {
  const std::string p = "/tmp/edgeband_import_" + std::to_string(::getpid()) + "_" + name;
  std::ofstream(p, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), std::streamsize(bytes.size()));
  return p;
}

Graph import_bytes(const std::string& name, const std::string& bytes) {
  const std::string p = tmp_file(name, bytes);
  Graph g = import::import_model({p}, {name, ""});
  ::unlink(p.c_str());
  return g;
}

// Imported engine forward vs. the reference forward of the original (unfused) graph.
void check_roundtrip(Graph& original, const std::string& onnx, float tol) {
  Graph g = import_bytes("model.onnx", onnx);
  std::mt19937 rng(11);
  const Tensor in = ref::random_tensor(original.input, rng);
  const Tensor want = ref::forward(original, in), got = g.forward(in);
  REQUIRE(got.shape() == want.shape());
  CHECK(ref::max_abs_diff(got, want) <= tol * std::max(1.0f, ref::max_abs(want)));
}

Conv2DParams conv_params(long cin, long cout, long k, long s, long pt, long pl, long pb, long pr,
                         bool dw) {
  Conv2DParams p;
  p.cin = cin, p.cout = dw ? cin : cout, p.kh = p.kw = k, p.sh = p.sw = s;
  p.pad_t = pt, p.pad_l = pl, p.pad_b = pb, p.pad_r = pr, p.depthwise = dw;
  return p;
}

// A random small CNN with every operator the ONNX importer maps.
Graph random_net(std::mt19937& rng) {
  auto R = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Graph g;
  g.input = {R(7, 19), R(7, 19), R(1, 4)};
  long c = g.input.c;
  // Configure as we go, so each layer is chosen to fit the map it receives.
  auto fit = [&] {
    Node& n = g.node(g.size() - 1);
    std::vector<Shape> in;
    for (int k : n.inputs) in.push_back(g.shape_of(k));
    n.layer->configure(in);
  };
  auto small = [&](long k) {
    const Shape s = g.shape_of(g.size() - 1);
    return s.h < k + 1 || s.w < k + 1;
  };
  const int layers = R(2, 5);
  for (int i = 0; i < layers; ++i) {
    const std::string n = "l" + std::to_string(i);
    const int kind = R(0, 3);
    const long k = kind <= 1 ? R(1, 5) : R(2, 3), s = R(1, 2);
    if (small(k)) break;
    if (kind <= 1) {
      const bool dw = kind == 1;
      g.add(n, std::make_unique<Conv2D>(conv_params(c, R(1, 9), k, s, R(0, int(k) - 1),
                                                    R(0, int(k) - 1), R(0, int(k) - 1),
                                                    R(0, int(k) - 1), dw)));
      fit();
      c = dynamic_cast<Conv2D&>(*g.node(g.size() - 1).layer).conv().cout;
      if (R(0, 1)) g.add(n + "/bn", std::make_unique<BatchNorm>(c, 1e-3f)), fit();
      const int act = R(0, 2);
      if (act)
        g.add(n + "/act",
              std::make_unique<ActivationLayer>(act == 1 ? Activation::relu : Activation::relu6)),
            fit();
      if (s == 1 && R(0, 2) == 0) {
        // Residual: a same-shape 3x3 conv beside, then Add.
        const int a = g.size() - 1;
        g.add(n + "/side", std::make_unique<Conv2D>(conv_params(c, c, 3, 1, 1, 1, 1, 1, false)),
              {a});
        fit();
        g.add(n + "/add", std::make_unique<Add>(), {a, g.size() - 1});
        fit();
      }
    } else {
      g.add(n, std::make_unique<Pool2D>(
                   R(0, 1) ? kernels::PoolKind::max : kernels::PoolKind::average, k, s,
                   R(0, int(k) - 1), R(0, int(k) - 1), R(0, int(k) - 1), R(0, int(k) - 1)));
      fit();
    }
  }
  return g;
}

}  // namespace

TEST_CASE("onnx: random small networks convert to the same function") {
  std::mt19937 rng(2022);
  for (int trial = 0; trial < 24; ++trial) {
    Graph g = random_net(rng);
    // Shapes, then a classifier head: global pool or flatten + FC, softmax.
    std::vector<Shape> shapes;
    for (int i = 0; i < g.size(); ++i) {
      std::vector<Shape> in;
      for (int k : g.node(i).inputs) in.push_back(k < 0 ? g.input : shapes[size_t(k)]);
      shapes.push_back(g.node(i).layer->configure(in));
    }
    const Shape last = shapes.back();
    if (trial % 2) g.add("gap", std::make_unique<GlobalAvgPool>());
    const long fin = trial % 2 ? last.c : long(last.size());
    g.add("fc", std::make_unique<FullyConnected>(fin, 5));
    g.add("prob", std::make_unique<Softmax>());
    models::fill_synthetic(g, uint64_t(trial));
    CAPTURE(trial);
    test::OnnxExportOptions opt;
    opt.clip_as_inputs = trial % 3 != 0;
    opt.gemm = trial % 4 != 1;
    check_roundtrip(g, test::export_onnx(g, opt), 1e-4f);
  }
}

TEST_CASE("onnx: VGG-16 and MobileNet-V1 graphs (synthetic weights)") {
  for (const std::string name : {"vgg16:64", "mobilenet_v1:0.25:96"}) {
    CAPTURE(name);
    Graph g = models::build_unfused(models::parse_model_name(name));
    models::fill_synthetic(g);
    check_roundtrip(g, test::export_onnx(g), 1e-4f);
  }
}

// --- TensorFlow GraphDef, written field by field --------------------------------------------

namespace {

struct GraphDefWriter {
  Proto graph;
  static Proto attr(const std::string& key, const Proto& value) {
    Proto e;
    e.bytes(1, key).msg(2, value);
    return e;
  }
  static Proto list_i(const std::vector<int64_t>& v) {
    Proto l;
    l.packed_varints(3, v);
    return Proto().msg(1, l);
  }
  static Proto str(const std::string& s) { return Proto().bytes(2, s); }
  void node(const std::string& name, const std::string& op, const std::vector<std::string>& inputs,
            const std::vector<Proto>& attrs = {}) {
    Proto n;
    n.bytes(1, name).bytes(2, op);
    for (const std::string& i : inputs) n.bytes(3, i);
    for (const Proto& a : attrs) n.msg(5, a);
    graph.msg(1, n);
  }
  static Proto shape(const std::vector<long>& dims) {
    Proto s;
    for (long d : dims) s.msg(2, Proto().varint(1, uint64_t(int64_t(d))));
    return s;
  }
  void constant(const std::string& name, const std::vector<long>& dims,
                const std::vector<float>& v) {
    Proto t;
    t.varint(1, 1).msg(2, shape(dims));
    if (v.size() == 1)
      t.packed_floats(5, v);  // float_val, broadcast to the shape
    else
      t.bytes(4, std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
    node(name, "Const", {},
         {attr("value", Proto().msg(8, t)), attr("dtype", Proto().varint(6, 1))});
  }
  void quint8(const std::string& name, const std::vector<long>& dims,
              const std::vector<uint8_t>& q) {
    Proto t;
    t.varint(1, 12).msg(2, shape(dims)).bytes(4, std::string(q.begin(), q.end()));
    node(name, "Const", {},
         {attr("value", Proto().msg(8, t)), attr("dtype", Proto().varint(6, 12))});
  }
};

}  // namespace

TEST_CASE(
    "graphdef: unfolded BN, FusedBatchNorm, quint8 Dequantize MIN_FIRST, BiasAdd, pools, MatMul") {
  std::mt19937 rng(5);
  const int H = 11, W = 9, C = 3, F = 6;
  GraphDefWriter w;
  w.node("input", "Placeholder", {},
         {GraphDefWriter::attr("shape", Proto().msg(7, GraphDefWriter::shape({-1, H, W, C})))});
  const auto hwio = ref::random_vec(3 * 3 * C * F, rng);
  w.constant("conv/w", {3, 3, C, F}, hwio);
  w.node("conv/w/read", "Identity", {"conv/w"});
  const std::vector<Proto> conv_attrs = {
      GraphDefWriter::attr("strides", GraphDefWriter::list_i({1, 2, 2, 1})),
      GraphDefWriter::attr("padding", GraphDefWriter::str("SAME")),
      GraphDefWriter::attr("data_format", GraphDefWriter::str("NHWC"))};
  w.node("conv", "Conv2D", {"input", "conv/w/read"}, conv_attrs);
  // TF-slim's unfolded batch norm: x * (gamma * rsqrt(var + eps)) + (beta - mean * that).
  const auto gamma = ref::random_vec(F, rng, 0.5f, 1.5f), beta = ref::random_vec(F, rng),
             mean = ref::random_vec(F, rng), var = ref::random_vec(F, rng, 0.5f, 1.5f);
  w.constant("bn/gamma", {F}, gamma);
  w.constant("bn/beta", {F}, beta);
  w.constant("bn/mean", {F}, mean);
  w.constant("bn/var", {F}, var);
  w.constant("bn/eps", {}, {0.001f});
  w.node("bn/add", "Add", {"bn/var", "bn/eps"});
  w.node("bn/rsqrt", "Rsqrt", {"bn/add"});
  w.node("bn/mul", "Mul", {"bn/rsqrt", "bn/gamma"});
  w.node("bn/mul_1", "Mul", {"conv", "bn/mul"});
  w.node("bn/mul_2", "Mul", {"bn/mean", "bn/mul"});
  w.node("bn/sub", "Sub", {"bn/beta", "bn/mul_2"});
  w.node("bn/add_1", "Add", {"bn/mul_1", "bn/sub"});
  w.node("relu6", "Relu6", {"bn/add_1", "^conv"});  // a control input is ignored
  // Depthwise weights as quint8 + Dequantize(MIN_FIRST).
  std::vector<uint8_t> q(3 * 3 * F);
  for (auto& v : q) v = uint8_t(rng() & 255);
  const float qmin = -0.8f, qmax = 1.1f;
  w.quint8("dw/q", {3, 3, F, 1}, q);
  w.constant("dw/min", {}, {qmin});
  w.constant("dw/max", {}, {qmax});
  w.node("dw/w", "Dequantize", {"dw/q", "dw/min", "dw/max"},
         {GraphDefWriter::attr("mode", GraphDefWriter::str("MIN_FIRST")),
          GraphDefWriter::attr("T", Proto().varint(6, 12))});
  w.node("dw", "DepthwiseConv2dNative", {"relu6", "dw/w"},
         {GraphDefWriter::attr("strides", GraphDefWriter::list_i({1, 1, 1, 1})),
          GraphDefWriter::attr("padding", GraphDefWriter::str("VALID"))});
  const auto g2 = ref::random_vec(F, rng, 0.5f, 1.5f), b2 = ref::random_vec(F, rng),
             m2 = ref::random_vec(F, rng), v2 = ref::random_vec(F, rng, 0.5f, 1.5f);
  w.constant("fbn/g", {F}, g2);
  w.constant("fbn/b", {F}, b2);
  w.constant("fbn/m", {F}, m2);
  w.constant("fbn/v", {F}, v2);
  Proto eps;
  eps.fixed32(4, 0.01f);
  w.node("fbn", "FusedBatchNormV3", {"dw", "fbn/g", "fbn/b", "fbn/m", "fbn/v"},
         {GraphDefWriter::attr("epsilon", eps)});
  w.node("relu", "Relu", {"fbn"});
  w.node("pool", "MaxPool", {"relu"},
         {GraphDefWriter::attr("ksize", GraphDefWriter::list_i({1, 2, 2, 1})),
          GraphDefWriter::attr("strides", GraphDefWriter::list_i({1, 1, 1, 1})),
          GraphDefWriter::attr("padding", GraphDefWriter::str("SAME"))});
  // Spatial size after conv (SAME, stride 2): 6x5; depthwise VALID 3x3: 4x3; pool SAME s1: 4x3.
  w.node("gap", "AvgPool", {"pool"},
         {GraphDefWriter::attr("ksize", GraphDefWriter::list_i({1, 4, 3, 1})),
          GraphDefWriter::attr("strides", GraphDefWriter::list_i({1, 1, 1, 1})),
          GraphDefWriter::attr("padding", GraphDefWriter::str("VALID"))});
  w.node("squeeze", "Squeeze", {"gap"});
  const int K = 4;
  const auto fc = ref::random_vec(F * K, rng), fcb = ref::random_vec(K, rng);
  w.constant("fc/w", {F, K}, fc);
  w.constant("fc/b", {K}, fcb);
  w.node("fc", "MatMul", {"squeeze", "fc/w"});
  w.node("fc/bias", "BiasAdd", {"fc", "fc/b"});
  w.node("prob", "Softmax", {"fc/bias"});
  Graph got = import_bytes("model.pb", w.graph.str());

  // The same network built directly, with the MIN_FIRST arithmetic written out by hand.
  Graph want;
  want.input = {H, W, C};
  auto conv = std::make_unique<Conv2D>(
      conv_params(C, F, 3, 2, 1, 1, 1, 1, false));  // SAME 11->6, 9->5: pad 1/1
  for (int o = 0; o < F; ++o)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 3; ++x)
        for (int c = 0; c < C; ++c)
          conv->weight()[size_t(((o * 3 + y) * 3 + x) * C + c)] =
              hwio[size_t(((y * 3 + x) * C + c) * F + o)];
  want.add("conv", std::move(conv));
  auto bn = std::make_unique<BatchNorm>(F, 0.001f);
  bn->gamma = gamma, bn->beta = beta, bn->mean = mean, bn->var = var;
  want.add("bn", std::move(bn));
  want.add("relu6", std::make_unique<ActivationLayer>(Activation::relu6));
  auto dw = std::make_unique<Conv2D>(conv_params(F, F, 3, 1, 0, 0, 0, 0, true));
  const double step = (double(qmax) - qmin) / 255.0;  // (range * 256/255) / 256
  const double lo = std::round(qmin / step) * step;
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < F; ++c)
        dw->weight()[size_t((c * 3 + y) * 3 + x)] =
            float(lo + q[size_t((y * 3 + x) * F + c)] * step);
  want.add("dw", std::move(dw));
  auto bn2 = std::make_unique<BatchNorm>(F, 0.01f);
  bn2->gamma = g2, bn2->beta = b2, bn2->mean = m2, bn2->var = v2;
  want.add("fbn", std::move(bn2));
  want.add("relu", std::make_unique<ActivationLayer>(Activation::relu));
  want.add("pool", std::make_unique<Pool2D>(kernels::PoolKind::max, 2, 1, 0, 0, 1, 1));
  want.add("gap", std::make_unique<GlobalAvgPool>());
  auto lin = std::make_unique<FullyConnected>(F, K);
  std::vector<Param> ps = lin->params();
  for (int o = 0; o < K; ++o)
    for (int i = 0; i < F; ++i) (*ps[0].data)[size_t(o * F + i)] = fc[size_t(i * K + o)];
  *ps[1].data = fcb;
  want.add("fc", std::move(lin));
  want.add("prob", std::make_unique<Softmax>());
  const Tensor in = ref::random_tensor(want.input, rng);
  const Tensor a = got.forward(in), b = ref::forward(want, in);
  REQUIRE(a.shape() == b.shape());
  CHECK(ref::max_abs_diff(a, b) <= 1e-5f);
  for (int i = 0; i < got.size(); ++i)
    CHECK(got.node(i).layer->type() != "batchnorm");  // all folded
}

// --- real pretrained weights (../shared) ---------------------------------------------------

namespace {
const std::string kShared = EDGEBAND_SHARED;
bool have_shared() {
  std::ifstream f(kShared + "/reference/manifest.json");
  if (!f)
    MESSAGE("SKIPPED: " << kShared
                        << "/reference/manifest.json is missing; real-weights checks not run");
  return bool(f);
}
}  // namespace

TEST_CASE("real weights: every reference case of ../shared/reference/manifest.json to 1e-4") {
  if (!have_shared()) return;
  std::ifstream f(kShared + "/reference/manifest.json");
  const Json m = Json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
  std::map<std::string, Graph> converted;  // weights files -> graph
  int cases = 0;
  for (const Json& c : m.at("cases").items()) {
    std::vector<std::string> files;
    std::string key;
    for (const Json& w : c.at("weights").items())
      files.push_back(kShared + "/" + w.string()), key += w.string();
    if (!converted.count(key))
      converted.emplace(key,
                        import::import_model(files, {"m", kShared + "/labels/imagenet_1001.txt"}));
    const Graph& g = converted.at(key);
    const Json& shape = c.at("shape");
    REQUIRE(shape.size() == 4);
    const Tensor in = load_raw_tensor(
        kShared + "/" + c.at("input").string(),
        {int(shape[1].integer()), int(shape[2].integer()), int(shape[3].integer())});
    const Tensor out = g.forward(in);
    const std::vector<float> want = test::read_floats(kShared + "/" + c.at("probs").string());
    REQUIRE(out.size() == want.size());
    float dev = 0;
    for (size_t i = 0; i < want.size(); ++i)
      dev = std::max(dev, std::fabs(out.data()[i] - want[i]));
    CAPTURE(key);
    CAPTURE(c.at("input").string());
    MESSAGE(key << " " << c.at("input").string() << ": max |p - p_ref| = " << dev);
    CHECK(dev <= 1e-4f);
    const auto top = top_k(out, 1);
    CHECK(top[0].index == int(c.at("top5")[0][0].integer()));
    CHECK(g.labels.at(size_t(top[0].index)) == c.at("top5")[0][1].string());
    ++cases;
  }
  CHECK(cases >= 15);
}

// --- bad input ---------------------------------------------------------------------------

namespace {
// Every outcome but a clean ImportError (or another std::exception) is a failure; a crash
// or sanitizer report ends the test run.
void expect_clean_failure_or_success(const std::string& name, const std::string& bytes) {
  try {
    Graph g = import_bytes(name, bytes);
  } catch (const std::exception& e) {
    CHECK(std::string(e.what()).size() > 0);
  }
}
}  // namespace

TEST_CASE("import: truncated and corrupted files fail cleanly") {
  Graph g = models::build_unfused(models::parse_model_name("mobilenet_v1:0.25:32"));
  models::fill_synthetic(g);
  const std::string onnx = test::export_onnx(g);
  std::mt19937 rng(3);
  for (int i = 0; i < 60; ++i) {
    const size_t cut = std::uniform_int_distribution<size_t>(0, onnx.size() - 1)(rng);
    CHECK_THROWS_AS(import_bytes("t.onnx", onnx.substr(0, cut)), std::exception);
  }
  for (int i = 0; i < 60; ++i) {
    std::string b = onnx;
    for (int k = 0; k < 4; ++k)
      b[std::uniform_int_distribution<size_t>(0, b.size() - 1)(rng)] = char(rng());
    expect_clean_failure_or_success("c.onnx", b);
  }
  if (have_shared()) {
    const std::string tfl =
        import::read_file(kShared + "/weights/coral/mobilenet_v1_0.25_128_quant.tflite");
    for (int i = 0; i < 40; ++i) {
      const size_t cut = std::uniform_int_distribution<size_t>(8, tfl.size() - 1)(rng);
      expect_clean_failure_or_success("t.tflite", tfl.substr(0, cut));
      std::string b = tfl;
      for (int k = 0; k < 8; ++k)
        b[std::uniform_int_distribution<size_t>(0, 4096)(rng)] = char(rng());
      expect_clean_failure_or_success("c.tflite", b);
    }
  }
}

TEST_CASE("import: clear errors for unsupported ops, cycles, hostile sizes, wrong magic") {
  auto error_of = [](const std::string& name, const std::string& bytes) {
    try {
      import_bytes(name, bytes);
    } catch (const import::ImportError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  GraphDefWriter w;
  w.node("input", "Placeholder", {},
         {GraphDefWriter::attr("shape", Proto().msg(7, GraphDefWriter::shape({1, 8, 8, 3})))});
  w.node("weird", "Cumsum", {"input"});
  CHECK(error_of("a.pb", w.graph.str())
            .find("node 'weird' (Cumsum): operator 'Cumsum' is not supported") !=
        std::string::npos);

  GraphDefWriter cyc;
  cyc.node("input", "Placeholder", {},
           {GraphDefWriter::attr("shape", Proto().msg(7, GraphDefWriter::shape({1, 8, 8, 3})))});
  cyc.node("a", "Relu", {"b"});
  cyc.node("b", "Relu", {"a"});
  cyc.node("out", "Softmax", {"b"});
  CHECK(error_of("c.pb", cyc.graph.str()).find("cycle") != std::string::npos);

  // A constant claiming 2^40 elements.
  GraphDefWriter huge;
  huge.node("input", "Placeholder", {},
            {GraphDefWriter::attr("shape", Proto().msg(7, GraphDefWriter::shape({1, 8, 8, 3})))});
  huge.constant("w", {1 << 20, 1 << 20}, {1.0f});
  huge.node("out", "Conv2D", {"input", "w"});
  CHECK(error_of("h.pb", huge.graph.str()).find("larger than 2^31") != std::string::npos);
  GraphDefWriter neg = huge;
  neg.constant("n", {-5, 3}, {1.0f});
  CHECK(error_of("n.pb", neg.graph.str()) != "no error");

  // An ONNX initializer claiming 2^30 floats with 4 bytes of data: refused before anything of
  // that size is allocated (fuzz_import found the allocation: 4 GiB of RSS from 106 bytes).
  Proto init;
  init.varint(1, uint64_t(1) << 30).varint(2, 1).bytes(8, "w").bytes(9, std::string(4, '\0'));
  const std::string big_onnx = Proto().msg(7, Proto().msg(5, init)).str();
  CHECK(error_of("b.onnx", big_onnx).find("raw_data has 4 bytes") != std::string::npos);
  // The same with a GraphDef constant's tensor_content.
  GraphDefWriter big_pb;
  big_pb.node("input", "Placeholder", {},
              {GraphDefWriter::attr("shape", Proto().msg(7, GraphDefWriter::shape({1, 8, 8, 3})))});
  big_pb.constant("w", {1L << 30}, {1, 2, 3, 4});
  big_pb.node("out", "Conv2D", {"input", "w"});
  CHECK(error_of("b.pb", big_pb.graph.str()).find("tensor_content has 16 bytes") !=
        std::string::npos);

  CHECK(error_of("x.tflite", "TFL2garbagegarbage").find("no TFL3") != std::string::npos);
  CHECK(error_of("x.bin", "hello").find("unknown model format") != std::string::npos);
  CHECK(error_of("x.onnx", std::string("\x0a\xff\xff\xff\x0f", 5)).find("exceeds") !=
        std::string::npos);

  // ONNX node reading a tensor defined later (out of order / cycle).
  Graph g = models::build_unfused(models::parse_model_name("mobilenet_v1:0.25:32"));
  models::fill_synthetic(g);
  std::string onnx = test::export_onnx(g);
  const size_t at = onnx.find("t3");  // first use of t3 is as an output name; rename it
  REQUIRE(at != std::string::npos);
  onnx[at + 1] = '9';  // now "t9": defined twice later / t3 never defined
  CHECK(error_of("o.onnx", onnx) != "no error");
}

TEST_CASE("convert CLI: real files, Egyptian cat, no partial output on error") {
  const std::string bin = EDGEBAND_BIN,
                    out = "/tmp/edgeband_import_" + std::to_string(::getpid()) + ".ebw";
  const std::string bad = tmp_file("bad.onnx", "\x0a\x05garbage");
  CHECK(std::system((bin + " convert " + bad + " -o " + out + " 2>/dev/null").c_str()) != 0);
  CHECK(::access(out.c_str(), F_OK) != 0);
  ::unlink(bad.c_str());
  if (!have_shared()) return;
  const std::string c = kShared + "/weights/coral/";
  REQUIRE(std::system((bin + " convert " + c +
                       "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite " + c +
                       "mobilenet_quant_v1_224_head_layers.tflite -o " + out + " --labels " +
                       kShared + "/labels/imagenet_1001.txt --name mobilenet_v1:1:224 >/dev/null")
                          .c_str()) == 0);
  const std::string cmd =
      bin + " run --weights " + out + " --image " + kShared + "/images/chelsea.png --top 1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string text;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) text += buf;
  CHECK(::pclose(p) == 0);
  CHECK(text.find("286") != std::string::npos);
  CHECK(text.find("Egyptian cat") != std::string::npos);
  ::unlink(out.c_str());
}
