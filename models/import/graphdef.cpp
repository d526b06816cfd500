// TensorFlow frozen GraphDef (graph.proto / node_def.proto / attr_value.proto / tensor.proto).
// The graph is walked backwards from its output; subgraphs of constants (Identity reads, the
// unfolded BN arithmetic, Dequantize of quint8 weights) are evaluated here, and what touches
// the input becomes engine layers (NHWC only, as TF-slim and every frozen mobile graph use).
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "core/layers/elementwise.h"
#include "models/import/importers.h"

namespace eb::import {
namespace {

// Field numbers of TensorFlow's protos (graph.proto, node_def.proto, attr_value.proto,
// tensor.proto, tensor_shape.proto), by message, and the protobuf wire types used here.
enum GraphDefField { kGraphNode = 1 };
enum NodeDefField { kNodeName = 1, kNodeOp = 2, kNodeInput = 3, kNodeAttr = 5 };
enum MapEntryField { kEntryKey = 1, kEntryValue = 2 };  // map<string, AttrValue> attr
enum AttrValueField {
  kAttrList = 1, kAttrS = 2, kAttrI = 3, kAttrF = 4, kAttrType = 6, kAttrShape = 7, kAttrTensor = 8
};
enum ListValueField { kListI = 3 };
enum TensorField {
  kTensorDtype = 1, kTensorShape = 2, kTensorContent = 4, kTensorFloatVal = 5, kTensorIntVal = 7,
  kTensorInt64Val = 10
};
enum ShapeField { kShapeDim = 2 };  // TensorShapeProto
enum DimField { kDimSize = 1 };     // TensorShapeProto.Dim
enum WireType { kVarint = 0, kLengthDelimited = 2 };
enum DataType {
  DT_FLOAT = 1,
  DT_DOUBLE = 2,
  DT_INT32 = 3,
  DT_UINT8 = 4,
  DT_INT8 = 6,
  DT_INT64 = 9,
  DT_QUINT8 = 12
};

struct AttrValue {
  std::string s;
  int64_t i = 0;
  float f = 0;
  int type = 0;
  std::vector<int64_t> list_i;
  std::vector<long> shape;  // from a TensorShapeProto
  std::string_view tensor;  // a TensorProto, parsed on demand
};

struct NodeDef {
  std::string name, op;
  std::vector<std::string> inputs;
  std::map<std::string, AttrValue> attr;
  const AttrValue* find(const std::string& k) const {
    auto it = attr.find(k);
    return it == attr.end() ? nullptr : &it->second;
  }
};

std::vector<long> parse_shape(std::string_view bytes) {
  std::vector<long> dims;
  ProtoReader r(bytes);
  for (ProtoField f; r.next(f);) {
    if (f.number == kShapeDim && f.wire == kLengthDelimited) {
      ProtoReader d(f.bytes);
      long size = 0;
      for (ProtoField g; d.next(g);)
        if (g.number == kDimSize && g.wire == kVarint) size = long(g.as_int());
      dims.push_back(size);
    }
  }
  return dims;
}

AttrValue parse_attr(std::string_view bytes) {
  AttrValue a;
  ProtoReader r(bytes);
  for (ProtoField f; r.next(f);) {
    switch (f.number) {
      case kAttrList: {
        ProtoReader l(f.bytes);
        for (ProtoField g; l.next(g);)
          if (g.number == kListI) append_varints(g, a.list_i);
        break;
      }
      case kAttrS:
        a.s = f.str();
        break;
      case kAttrI:
        a.i = f.as_int();
        break;
      case kAttrF:
        a.f = f.as_float();
        break;
      case kAttrType:
        a.type = int(f.as_int());
        break;
      case kAttrShape:
        a.shape = parse_shape(f.bytes);
        break;
      case kAttrTensor:
        a.tensor = f.bytes;
        break;
      default:
        break;
    }
  }
  return a;
}

NodeDef parse_node(std::string_view bytes) {
  NodeDef n;
  ProtoReader r(bytes);
  for (ProtoField f; r.next(f);) {
    if (f.wire != kLengthDelimited) continue;
    if (f.number == kNodeName)
      n.name = f.str();
    else if (f.number == kNodeOp)
      n.op = f.str();
    else if (f.number == kNodeInput)
      n.inputs.push_back(f.str());
    else if (f.number == kNodeAttr) {
      ProtoReader e(f.bytes);
      std::string key;
      AttrValue val;
      for (ProtoField g; e.next(g);) {
        if (g.number == kEntryKey && g.wire == kLengthDelimited)
          key = g.str();
        else if (g.number == kEntryValue && g.wire == kLengthDelimited)
          val = parse_attr(g.bytes);
      }
      n.attr[key] = std::move(val);
    }
  }
  return n;
}

// TensorProto -> floats (quantized types keep their raw integer values).
ConstTensor parse_tensor(std::string_view bytes, const std::string& where) {
  ConstTensor t;
  int dtype = 0;
  std::string_view content;
  std::vector<float> fvals;
  std::vector<int64_t> ivals;
  ProtoReader r(bytes);
  for (ProtoField f; r.next(f);) {
    switch (f.number) {
      case kTensorDtype:
        dtype = int(f.as_int());
        break;
      case kTensorShape:
        t.dims = parse_shape(f.bytes);
        break;
      case kTensorContent:
        content = f.bytes;
        break;
      case kTensorFloatVal:
        append_floats(f, fvals);
        break;
      case kTensorIntVal:
      case kTensorInt64Val:
        append_varints(f, ivals);
        break;
      default:
        break;
    }
  }
  const long n = checked_numel(t.dims, where);
  const size_t esize = dtype == DT_FLOAT || dtype == DT_INT32    ? 4
                       : dtype == DT_INT64 || dtype == DT_DOUBLE ? 8
                                                                 : 1;
  if (dtype != DT_FLOAT && dtype != DT_INT32 && dtype != DT_INT64 && dtype != DT_UINT8 &&
      dtype != DT_QUINT8 && dtype != DT_INT8)
    throw ImportError(where + ": constant of unsupported dtype " + std::to_string(dtype));
  if (!content.empty()) {
    if (content.size() != size_t(n) * esize)
      throw ImportError(where + ": tensor_content has " + std::to_string(content.size()) +
                        " bytes, shape " + t.dims_str() + " needs " +
                        std::to_string(size_t(n) * esize));
    t.data.resize(size_t(n));  // once the bytes are known to be there (as in onnx.cpp)
    const char* p = content.data();
    for (long i = 0; i < n; ++i) {
      float v;
      if (dtype == DT_FLOAT)
        std::memcpy(&v, p + 4 * i, 4);
      else if (dtype == DT_INT32) {
        int32_t q;
        std::memcpy(&q, p + 4 * i, 4);
        v = float(q);
      } else if (dtype == DT_INT64) {
        int64_t q;
        std::memcpy(&q, p + 8 * i, 8);
        v = float(q);
      } else if (dtype == DT_INT8)
        v = float(int8_t(p[i]));
      else
        v = float(uint8_t(p[i]));
      t.data[size_t(i)] = v;
    }
  } else {
    // Repeated values; a shorter list is padded with its last element (TF semantics).
    std::vector<float> v = fvals;
    for (int64_t q : ivals) v.push_back(float(q));
    if (n > 0 && v.empty()) throw ImportError(where + ": constant has no values");
    if (long(v.size()) > n) throw ImportError(where + ": constant has more values than its shape");
    t.data.resize(size_t(n));
    for (long i = 0; i < n; ++i) t.data[size_t(i)] = i < long(v.size()) ? v[size_t(i)] : v.back();
  }
  return t;
}

// A value in the walk: a constant, or an engine node (activations).
struct Value {
  bool is_const = false;
  ConstTensor c;
  int node = 0;
};

// Elementwise op on two constants with numpy broadcasting of a scalar or a trailing vector.
ConstTensor broadcast(const ConstTensor& a, const ConstTensor& b,
                      const std::function<float(float, float)>& f, const std::string& where) {
  const ConstTensor& big = a.data.size() >= b.data.size() ? a : b;
  const size_t n = big.data.size(), na = a.data.size(), nb = b.data.size();
  if (na == 0 || nb == 0 || n % na || n % nb)
    throw ImportError(where + ": cannot broadcast " + a.dims_str() + " with " + b.dims_str());
  ConstTensor o{big.dims, std::vector<float>(n)};
  for (size_t i = 0; i < n; ++i) o.data[i] = f(a.data[i % na], b.data[i % nb]);
  return o;
}

class GraphDefReader {
 public:
  GraphDefReader(NetBuilder& b, std::string_view file) : b_(b) {
    ProtoReader r(file);
    for (ProtoField f; r.next(f);) {
      if (f.number != kGraphNode || f.wire != kLengthDelimited) continue;
      NodeDef n = parse_node(f.bytes);
      if (n.name.empty()) throw ImportError("GraphDef: a node has no name");
      if (!nodes_.emplace(n.name, n).second)
        throw ImportError("GraphDef: duplicate node '" + n.name + "'");
      order_.push_back(n.name);
    }
    if (nodes_.empty()) throw ImportError("GraphDef: no nodes (not a frozen TensorFlow graph?)");
  }

  int run(int in) {
    in_ = in;
    // The output: the last node in file order that no other node reads and that is not a constant.
    std::set<std::string> consumed;
    for (const auto& [name, n] : nodes_)
      for (const std::string& i : n.inputs) consumed.insert(strip(i));
    std::string out;
    for (const std::string& name : order_)
      if (!consumed.count(name) && nodes_.at(name).op != "Const") out = name;
    if (out.empty()) throw ImportError("GraphDef: cannot find the output node");
    Value v = eval(out);
    if (v.is_const)
      throw ImportError("GraphDef: output '" + out + "' does not depend on the input");
    if (!placeholder_seen_) throw ImportError("GraphDef: no Placeholder input feeds '" + out + "'");
    return v.node;
  }

 private:
  static std::string strip(const std::string& s) {
    std::string n = s.size() && s[0] == '^' ? s.substr(1) : s;
    const size_t colon = n.find(':');
    return colon == std::string::npos ? n : n.substr(0, colon);
  }

  Value eval(const std::string& name) {
    if (auto it = done_.find(name); it != done_.end()) return it->second;
    if (!visiting_.insert(name).second)
      throw ImportError("GraphDef: cycle through node '" + name + "'");
    if (visiting_.size() > 2000)
      throw ImportError("GraphDef: graph deeper than 2000 nodes");  // bounds recursion
    auto it = nodes_.find(name);
    if (it == nodes_.end()) throw ImportError("GraphDef: input '" + name + "' names no node");
    Value v = convert(it->second);
    visiting_.erase(name);
    return done_[name] = v;
  }

  // Data inputs only (control inputs "^x" are ordering hints, irrelevant once frozen).
  std::vector<Value> inputs(const NodeDef& n, size_t want_at_least) {
    std::vector<Value> v;
    for (const std::string& i : n.inputs)
      if (i.empty() || i[0] != '^') v.push_back(eval(strip(i)));
    if (v.size() < want_at_least)
      throw ImportError(where(n) + ": expected " + std::to_string(want_at_least) + " inputs, got " +
                        std::to_string(v.size()));
    return v;
  }

  static std::string where(const NodeDef& n) { return "node '" + n.name + "' (" + n.op + ")"; }

  const ConstTensor& need_const(const Value& v, const NodeDef& n, const char* what) {
    if (!v.is_const) throw ImportError(where(n) + ": " + what + " must be a constant");
    return v.c;
  }
  int need_node(const Value& v, const NodeDef& n) {
    if (v.is_const) throw ImportError(where(n) + ": expected a computed input, got a constant");
    return v.node;
  }

  std::string str_attr(const NodeDef& n, const char* k, const char* dflt) {
    const AttrValue* a = n.find(k);
    return a ? a->s : dflt;
  }
  std::vector<int64_t> nhwc_attr(const NodeDef& n, const char* k) {
    const AttrValue* a = n.find(k);
    std::vector<int64_t> v = a ? a->list_i : std::vector<int64_t>{1, 1, 1, 1};
    if (v.size() != 4 || v[0] != 1 || v[3] != 1 || v[1] <= 0 || v[2] <= 0)
      throw ImportError(where(n) + ": attribute '" + k + "' must be [1,h,w,1]");
    return v;
  }
  Pads padding(const NodeDef& n, int x, long kh, long kw, long sh, long sw) {
    const std::string p = str_attr(n, "padding", "VALID");
    if (p == "SAME") return same_pads(b_.shape(x), kh, kw, sh, sw);
    if (p == "VALID") return {};
    throw ImportError(where(n) + ": padding '" + p + "' is not supported");
  }
  void check_nhwc(const NodeDef& n) {
    const std::string f = str_attr(n, "data_format", "NHWC");
    if (f != "NHWC")
      throw ImportError(where(n) + ": data_format " + f + " is not supported (NHWC only)");
  }

  Value constant(ConstTensor c) {
    Value v;
    v.is_const = true;
    v.c = std::move(c);
    return v;
  }
  Value node(int id) {
    Value v;
    v.node = id;
    return v;
  }

  Value convert(const NodeDef& n) {
    const std::string& op = n.op;
    if (op == "Const") {
      const AttrValue* a = n.find("value");
      if (!a || a->tensor.empty()) throw ImportError(where(n) + ": no value");
      return constant(parse_tensor(a->tensor, where(n)));
    }
    if (op == "Placeholder") {
      if (placeholder_seen_) throw ImportError(where(n) + ": more than one input placeholder");
      placeholder_seen_ = true;
      const AttrValue* a = n.find("shape");
      if (!a || a->shape.size() != 4 || a->shape[1] <= 0 || a->shape[2] <= 0 || a->shape[3] <= 0)
        throw ImportError(where(n) + ": input shape must be [batch, H, W, C] with known H, W, C");
      const Shape s{int(a->shape[1]), int(a->shape[2]), int(a->shape[3])};
      if (in_ < 0)
        b_.graph.input = s;
      else if (b_.shape(in_).str() != s.str())
        throw ImportError(where(n) + ": input " + s.str() +
                          " does not match the previous file's output " + b_.shape(in_).str());
      return node(in_);
    }
    if (op == "Identity" || op == "StopGradient" || op == "Squeeze" || op == "Reshape" ||
        op == "Snapshot") {
      // Only the data input: a Reshape of activations ignores its shape operand (often a
      // Shape op), since HWC order is kept; only a reshape of a constant needs the new dims.
      if (n.inputs.empty() || n.inputs[0].empty() || n.inputs[0][0] == '^')
        throw ImportError(where(n) + ": missing input");
      Value v = eval(strip(n.inputs[0]));
      if (v.is_const && op == "Reshape") {
        const std::vector<Value> in = inputs(n, 2);
        const ConstTensor& shape = need_const(in[1], n, "shape");
        std::vector<long> d(shape.data.begin(), shape.data.end());
        long known = 1, unknown = -1;
        for (size_t i = 0; i < d.size(); ++i)
          (d[i] < 0 ? unknown = long(i) : known *= std::max(1L, d[i]));
        if (unknown >= 0) d[size_t(unknown)] = known ? v.c.numel() / known : 0;
        if (checked_numel(d, where(n)) != v.c.numel())
          throw ImportError(where(n) + ": reshape changes the element count");
        v.c.dims = d;
      }
      return v;
    }
    if (op == "Dequantize") {
      std::vector<Value> in = inputs(n, 3);
      const ConstTensor& q = need_const(in[0], n, "quantized input");
      const float lo = need_const(in[1], n, "min_range").data.at(0),
                  hi = need_const(in[2], n, "max_range").data.at(0);
      const std::string mode = str_attr(n, "mode", "MIN_COMBINED");
      const AttrValue* t = n.find("T");
      if (t && t->type != DT_QUINT8 && t->type != DT_UINT8)
        throw ImportError(where(n) + ": only quint8 is supported");
      ConstTensor o{q.dims, std::vector<float>(q.data.size())};
      if (mode == "MIN_FIRST") {
        // TF's QuantizedToFloat: 2^8 steps over the range stretched by 256/255, min rounded to a
        // step.
        const double range = (double(hi) - lo) * (256.0 / 255.0), step = range / 256.0;
        const double lo_r = step > 0 ? std::round(lo / float(step)) * float(step) : lo;
        for (size_t i = 0; i < q.data.size(); ++i)
          o.data[i] = step > 0 ? float(lo_r + q.data[i] * step) : lo;
      } else if (mode == "MIN_COMBINED") {
        const double step = (double(hi) - lo) / 255.0;
        for (size_t i = 0; i < q.data.size(); ++i) o.data[i] = float(lo + q.data[i] * step);
      } else {
        throw ImportError(where(n) + ": Dequantize mode " + mode + " is not supported");
      }
      return constant(std::move(o));
    }
    if (op == "Rsqrt" || op == "Sqrt") {
      ConstTensor c = need_const(inputs(n, 1)[0], n, "operand");
      for (float& x : c.data) x = op == "Rsqrt" ? 1.0f / std::sqrt(x) : std::sqrt(x);
      return constant(std::move(c));
    }
    if (op == "Mul" || op == "Add" || op == "AddV2" || op == "Sub" || op == "RealDiv" ||
        op == "BiasAdd") {
      std::vector<Value> in = inputs(n, 2);
      const bool add = op == "Add" || op == "AddV2" || op == "BiasAdd";
      if (in[0].is_const && in[1].is_const) {
        std::function<float(float, float)> f;
        if (op == "Mul")
          f = [](float a, float b) { return a * b; };
        else if (add)
          f = [](float a, float b) { return a + b; };
        else if (op == "Sub")
          f = [](float a, float b) { return a - b; };
        else
          f = [](float a, float b) { return a / b; };
        return constant(broadcast(in[0].c, in[1].c, f, where(n)));
      }
      if (!in[0].is_const && !in[1].is_const) {
        if (!add || op == "BiasAdd")
          throw ImportError(where(n) + ": only Add of two computed tensors is supported");
        return node(b_.add(n.name, std::make_unique<Add>(), {in[0].node, in[1].node}));
      }
      check_nhwc(n);
      const bool x_first = !in[0].is_const;
      const int x = x_first ? in[0].node : in[1].node;
      std::vector<float> c = (x_first ? in[1] : in[0]).c.data;
      if (c.size() != 1 && long(c.size()) != b_.shape(x).c)
        throw ImportError(where(n) + ": constant of " + std::to_string(c.size()) +
                          " values is not per-channel for " + b_.shape(x).str());
      if (op == "Mul") return node(b_.affine(n.name, x, c, {}));
      if (add) return node(b_.affine(n.name, x, {}, c));
      if (op == "Sub" && x_first) {
        for (float& v : c) v = -v;
        return node(b_.affine(n.name, x, {}, c));
      }
      if (op == "Sub") {  // c - x
        return node(b_.affine(n.name, x, std::vector<float>(c.size(), -1.0f), c));
      }
      if (x_first) {  // x / c
        for (float& v : c) v = 1.0f / v;
        return node(b_.affine(n.name, x, c, {}));
      }
      throw ImportError(where(n) + ": division by a computed tensor is not supported");
    }
    if (op == "FusedBatchNorm" || op == "FusedBatchNormV2" || op == "FusedBatchNormV3") {
      check_nhwc(n);
      std::vector<Value> in = inputs(n, 5);
      const AttrValue* tr = n.find("is_training");
      if (tr && tr->i)
        throw ImportError(where(n) + ": is_training must be false in a frozen graph");
      const int x = need_node(in[0], n);
      const long c = b_.shape(x).c;
      const ConstTensor *g = &need_const(in[1], n, "scale"), *bt = &need_const(in[2], n, "offset"),
                        *m = &need_const(in[3], n, "mean"),
                        *var = &need_const(in[4], n, "variance");
      for (const ConstTensor* t : {g, bt, m, var})
        if (long(t->data.size()) != c)
          throw ImportError(where(n) + ": BN parameters do not have " + std::to_string(c) +
                            " channels");
      const AttrValue* eps = n.find("epsilon");
      auto bn = std::make_unique<BatchNorm>(c, eps ? eps->f : 0.001f);
      bn->gamma = g->data, bn->beta = bt->data, bn->mean = m->data, bn->var = var->data;
      return node(b_.add(n.name, std::move(bn), {x}));
    }
    if (op == "Relu" || op == "Relu6")
      return node(b_.activation(n.name, need_node(inputs(n, 1)[0], n),
                                op == "Relu" ? Activation::relu : Activation::relu6));
    if (op == "Conv2D" || op == "DepthwiseConv2dNative") {
      check_nhwc(n);
      std::vector<Value> in = inputs(n, 2);
      const int x = need_node(in[0], n);
      const ConstTensor& w = need_const(in[1], n, "filter");
      if (w.dims.size() != 4)
        throw ImportError(where(n) + ": filter must be rank 4, got " + w.dims_str());
      const AttrValue* dil = n.find("dilations");
      if (dil && !dil->list_i.empty())
        for (int64_t d : dil->list_i)
          if (d != 1) throw ImportError(where(n) + ": dilation is not supported");
      const std::vector<int64_t> s = nhwc_attr(n, "strides");
      const long kh = w.dims[0], kw = w.dims[1];
      const bool dw = op != "Conv2D";
      if (w.dims[2] != b_.shape(x).c)
        throw ImportError(where(n) + ": filter " + w.dims_str() + " does not match input " +
                          b_.shape(x).str());
      const Pads pads = padding(n, x, kh, kw, s[1], s[2]);
      const long cout = dw ? w.dims[2] : w.dims[3];
      std::vector<float> ohwi = dw ? hwc1_to_dw(w) : hwio_to_ohwi(w);
      return node(b_.conv(n.name, x, std::move(ohwi), {}, cout, kh, kw, s[1], s[2], pads, dw,
                          Activation::none));
    }
    if (op == "AvgPool" || op == "MaxPool") {
      check_nhwc(n);
      const int x = need_node(inputs(n, 1)[0], n);
      const std::vector<int64_t> k = nhwc_attr(n, "ksize"), s = nhwc_attr(n, "strides");
      const Pads pads = padding(n, x, k[1], k[2], s[1], s[2]);
      return node(b_.pool(n.name, x, op == "MaxPool", k[1], k[2], s[1], s[2], pads));
    }
    if (op == "MatMul") {
      std::vector<Value> in = inputs(n, 2);
      const int x = need_node(in[0], n);
      const ConstTensor& w = need_const(in[1], n, "weights");
      const AttrValue *ta = n.find("transpose_a"), *tb = n.find("transpose_b");
      if (ta && ta->i) throw ImportError(where(n) + ": transpose_a is not supported");
      if (w.dims.size() != 2) throw ImportError(where(n) + ": weights must be rank 2");
      const bool t = tb && tb->i;
      const long nin = t ? w.dims[1] : w.dims[0], nout = t ? w.dims[0] : w.dims[1];
      if (nin != long(b_.shape(x).size()))
        throw ImportError(where(n) + ": weights " + w.dims_str() + " do not match input " +
                          b_.shape(x).str());
      return node(b_.fully_connected(n.name, x, t ? w.data : transpose2d(w.data, nin, nout), {},
                                     nout, Activation::none));
    }
    if (op == "Softmax")
      return node(b_.add(n.name, std::make_unique<Softmax>(), {need_node(inputs(n, 1)[0], n)}));
    throw ImportError(where(n) + ": operator '" + op + "' is not supported by the converter");
  }

  NetBuilder& b_;
  std::map<std::string, NodeDef> nodes_;
  std::vector<std::string> order_;
  std::map<std::string, Value> done_;
  std::set<std::string> visiting_;
  int in_ = -1;
  bool placeholder_seen_ = false;
};

}  // namespace

int import_graphdef(NetBuilder& b, std::string_view file, int in) {
  return GraphDefReader(b, file).run(in);
}

}  // namespace eb::import
