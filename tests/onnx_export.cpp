#include "tests/onnx_export.h"

#include <cstdint>
#include <stdexcept>

#include "core/layers/elementwise.h"
#include "tests/proto_writer.h"

namespace eb::test {
namespace {

Proto tensor(const std::string& name, const std::vector<int64_t>& dims,
             const std::vector<float>& v) {
  Proto t;
  for (int64_t d : dims) t.varint(1, uint64_t(d));
  t.varint(2, 1);  // FLOAT
  t.bytes(8, name);
  t.bytes(9, std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));  // raw_data
  return t;
}

Proto attr_ints(const std::string& name, const std::vector<int64_t>& v) {
  Proto a;
  a.bytes(1, name);
  for (int64_t x : v) a.varint(8, uint64_t(x));  // unpacked, as onnx writers emit
  a.varint(20, 7);                               // INTS
  return a;
}
Proto attr_int(const std::string& name, int64_t v) {
  Proto a;
  a.bytes(1, name).varint(3, uint64_t(v)).varint(20, 2);
  return a;
}
Proto attr_float(const std::string& name, float v) {
  Proto a;
  a.bytes(1, name).fixed32(2, v).varint(20, 1);
  return a;
}

Proto value_info(const std::string& name, const std::vector<int64_t>& dims) {
  Proto shape;
  for (int64_t d : dims) shape.msg(1, Proto().varint(1, uint64_t(d)));
  Proto tt;
  tt.varint(1, 1).msg(2, shape);
  Proto type;
  type.msg(1, tt);
  Proto vi;
  vi.bytes(1, name).msg(2, type);
  return vi;
}

Proto int64_tensor(const std::string& name, const std::vector<int64_t>& v, bool scalar = false) {
  Proto t;
  if (!scalar) t.varint(1, uint64_t(v.size()));
  t.varint(2, 7).bytes(8, name);  // INT64
  return t.bytes(9, std::string(reinterpret_cast<const char*>(v.data()), v.size() * 8));
}

Proto simple_node(const std::string& op, const std::vector<std::string>& in, const std::string& out) {
  Proto n;
  for (const std::string& i : in) n.bytes(1, i);
  return n.bytes(2, out).bytes(3, out).bytes(4, op);
}

// The shape [1, a, b, H, W] (a, b: -1 for "the channels", or a number; b == 0: C / a), from
// constants or, with shape_ops, computed from x's Shape as PyTorch's traced view() is.
std::string shape_of(Proto& graph, const std::string& x, const std::string& out, Shape s,
                     std::vector<int64_t> dims, bool shape_ops) {
  if (!shape_ops) {
    for (int64_t& d : dims)
      if (d == 0) d = s.c / dims[1];
    graph.msg(5, int64_tensor(out, dims));
    return out;
  }
  graph.msg(1, simple_node("Shape", {x}, out + "_shape"));
  std::vector<std::string> parts;
  for (size_t k = 0; k < dims.size(); ++k) {
    const std::string p = out + "_" + std::to_string(k);
    if (k == 0 || k + 2 >= dims.size()) {  // batch, H, W: from the shape
      const size_t axis = k == 0 ? 0 : k + 4 - dims.size();
      graph.msg(5, int64_tensor(p + "_i", {int64_t(axis)}, true));
      graph.msg(1, simple_node("Gather", {out + "_shape", p + "_i"}, p + "_s"));
    } else if (dims[k] == 0) {  // C / groups
      graph.msg(5, int64_tensor(p + "_one", {1}, true)).msg(5, int64_tensor(p + "_g", {dims[1]}, true));
      graph.msg(1, simple_node("Gather", {out + "_shape", p + "_one"}, p + "_c"));
      graph.msg(1, simple_node("Div", {p + "_c", p + "_g"}, p + "_s"));
    } else {
      graph.msg(5, int64_tensor(p + "_s", {dims[k]}, true));
    }
    graph.msg(5, int64_tensor(p + "_axes", {0}));
    graph.msg(1, simple_node("Unsqueeze", {p + "_s", p + "_axes"}, p));  // opset 13: axes input
    parts.push_back(p);
  }
  Proto cat = simple_node("Concat", parts, out);
  graph.msg(1, cat.msg(5, attr_int("axis", 0)));
  return out;
}

}  // namespace

std::string export_onnx(Graph& g, const OnnxExportOptions& opt) {
  Proto graph;
  std::vector<std::string> names(size_t(g.size()));
  std::vector<Shape> shapes(size_t(g.size()));
  std::vector<bool> flat(size_t(g.size()), false);
  auto in_name = [&](int id) { return id < 0 ? std::string("input") : names[size_t(id)]; };
  auto in_shape = [&](int id) { return id < 0 ? g.input : shapes[size_t(id)]; };
  for (int i = 0; i < g.size(); ++i) {
    Node& n = g.node(i);
    std::vector<Shape> ins;
    for (int k : n.inputs) ins.push_back(in_shape(k));
    shapes[size_t(i)] = n.layer->configure(ins);
    const std::string out = "t" + std::to_string(i), t = n.layer->type();
    names[size_t(i)] = out;
    const Json a = n.layer->attrs();
    std::vector<Param> ps = n.layer->params();
    Proto node;
    node.bytes(3, n.name);
    std::string x = in_name(n.inputs[0]);
    if (t == "conv2d") {
      const long co = a.at("cout").integer(), kh = a.at("kernel")[0].integer(),
                 kw = a.at("kernel")[1].integer();
      const bool dw = a.at("depthwise").boolean();
      const long groups = a.has("groups") ? a.at("groups").integer() : 1;
      const long ci = dw ? 1 : a.at("cin").integer() / groups;
      std::vector<float> oihw(ps[0].data->size());
      const std::vector<float>& w = *ps[0].data;  // OHWI
      for (long o = 0; o < co; ++o)
        for (long y = 0; y < kh; ++y)
          for (long xx = 0; xx < kw; ++xx)
            for (long c = 0; c < ci; ++c)
              oihw[size_t(((o * ci + c) * kh + y) * kw + xx)] =
                  w[size_t(((o * kh + y) * kw + xx) * ci + c)];
      graph.msg(5, tensor(out + "_w", {co, ci, kh, kw}, oihw));
      graph.msg(5, tensor(out + "_b", {co}, *ps[1].data));
      node.bytes(1, x).bytes(1, out + "_w").bytes(1, out + "_b").bytes(4, "Conv");
      const Json &st = a.at("stride"), &p = a.at("pad");
      node.msg(5, attr_ints("kernel_shape", {kh, kw}));
      node.msg(5, attr_ints("strides", {st[0].integer(), st[1].integer()}));
      node.msg(5,
               attr_ints("pads", {p[0].integer(), p[1].integer(), p[2].integer(), p[3].integer()}));
      if (dw) node.msg(5, attr_int("group", co));
      if (!dw && groups > 1) node.msg(5, attr_int("group", groups));

    } else if (t == "batchnorm") {
      auto* bn = dynamic_cast<BatchNorm*>(n.layer.get());
      const long c = long(bn->gamma.size());
      const char* suffix[4] = {"_g", "_b", "_m", "_v"};
      node.bytes(1, x);
      for (int k = 0; k < 4; ++k) {
        graph.msg(5, tensor(out + suffix[k], {c}, *ps[size_t(k)].data));
        node.bytes(1, out + suffix[k]);
      }
      node.bytes(4, "BatchNormalization").msg(5, attr_float("epsilon", bn->eps));
    } else if (t == "activation") {
      const std::string act = a.at("activation").string();
      node.bytes(1, x);
      if (act == "relu") {
        node.bytes(4, "Relu");
      } else if (opt.clip_as_inputs) {
        graph.msg(5, tensor(out + "_lo", {}, {0.0f})).msg(5, tensor(out + "_hi", {}, {6.0f}));
        node.bytes(1, out + "_lo").bytes(1, out + "_hi").bytes(4, "Clip");
      } else {
        node.bytes(4, "Clip").msg(5, attr_float("min", 0)).msg(5, attr_float("max", 6));
      }
    } else if (t == "maxpool" || t == "avgpool") {
      const long k = a.at("kernel").integer(), s = a.at("stride").integer();
      const Json& p = a.at("pad");
      node.bytes(1, x).bytes(4, t == "maxpool" ? "MaxPool" : "AveragePool");
      node.msg(5, attr_ints("kernel_shape", {k, k})).msg(5, attr_ints("strides", {s, s}));
      node.msg(5,
               attr_ints("pads", {p[0].integer(), p[1].integer(), p[2].integer(), p[3].integer()}));
      if (opt.ceil_mode) node.msg(5, attr_int("ceil_mode", 1));
      if (opt.count_include_pad && t == "avgpool") node.msg(5, attr_int("count_include_pad", 1));
    } else if (t == "global_avgpool") {
      node.bytes(1, x).bytes(4, "GlobalAveragePool");
    } else if (t == "fully_connected") {
      const Shape s = in_shape(n.inputs[0]);
      const long no = a.at("out").integer(), ni = a.at("in").integer();
      std::vector<float> w = *ps[0].data;  // [out][in], in in HWC order
      if (!(n.inputs[0] >= 0 && flat[size_t(n.inputs[0])])) {
        // Flatten NCHW: columns become C,H,W.
        Proto f;
        f.bytes(1, x).bytes(2, out + "_flat").bytes(4, "Flatten").bytes(3, n.name + "/flatten");
        graph.msg(1, f);
        x = out + "_flat";
        std::vector<float> p(w.size());
        for (long o = 0; o < no; ++o)
          for (long c = 0; c < s.c; ++c)
            for (long hw = 0; hw < long(s.h) * s.w; ++hw)
              p[size_t(o * ni + c * s.h * s.w + hw)] = w[size_t(o * ni + hw * s.c + c)];
        w = std::move(p);
      }
      if (opt.gemm) {
        graph.msg(5, tensor(out + "_w", {no, ni}, w)).msg(5, tensor(out + "_b", {no}, *ps[1].data));
        node.bytes(1, x)
            .bytes(1, out + "_w")
            .bytes(1, out + "_b")
            .bytes(4, "Gemm")
            .msg(5, attr_int("transB", 1));
      } else {
        std::vector<float> wt(w.size());
        for (long o = 0; o < no; ++o)
          for (long k = 0; k < ni; ++k) wt[size_t(k * no + o)] = w[size_t(o * ni + k)];
        graph.msg(5, tensor(out + "_w", {ni, no}, wt));
        if (a.at("activation").string() != "none")
          throw std::logic_error("MatMul export: no fused activation");
        node.bytes(1, x).bytes(1, out + "_w").bytes(4, "MatMul");
        // MatMul has no bias: an Add of a constant follows.
        Proto add;
        graph.msg(5, tensor(out + "_b", {no}, *ps[1].data));
        add.bytes(1, out + "_mm")
            .bytes(1, out + "_b")
            .bytes(2, out)
            .bytes(3, n.name + "/bias")
            .bytes(4, "Add");
        node.bytes(2, out + "_mm");
        graph.msg(1, node);
        graph.msg(1, add);
        flat[size_t(i)] = true;
        continue;
      }
      flat[size_t(i)] = true;
    } else if (t == "softmax") {
      node.bytes(1, x).bytes(4, "Softmax").msg(5, attr_int("axis", 1));
      flat[size_t(i)] = true;
    } else if (t == "add") {
      node.bytes(1, x).bytes(1, in_name(n.inputs[1])).bytes(4, "Add");
    } else if (t == "mul") {
      node.bytes(1, x).bytes(1, in_name(n.inputs[1])).bytes(4, "Mul");
    } else if (t == "concat") {
      for (int k : n.inputs) node.bytes(1, in_name(k));
      node.bytes(4, "Concat").msg(5, attr_int("axis", 1));
    } else if (t == "pad") {
      const Json& p = a.at("pad");
      const std::vector<int64_t> pads = {0, 0, p[0].integer(), p[1].integer(),
                                         0, 0, p[2].integer(), p[3].integer()};
      node.bytes(1, x).bytes(4, "Pad");
      if (opt.pad_inputs) {
        Proto pt;  // INT64 pads, as exporters write them
        pt.varint(1, 8).varint(2, 7).bytes(8, out + "_pads");
        for (int64_t v : pads) pt.varint(7, uint64_t(v));
        graph.msg(5, pt);
        node.bytes(1, out + "_pads");
      } else {
        node.msg(5, attr_ints("pads", pads));
      }
    } else if (t == "channel_shuffle") {  // Reshape [1, g, C/g, H, W], Transpose, Reshape
      const Shape s = in_shape(n.inputs[0]);
      const int64_t groups = a.at("groups").integer();
      const std::string v5 = shape_of(graph, x, out + "_v5", s, {1, groups, 0, s.h, s.w}, opt.shape_ops);
      graph.msg(1, simple_node("Reshape", {x, v5}, out + "_5d"));
      Proto tr = simple_node("Transpose", {out + "_5d"}, out + "_t");
      graph.msg(1, tr.msg(5, attr_ints("perm", {0, 2, 1, 3, 4})));
      const std::string v4 = shape_of(graph, x, out + "_v4", s, {1, -1, s.h, s.w}, opt.shape_ops);
      node.bytes(1, out + "_t").bytes(1, v4).bytes(4, "Reshape");
    } else if (t == "slice_channels") {  // as PyTorch writes x[:, a:b]: INT64_MAX for "to the end"
      const int64_t c0 = a.at("begin").integer(), c1 = a.at("end").integer();
      const bool to_end = c1 == in_shape(n.inputs[0]).c;
      graph.msg(5, int64_tensor(out + "_starts", {c0}));
      graph.msg(5, int64_tensor(out + "_ends", {to_end ? INT64_MAX : c1}));
      graph.msg(5, int64_tensor(out + "_axes", {1}));
      node.bytes(1, x).bytes(1, out + "_starts").bytes(1, out + "_ends").bytes(1, out + "_axes");
      node.bytes(4, "Slice");
    } else if (t == "unary") {
      const std::string op = a.at("op").string();
      const float alpha = float(a.at("alpha").number()), beta = float(a.at("beta").number());
      auto gate = [&](const char* onnx_op, float ga, float gb) {  // x * gate(x), as PyTorch exports
        Proto s;
        s.bytes(1, x).bytes(2, out + "_gate").bytes(3, n.name + "/gate").bytes(4, onnx_op);
        if (std::string(onnx_op) == "HardSigmoid")
          s.msg(5, attr_float("alpha", ga)).msg(5, attr_float("beta", gb));
        graph.msg(1, s);
        node.bytes(1, x).bytes(1, out + "_gate").bytes(4, "Mul");
      };
      if (op == "sigmoid") {
        node.bytes(1, x).bytes(4, "Sigmoid");
      } else if (op == "hard_sigmoid") {
        node.bytes(1, x).bytes(4, "HardSigmoid");
        node.msg(5, attr_float("alpha", alpha)).msg(5, attr_float("beta", beta));
      } else if (op == "silu") {
        gate("Sigmoid", 0, 0);
      } else if (opt.hard_swish_op) {
        node.bytes(1, x).bytes(4, "HardSwish");
      } else {
        gate("HardSigmoid", 1.0f / 6, 0.5f);
      }
    } else {
      throw std::logic_error("export_onnx: no mapping for " + t);
    }
    const std::string act =
        a.has("activation") && t != "activation" ? a.at("activation").string() : "none";
    if (act != "none") {  // a fused activation becomes its own node
      node.bytes(2, out + "_pre");
      graph.msg(1, node);
      Proto r;
      r.bytes(1, out + "_pre").bytes(2, out).bytes(3, n.name + "/act");
      if (act == "relu")
        r.bytes(4, "Relu");
      else
        r.bytes(4, "Clip").msg(5, attr_float("min", 0)).msg(5, attr_float("max", 6));
      graph.msg(1, r);
      continue;
    }
    node.bytes(2, out);
    graph.msg(1, node);
  }
  graph.bytes(2, "edgeband-test");
  graph.msg(11, value_info("input", {1, g.input.c, g.input.h, g.input.w}));
  const Shape o = shapes.back();
  graph.msg(12, value_info(names.back(), {1, long(o.size())}));
  Proto model;
  model.varint(1, 8).bytes(2, "edgeband-test").msg(7, graph);
  model.msg(8, Proto().bytes(1, "").varint(2, 13));
  return model.str();
}

}  // namespace eb::test
