// ONNX (onnx.proto): NCHW tensors, OIHW conv weights, initializers and Constant nodes as
// weights. The engine runs HWC, so a Flatten of a C x H x W map is remembered and the next
// Gemm's weight columns are permuted from CHW to HWC order.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "core/layers/branch_ops.h"
#include "core/layers/elementwise.h"
#include "models/import/importers.h"

namespace eb::import {
namespace {

// Field numbers of onnx.proto, by message (the numbers are the file format; the names are
// onnx.proto's own), and the protobuf wire types used here.
enum ModelField { kModelGraph = 7 };
enum GraphField { kGraphNode = 1, kGraphInitializer = 5, kGraphInput = 11, kGraphOutput = 12 };
enum NodeField { kNodeInput = 1, kNodeOutput = 2, kNodeName = 3, kNodeOpType = 4, kNodeAttribute = 5 };
enum AttributeField { kAttrName = 1, kAttrF = 2, kAttrI = 3, kAttrS = 4, kAttrT = 5, kAttrFloats = 7, kAttrInts = 8 };
enum TensorField {
  kTensorDims = 1, kTensorDataType = 2, kTensorFloatData = 4, kTensorInt32Data = 5,
  kTensorInt64Data = 7, kTensorName = 8, kTensorRawData = 9, kTensorDataLocation = 14
};
enum ValueInfoField { kValueInfoName = 1, kValueInfoType = 2 };
enum TypeField { kTypeTensorType = 1 };         // TypeProto
enum TypeTensorField { kTypeTensorShape = 2 };  // TypeProto.Tensor
enum ShapeField { kShapeDim = 1 };              // TensorShapeProto
enum DimensionField { kDimValue = 1 };          // TensorShapeProto.Dimension
enum WireType { kVarint = 0, kLengthDelimited = 2 };
enum OnnxType { kFloat = 1, kUint8 = 2, kInt8 = 3, kInt32 = 6, kInt64 = 7, kDouble = 11 };

struct Attr {
  float f = 0;
  int64_t i = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::string_view t;
};

struct OnnxNode {
  std::string name, op;
  std::vector<std::string> inputs, outputs;
  std::map<std::string, Attr> attr;
  std::string where() const { return "node '" + name + "' (" + op + ")"; }
  int64_t i(const char* k, int64_t d) const {
    auto it = attr.find(k);
    return it == attr.end() ? d : it->second.i;
  }
  float f(const char* k, float d) const {
    auto it = attr.find(k);
    return it == attr.end() ? d : it->second.f;
  }
  std::string s(const char* k, const char* d) const {
    auto it = attr.find(k);
    return it == attr.end() ? d : it->second.s;
  }
  std::vector<int64_t> ints(const char* k) const {
    auto it = attr.find(k);
    return it == attr.end() ? std::vector<int64_t>{} : it->second.ints;
  }
};

ConstTensor parse_tensor(std::string_view bytes, std::string* name) {
  ConstTensor t;
  int type = 0;
  std::string_view raw;
  std::vector<float> fv;
  std::vector<int64_t> iv;
  bool external = false;
  ProtoReader r(bytes);
  for (ProtoField f; r.next(f);) {
    switch (f.number) {
      case kTensorDims: {
        std::vector<int64_t> d;
        append_varints(f, d);
        for (int64_t x : d) t.dims.push_back(long(x));
        break;
      }
      case kTensorDataType:
        type = int(f.as_int());
        break;
      case kTensorFloatData:
        append_floats(f, fv);
        break;
      case kTensorInt32Data:
      case kTensorInt64Data:
        append_varints(f, iv);
        break;
      case kTensorName:
        if (name) *name = f.str();
        break;
      case kTensorRawData:
        raw = f.bytes;
        break;
      case kTensorDataLocation:
        external = f.as_int() == 1;
        break;
      default:
        break;
    }
  }
  const std::string what = "initializer '" + (name ? *name : std::string()) + "'";
  if (external) throw ImportError(what + ": external data files are not supported");
  const long n = checked_numel(t.dims, what);
  const size_t es = type == kFloat || type == kInt32    ? 4
                    : type == kInt64 || type == kDouble ? 8
                    : type == kUint8 || type == kInt8   ? 1
                                                        : 0;
  if (!es) throw ImportError(what + ": unsupported data type " + std::to_string(type));
  if (!raw.empty() || (fv.empty() && iv.empty())) {
    if (raw.size() != size_t(n) * es)
      throw ImportError(what + ": raw_data has " + std::to_string(raw.size()) + " bytes, shape " +
                        t.dims_str() + " needs " + std::to_string(size_t(n) * es));
    // Allocated only once the bytes are known to be there: a few bytes of a hostile file can
    // claim a 2^31-element shape (found by fuzz_import).
    t.data.resize(size_t(n));
    for (long i = 0; i < n; ++i) {
      const char* p = raw.data() + size_t(i) * es;
      float v;
      if (type == kFloat)
        std::memcpy(&v, p, 4);
      else if (type == kInt32) {
        int32_t q;
        std::memcpy(&q, p, 4);
        v = float(q);
      } else if (type == kInt64) {
        int64_t q;
        std::memcpy(&q, p, 8);
        v = float(q);
      } else if (type == kDouble) {
        double q;
        std::memcpy(&q, p, 8);
        v = float(q);
      } else if (type == kInt8)
        v = float(int8_t(*p));
      else
        v = float(uint8_t(*p));
      t.data[size_t(i)] = v;
    }
  } else {
    std::vector<float> v = fv;
    for (int64_t q : iv) v.push_back(float(q));
    if (long(v.size()) != n)
      throw ImportError(what + ": has " + std::to_string(v.size()) + " values, shape needs " +
                        std::to_string(n));
    t.data = std::move(v);
  }
  return t;
}

Attr parse_attr(std::string_view bytes, std::string& name) {
  Attr a;
  ProtoReader r(bytes);
  for (ProtoField f; r.next(f);) {
    switch (f.number) {
      case kAttrName:
        name = f.str();
        break;
      case kAttrF:
        a.f = f.as_float();
        break;
      case kAttrI:
        a.i = f.as_int();
        break;
      case kAttrS:
        a.s = f.str();
        break;
      case kAttrT:
        a.t = f.bytes;
        break;
      case kAttrFloats:
        append_floats(f, a.floats);
        break;
      case kAttrInts:
        append_varints(f, a.ints);
        break;
      default:
        break;
    }
  }
  return a;
}

// A value: an engine node or a constant; `chw` holds the C x H x W shape a Flatten collapsed.
// A Pad's output is `node` with `pad` still to apply: a following Conv absorbs it into its own
// padding, any other consumer gets a pad layer (made once, then the value becomes that node).
// Likewise a Sigmoid or HardSigmoid is `node` with `gate` still to apply: Mul(node, it) is
// SiLU or hard-swish, one layer (as PyTorch exports them); anything else builds the gate.
struct Value {
  bool is_const = false;
  ConstTensor c;
  int node = 0;
  bool flat = false;
  Shape chw;
  bool padded = false;
  Pads pad;
  bool gated = false;
  UnaryOp gate = UnaryOp::sigmoid;
  float alpha = 0, beta = 0;
  // ShuffleNet's channel shuffle arrives as Reshape to [N, g, C/g, H, W] (view 1), Transpose
  // of axes 1 and 2 (view 2), Reshape back to [N, C, H, W]: one layer at the end.
  int view = 0;
  long view_groups = 0;
};

class OnnxReader {
 public:
  OnnxReader(NetBuilder& b, std::string_view file) : b_(b) {
    ProtoReader r(file);
    std::string_view graph;
    for (ProtoField f; r.next(f);)
      if (f.number == kModelGraph && f.wire == kLengthDelimited) graph = f.bytes;
    if (graph.empty()) throw ImportError("ONNX: no graph in the model (not an ONNX file?)");
    ProtoReader g(graph);
    for (ProtoField f; g.next(f);) {
      if (f.wire != kLengthDelimited) continue;
      if (f.number == kGraphNode)
        nodes_.push_back(parse_node(f.bytes));
      else if (f.number == kGraphInitializer) {
        std::string name;
        ConstTensor t = parse_tensor(f.bytes, &name);
        Value v;
        v.is_const = true;
        v.c = std::move(t);
        values_[name] = std::move(v);
      } else if (f.number == kGraphInput)
        inputs_.push_back(f.bytes);
      else if (f.number == kGraphOutput)
        outputs_.push_back(f.bytes);
    }
  }

  int run(int in) {
    // The network input: the first graph input that is not an initializer.
    bool found = false;
    for (std::string_view vi : inputs_) {
      std::string name;
      std::vector<long> dims;
      parse_value_info(vi, name, dims);
      if (values_.count(name)) continue;
      if (found) throw ImportError("ONNX: more than one graph input ('" + name + "')");
      found = true;
      if (dims.size() != 4 || dims[1] <= 0 || dims[2] <= 0 || dims[3] <= 0)
        throw ImportError("ONNX: input '" + name + "' must be [N, C, H, W] with known C, H, W");
      const Shape s{int(dims[2]), int(dims[3]), int(dims[1])};
      if (in < 0)
        b_.graph.input = s;
      else if (b_.shape(in).str() != s.str())
        throw ImportError("ONNX: input " + s.str() + " does not match the previous file's output " +
                          b_.shape(in).str());
      Value v;
      v.node = in;
      values_[name] = v;
    }
    if (!found) throw ImportError("ONNX: the graph has no input");
    if (outputs_.size() != 1)
      throw ImportError("ONNX: expected one graph output, got " + std::to_string(outputs_.size()));
    for (const OnnxNode& n : nodes_) convert(n);
    std::string out;
    std::vector<long> dims;
    parse_value_info(outputs_[0], out, dims);
    auto it = values_.find(out);
    if (it == values_.end() || it->second.is_const)
      throw ImportError("ONNX: output '" + out + "' is not computed from the input");
    return materialize(it->second, out).node;
  }

 private:
  static OnnxNode parse_node(std::string_view bytes) {
    OnnxNode n;
    ProtoReader r(bytes);
    for (ProtoField f; r.next(f);) {
      if (f.wire != kLengthDelimited) continue;
      if (f.number == kNodeInput)
        n.inputs.push_back(f.str());
      else if (f.number == kNodeOutput)
        n.outputs.push_back(f.str());
      else if (f.number == kNodeName)
        n.name = f.str();
      else if (f.number == kNodeOpType)
        n.op = f.str();
      else if (f.number == kNodeAttribute) {
        std::string key;
        Attr a = parse_attr(f.bytes, key);
        n.attr[key] = std::move(a);
      }
    }
    if (n.name.empty() && !n.outputs.empty()) n.name = n.outputs[0];
    return n;
  }

  static void parse_value_info(std::string_view bytes, std::string& name, std::vector<long>& dims) {
    ProtoReader r(bytes);
    for (ProtoField f; r.next(f);) {
      if (f.number == kValueInfoName && f.wire == kLengthDelimited) name = f.str();
      if (f.number != kValueInfoType || f.wire != kLengthDelimited) continue;
      ProtoReader type(f.bytes);
      for (ProtoField t; type.next(t);) {
        if (t.number != kTypeTensorType || t.wire != kLengthDelimited) continue;
        ProtoReader tensor(t.bytes);
        for (ProtoField s; tensor.next(s);) {
          if (s.number != kTypeTensorShape || s.wire != kLengthDelimited) continue;
          ProtoReader shape(s.bytes);
          for (ProtoField d; shape.next(d);) {
            if (d.number != kShapeDim || d.wire != kLengthDelimited) continue;
            long v = -1;
            ProtoReader dim(d.bytes);
            for (ProtoField x; dim.next(x);)
              if (x.number == kDimValue && x.wire == kVarint) v = long(x.as_int());
            dims.push_back(v);
          }
        }
      }
    }
  }

  // Input i as produced, pending pad, gate or view included (see Value); input() builds them.
  Value& raw_input(const OnnxNode& n, size_t i) {
    if (i >= n.inputs.size() || n.inputs[i].empty())
      throw ImportError(n.where() + ": missing input " + std::to_string(i));
    auto it = values_.find(n.inputs[i]);
    if (it == values_.end())
      throw ImportError(n.where() + ": input '" + n.inputs[i] +
                        "' is not defined before it (graph not topologically sorted, or a cycle)");
    return it->second;
  }
  void materialize_gate(Value& v, const std::string& name) {
    if (!v.gated) return;
    v.node = b_.add(name, std::make_unique<Unary>(v.gate, v.alpha, v.beta), {v.node});
    v.gated = false;
  }
  const Value& input(const OnnxNode& n, size_t i) {
    Value& v = raw_input(n, i);  // first: it refuses a missing input before n.inputs[i] is read
    return materialize(v, n.inputs[i]);
  }
  Value& materialize(Value& v, const std::string& name) {
    if (v.view)
      throw ImportError("'" + name + "' is a 5-D view of a map, supported only inside a channel " +
                        "shuffle (Reshape, Transpose of axes 1 and 2, Reshape)");
    materialize_gate(v, name);
    if (v.padded) {
      const Pads& p = v.pad;
      v.node = b_.add(name + "/pad", std::make_unique<ZeroPad>(p.t, p.l, p.b, p.r), {v.node});
      v.padded = false;
    }
    return v;
  }
  bool has_input(const OnnxNode& n, size_t i) const {
    return i < n.inputs.size() && !n.inputs[i].empty();
  }
  int node_of(const OnnxNode& n, size_t i) {
    const Value& v = input(n, i);
    if (v.is_const)
      throw ImportError(n.where() + ": input " + std::to_string(i) +
                        " must be computed, not a constant");
    return v.node;
  }
  int spatial_node(const OnnxNode& n, size_t i) {
    const Value& v = input(n, i);
    if (v.flat)
      throw ImportError(n.where() +
                        ": operates on a flattened spatial map, which is not supported");
    return node_of(n, i);
  }
  const ConstTensor& const_of(const OnnxNode& n, size_t i) {
    const Value& v = input(n, i);
    if (!v.is_const)
      throw ImportError(n.where() + ": input " + std::to_string(i) +
                        " must be a constant (initializer)");
    return v.c;
  }

  // kernel_shape, strides and pads (with auto_pad) of Conv and the pools.
  void window(const OnnxNode& n, int x, long kh, long kw, long& sh, long& sw, Pads& p) {
    std::vector<int64_t> s = n.ints("strides"), pads = n.ints("pads"), dil = n.ints("dilations");
    for (int64_t d : dil)
      if (d != 1) throw ImportError(n.where() + ": dilation is not supported");
    if (s.empty()) s = {1, 1};
    if (s.size() != 2 || s[0] <= 0 || s[1] <= 0)
      throw ImportError(n.where() + ": strides must be two positive values");
    sh = long(s[0]), sw = long(s[1]);
    const std::string ap = n.s("auto_pad", "NOTSET");
    if (ap == "SAME_UPPER") {
      p = same_pads(b_.shape(x), kh, kw, sh, sw);
    } else if (ap == "VALID") {
      p = {};
    } else if (ap == "NOTSET") {
      if (pads.empty()) pads = {0, 0, 0, 0};
      if (pads.size() != 4) throw ImportError(n.where() + ": pads must have 4 values");
      for (int64_t v : pads)
        if (v < 0 || v > 1024)
          throw ImportError(n.where() + ": pad " + std::to_string(v) + " out of range");
      p = {long(pads[0]), long(pads[1]), long(pads[2]), long(pads[3])};
    } else {
      throw ImportError(n.where() + ": auto_pad " + ap + " is not supported");
    }
  }

  void set(const OnnxNode& n, Value v) {
    if (n.outputs.empty()) throw ImportError(n.where() + ": no output");
    if (values_.count(n.outputs[0]))
      throw ImportError(n.where() + ": output '" + n.outputs[0] + "' defined twice");
    values_[n.outputs[0]] = std::move(v);
  }
  void set_node(const OnnxNode& n, int id) {
    Value v;
    v.node = id;
    set(n, std::move(v));
  }

  // An integer held in a constant (pads, axes): a NaN or huge value would make the conversion
  // undefined, so it is refused first.
  static int64_t small_int(const OnnxNode& n, float v) {
    if (!(std::fabs(v) <= 65536.0f) || v != std::floor(v))
      throw ImportError(n.where() + ": " + std::to_string(v) + " is not a small integer");
    return int64_t(v);
  }

  // Builds a layer, so that an invalid attribute reads as this node's import error.
  template <class L, class... A>
  std::unique_ptr<Layer> make(const OnnxNode& n, A... args) {
    try {
      return std::make_unique<L>(args...);
    } catch (const std::exception& e) {
      throw ImportError(n.where() + ": " + e.what());
    }
  }

  // Dense, grouped (ResNeXt, RegNet) or depthwise. A zero Pad before it joins its padding.
  void convert_conv(const OnnxNode& n) {
    const Value& in = raw_input(n, 0);
    if (in.is_const || in.flat) throw ImportError(n.where() + ": input must be a spatial map");
    const bool fold = in.padded && n.s("auto_pad", "NOTSET") == std::string("NOTSET");
    const Pads before = fold ? in.pad : Pads{};
    const int x = fold ? in.node : spatial_node(n, 0);
    const ConstTensor& w = const_of(n, 1);
    if (w.dims.size() != 4)
      throw ImportError(n.where() + ": weights must be rank 4, got " + w.dims_str());
    const long co = w.dims[0], kh = w.dims[2], kw = w.dims[3], cin = b_.shape(x).c;
    const int64_t group = n.i("group", 1);
    if (group < 1 || cin % group != 0 || co % group != 0 || w.dims[1] != cin / group)
      throw ImportError(n.where() + ": weights " + w.dims_str() + " with group " +
                        std::to_string(group) + " do not match input " + b_.shape(x).str());
    const bool dw = group > 1 && group == cin && co == cin;
    long sh, sw;
    Pads p;
    window(n, x, kh, kw, sh, sw, p);
    p = {p.t + before.t, p.l + before.l, p.b + before.b, p.r + before.r};
    std::vector<float> bias;
    if (has_input(n, 2)) bias = const_of(n, 2).data;
    set_node(n, b_.conv(n.name, x, dw ? w.data : oihw_to_ohwi(w), std::move(bias), co, kh, kw, sh,
                        sw, p, dw, Activation::none, dw ? 1 : long(group)));
  }

  // ceil_mode rounds the output size up: the last window may hang over the bottom/right edge,
  // which is extra padding there (padded positions never count). As in PyTorch, a window that
  // would start beyond the input and its leading padding is dropped.
  static long ceil_extra_pad(long in, long k, long s, long before, long after) {
    const long span = in + before + after - k;
    long out = (span + s - 1) / s + 1;
    if ((out - 1) * s >= in + before) --out;
    return std::max(0L, (out - 1) * s + k - (in + before + after));
  }

  void convert_pool(const OnnxNode& n) {
    const int x = spatial_node(n, 0);
    const std::vector<int64_t> k = n.ints("kernel_shape");
    if (k.size() != 2 || k[0] <= 0 || k[1] <= 0 || k[0] > 1024 || k[1] > 1024)
      throw ImportError(n.where() + ": kernel_shape must be two values in 1..1024");
    long sh, sw;
    Pads p;
    int x2 = x;
    window(n, x, long(k[0]), long(k[1]), sh, sw, p);
    const Shape s = b_.shape(x);
    if (s.h + p.t + p.b < k[0] || s.w + p.l + p.r < k[1])
      throw ImportError(n.where() + ": window larger than the padded input " + s.str());
    const long ceil_b = n.i("ceil_mode", 0) ? ceil_extra_pad(s.h, long(k[0]), sh, p.t, p.b) : 0;
    const long ceil_r = n.i("ceil_mode", 0) ? ceil_extra_pad(s.w, long(k[1]), sw, p.l, p.r) : 0;
    if (n.op == "AveragePool" && n.i("count_include_pad", 0) && p.t + p.l + p.b + p.r > 0) {
      // Padding that counts is zeros in the map (Inception-v3's avg_pool2d): pad, then pool.
      // ceil_mode's overhang still does not count, as in PyTorch.
      x2 = b_.add(n.name + "/pad", make<ZeroPad>(n, p.t, p.l, p.b, p.r), {x});
      p = {};
    }
    p.b += ceil_b;
    p.r += ceil_r;
    set_node(n, b_.pool(n.name, x2, n.op == "MaxPool", long(k[0]), long(k[1]), sh, sw, p));
  }

  // The mean over H and W (MobileNet-V3 and EfficientNet exports) is global average pooling.
  void convert_reduce_mean(const OnnxNode& n) {
    const int x = spatial_node(n, 0);
    std::vector<int64_t> axes = n.ints("axes");
    if (axes.empty() && has_input(n, 1))  // opset 18: axes became an input
      for (float a : const_of(n, 1).data) axes.push_back(small_int(n, a));
    std::sort(axes.begin(), axes.end());
    if (axes != std::vector<int64_t>{2, 3} && axes != std::vector<int64_t>{-2, -1})
      throw ImportError(n.where() + ": only the mean over H and W (axes 2, 3) is supported");
    Value v;
    v.node = b_.pool(n.name, x, false, b_.shape(x).h, b_.shape(x).w, 1, 1, Pads{});
    v.flat = false;  // keepdims 0 gives [N, C]: the same 1 x 1 x C values
    set(n, std::move(v));
  }

  void convert_concat(const OnnxNode& n) {
    const int64_t axis = n.i("axis", 1);
    if (raw_input(n, 0).is_const) {  // shape entries, e.g. [b, g, c / g, h, w]
      if (axis != 0) throw ImportError(n.where() + ": only vectors of constants are joined");
      Value r;
      r.is_const = true;
      for (size_t i = 0; i < n.inputs.size(); ++i)
        for (float v : const_of(n, i).data) r.c.data.push_back(v);
      r.c.dims = {long(r.c.data.size())};
      set(n, std::move(r));
      return;
    }
    if (axis != 1 && axis != -3)
      throw ImportError(n.where() + ": only concatenation along channels (axis 1) is supported");
    if (n.inputs.size() < 2) {  // one input: a copy
      set(n, raw_input(n, 0));
      return;
    }
    std::vector<int> ids;
    for (size_t i = 0; i < n.inputs.size(); ++i) ids.push_back(spatial_node(n, i));
    set_node(n, b_.add(n.name, make<Concat>(n, int(ids.size())), ids));
  }

  // Two maps (SiLU's x * sigmoid(x), squeeze-and-excitation's gate), or a map and a constant.
  void convert_mul(const OnnxNode& n) {
    if (fuse_gate(n)) return;
    const Value &a = input(n, 0), &c = input(n, 1);
    if (a.is_const && c.is_const) {  // shape arithmetic (torch.chunk's slice bounds)
      fold_arithmetic(n, a.c, c.c, [](float p, float q) { return p * q; });
      return;
    }
    if (a.flat || c.flat) throw ImportError(n.where() + ": multiplying flattened maps");
    if (a.is_const || c.is_const) {
      const int x = a.is_const ? c.node : a.node;
      const std::vector<float>& k = (a.is_const ? a : c).c.data;
      if (k.size() != 1 && long(k.size()) != b_.shape(x).c)
        throw ImportError(n.where() + ": only per-channel or scalar constants can multiply");
      set_node(n, b_.affine(n.name, x, k, {}));
      return;
    }
    // The 1 x 1 x C gate goes second, whichever side ONNX wrote it on.
    const bool swap = b_.shape(a.node) != b_.shape(c.node) && b_.shape(a.node).h == 1 &&
                      b_.shape(a.node).w == 1;
    const int x = swap ? c.node : a.node, y = swap ? a.node : c.node;
    set_node(n, b_.add(n.name, std::make_unique<Mul>(), {x, y}));
  }

  // Mul(x, Sigmoid(x)) is SiLU; Mul(x, HardSigmoid(x) with alpha 1/6, beta 1/2) hard-swish.
  bool fuse_gate(const OnnxNode& n) {
    if (n.inputs.size() != 2) return false;
    const Value &a = raw_input(n, 0), &c = raw_input(n, 1);
    const Value& g = a.gated ? a : c;
    const Value& x = a.gated ? c : a;
    if (!g.gated || x.gated || x.is_const || x.flat || x.padded || x.node != g.node) return false;
    const bool hard = g.gate == UnaryOp::hard_sigmoid;
    if (hard && (std::fabs(g.alpha - 1.0f / 6) > 1e-6f || g.beta != 0.5f)) return false;
    set_node(n, b_.add(n.name, std::make_unique<Unary>(hard ? UnaryOp::hard_swish : UnaryOp::silu),
                       {x.node}));
    return true;
  }

  // --- channel shuffle and slicing (ShuffleNet) -------------------------------------------

  // Reshape to [N, g, C/g, H, W] starts a channel shuffle; Reshape of its transpose back to
  // [N, C, H, W] ends it. False: an ordinary reshape.
  bool convert_view(const OnnxNode& n) {
    Value& v = raw_input(n, 0);
    if (v.is_const || v.flat || !has_input(n, 1) || !input(n, 1).is_const) return false;
    materialize_gate(v, n.inputs[0]);
    if (v.padded) return false;
    const std::vector<float>& d = const_of(n, 1).data;
    const Shape s = b_.shape(v.node);
    auto batch = [&](float x) { return x == 1 || x == 0 || x == -1; };
    auto is = [](float x, long want) { return x == float(want) || x == -1; };
    if (v.view == 2 && d.size() == 4 && batch(d[0]) && is(d[1], s.c) && is(d[2], s.h) &&
        is(d[3], s.w)) {
      set_node(n, b_.add(n.name, make<ChannelShuffle>(n, v.view_groups), {v.node}));
      return true;
    }
    if (v.view || d.size() != 5) return false;
    const long g = long(d[1] > 0 && d[1] <= float(s.c) ? d[1] : 0);
    if (!batch(d[0]) || g < 1 || s.c % g != 0 || !is(d[2], s.c / g) || !is(d[3], s.h) ||
        !is(d[4], s.w))
      throw ImportError(n.where() + ": only the 5-D view [N, g, C/g, H, W] of a channel " +
                        "shuffle is supported");
    Value w = v;
    w.view = 1, w.view_groups = g;
    set(n, std::move(w));
    return true;
  }
  void convert_transpose(const OnnxNode& n) {
    Value& v = raw_input(n, 0);
    const std::vector<int64_t> perm = n.ints("perm");
    if (v.view != 1 || perm != std::vector<int64_t>{0, 2, 1, 3, 4})
      throw ImportError(n.where() + ": only the transpose of a channel shuffle ([N, g, C/g, H, W] " +
                        "with perm 0,2,1,3,4) is supported");
    Value w = v;
    w.view = 2;
    set(n, std::move(w));
  }

  int slice_channels(const OnnxNode& n, const std::string& name, int x, long c0, long c1) {
    if (c0 == 0 && c1 == b_.shape(x).c) return x;
    return b_.add(name, make<SliceChannels>(n, c0, c1), {x});
  }

  // Split along channels: sizes from the attribute (opset < 13) or input 1, else equal parts.
  void convert_split(const OnnxNode& n) {
    const int x = spatial_node(n, 0);
    const long c = b_.shape(x).c;
    if (n.i("axis", 0) != 1 && n.i("axis", 0) != -3)
      throw ImportError(n.where() + ": only splits along channels (axis 1) are supported");
    std::vector<int64_t> sizes = n.ints("split");
    if (sizes.empty() && has_input(n, 1))
      for (float v : const_of(n, 1).data) sizes.push_back(small_int(n, v));
    const size_t parts = n.outputs.size();
    if (sizes.empty() && parts > 0 && c % long(parts) == 0) sizes.assign(parts, c / long(parts));
    long total = 0;
    for (int64_t v : sizes) total += v < 1 || v > c ? c + 1 : long(v);
    if (sizes.size() != parts || total != c)
      throw ImportError(n.where() + ": split sizes do not divide " + std::to_string(c) +
                        " channels among " + std::to_string(parts) + " outputs");
    long c0 = 0;
    for (size_t k = 0; k < parts; ++k) {
      if (values_.count(n.outputs[k]))
        throw ImportError(n.where() + ": output '" + n.outputs[k] + "' defined twice");
      values_[n.outputs[k]].node = slice_channels(n, n.outputs[k], x, c0, c0 + sizes[k]);
      c0 += sizes[k];
    }
  }

  // Slice along channels with step 1 (starts/ends/axes as inputs from opset 10, else attributes).
  void convert_slice(const OnnxNode& n) {
    const int x = spatial_node(n, 0);
    const long c = b_.shape(x).c;
    auto consts = [&](size_t i, const char* attr) {
      std::vector<float> v;
      if (has_input(n, i)) return const_of(n, i).data;
      for (int64_t a : n.ints(attr)) v.push_back(float(a));
      return v;
    };
    const std::vector<float> starts = consts(1, "starts"), ends = consts(2, "ends"),
                             axes = has_input(n, 3) || n.attr.count("axes") ? consts(3, "axes")
                                                                            : std::vector<float>{0};
    const std::vector<float> steps = has_input(n, 4) ? const_of(n, 4).data : std::vector<float>{1};
    if (starts.size() != 1 || ends.size() != 1 || axes.size() != 1 || steps != std::vector<float>{1} ||
        (axes[0] != 1 && axes[0] != -3))
      throw ImportError(n.where() + ": only a step-1 slice of channels (axis 1) is supported");
    // ends is often INT64_MAX: clamp in float before converting (negative counts from the end).
    auto clamp = [&](float v) {
      if (std::isnan(v)) throw ImportError(n.where() + ": NaN slice bound");
      const float w = v < 0 ? v + float(c) : v;
      return long(std::min(std::max(w, 0.0f), float(c)));
    };
    const long c0 = clamp(starts[0]), c1 = clamp(ends[0]);
    if (c0 >= c1) throw ImportError(n.where() + ": the slice of channels is empty");
    set_node(n, slice_channels(n, n.name, x, c0, c1));
  }

  // Shape arithmetic on constants, as exporters write view(b, g, c / g, h, w): Shape of a map
  // is [1, C, H, W]; Gather, Unsqueeze, Cast and Div of constants are evaluated here.
  void fold_constant(const OnnxNode& n) {
    const std::string& op = n.op;
    Value r;
    r.is_const = true;
    if (op == "Shape") {
      const Value& v = input(n, 0);
      if (v.is_const) {
        for (long d : v.c.dims) r.c.data.push_back(float(d));
      } else {
        const Shape s = b_.shape(v.node);
        r.c.data = v.flat ? std::vector<float>{1, float(s.size())}
                          : std::vector<float>{1, float(s.c), float(s.h), float(s.w)};
      }
      r.c.dims = {long(r.c.data.size())};
    } else if (op == "Cast") {
      if (!input(n, 0).is_const) {  // a computed map stays float
        set(n, input(n, 0));
        return;
      }
      r.c = const_of(n, 0);
    } else if (op == "Unsqueeze") {
      const std::vector<float> axes = has_input(n, 1) ? const_of(n, 1).data : std::vector<float>{};
      if (axes != std::vector<float>{0} && n.ints("axes") != std::vector<int64_t>{0})
        throw ImportError(n.where() + ": only Unsqueeze of axis 0 (shape arithmetic) is supported");
      r.c = const_of(n, 0);
      r.c.dims.insert(r.c.dims.begin(), 1);  // only shape entries go through here: rank <= 1
      if (r.c.dims.size() > 2) throw ImportError(n.where() + ": only scalars and vectors");
    } else if (op == "Gather") {
      r.c = gather(n, const_of(n, 0), const_of(n, 1));
    } else if (!input(n, 0).is_const) {  // Div of a map
      scale_by_inverse(n);
      return;
    } else {
      r.c = divide(n, const_of(n, 0), const_of(n, 1));
    }
    set(n, std::move(r));
  }

  ConstTensor gather(const OnnxNode& n, const ConstTensor& data, const ConstTensor& idx) {
    if (data.dims.size() != 1 || n.i("axis", 0) != 0)
      throw ImportError(n.where() + ": only gathers from a vector constant are supported");
    ConstTensor r;
    r.dims = idx.dims;
    for (float f : idx.data) {
      const int64_t i = small_int(n, f), len = int64_t(data.data.size());
      if (i < -len || i >= len) throw ImportError(n.where() + ": index out of range");
      r.data.push_back(data.data[size_t(i < 0 ? i + len : i)]);
    }
    return r;
  }

  // A map / constant: a per-channel or scalar scale ((x + 3) / 6 of some hard-sigmoids).
  void scale_by_inverse(const OnnxNode& n) {
    const int x = spatial_node(n, 0);
    std::vector<float> k = const_of(n, 1).data;
    if (k.size() != 1 && long(k.size()) != b_.shape(x).c)
      throw ImportError(n.where() + ": only per-channel or scalar divisors are supported");
    for (float& v : k) {
      if (v == 0) throw ImportError(n.where() + ": division by zero");
      v = 1.0f / v;
    }
    set_node(n, b_.affine(n.name, x, std::move(k), {}));
  }

  // Constant / constant is shape arithmetic: whole numbers divide as ONNX's int64 Div does
  // (truncating); the constants' integer type is not kept, so wholeness stands for it.
  // Elementwise a OP b of two constants, either side possibly a scalar (shape arithmetic).
  template <typename Op>
  void fold_arithmetic(const OnnxNode& n, const ConstTensor& a, const ConstTensor& b, Op op) {
    const bool bs = b.data.size() == 1, as = a.data.size() == 1;
    if (!as && !bs && a.data.size() != b.data.size())
      throw ImportError(n.where() + ": shapes do not broadcast");
    Value r;
    r.is_const = true;
    const bool b_wider = b.data.size() > a.data.size() ||
                         (b.data.size() == a.data.size() && b.dims.size() > a.dims.size());
    r.c = b_wider ? b : a;  // a scalar times [1] is [1]
    for (size_t i = 0; i < r.c.data.size(); ++i)
      r.c.data[i] = op(a.data[as ? 0 : i], b.data[bs ? 0 : i]);
    set(n, std::move(r));
  }

  ConstTensor divide(const OnnxNode& n, const ConstTensor& a, const ConstTensor& b) {
    if (b.data.size() != 1 && b.data.size() != a.data.size())
      throw ImportError(n.where() + ": shapes do not broadcast");
    ConstTensor r = a;
    for (size_t i = 0; i < r.data.size(); ++i) {
      const float d = b.data[b.data.size() == 1 ? 0 : i];
      if (d == 0) throw ImportError(n.where() + ": division by zero");
      const bool whole = r.data[i] == std::floor(r.data[i]) && d == std::floor(d);
      r.data[i] = whole ? std::trunc(r.data[i] / d) : r.data[i] / d;
    }
    return r;
  }

  // Zero padding of H and W only; pads are an input from opset 11, an attribute before.
  void convert_pad(const OnnxNode& n) {
    Value& in = raw_input(n, 0);
    materialize_gate(in, n.inputs[0]);
    if (in.is_const || in.flat || in.view)
      throw ImportError(n.where() + ": input must be a spatial map");
    if (n.s("mode", "constant") != std::string("constant"))
      throw ImportError(n.where() + ": only constant padding is supported");
    std::vector<int64_t> pads = n.ints("pads");
    float value = n.f("value", 0.0f);
    if (has_input(n, 1))
      for (float v : const_of(n, 1).data) pads.push_back(small_int(n, v));
    if (has_input(n, 2)) value = const_of(n, 2).data.empty() ? 0.0f : const_of(n, 2).data[0];
    if (has_input(n, 3)) throw ImportError(n.where() + ": the axes input is not supported");
    if (value != 0.0f) throw ImportError(n.where() + ": only zero padding is supported");
    if (pads.size() != 8 || pads[0] || pads[1] || pads[4] || pads[5])
      throw ImportError(n.where() + ": only padding of H and W of an N x C x H x W map");
    for (int64_t v : pads)
      if (v < 0 || v > 1024)
        throw ImportError(n.where() + ": pad " + std::to_string(v) + " out of range 0..1024");
    Value v = in;
    const Pads add{long(pads[2]), long(pads[3]), long(pads[6]), long(pads[7])};
    v.pad = {v.pad.t + add.t, v.pad.l + add.l, v.pad.b + add.b, v.pad.r + add.r};
    v.padded = true;
    set(n, std::move(v));
  }

  void convert(const OnnxNode& n) {
    const std::string& op = n.op;
    const std::string& name = n.name;
    if (op == "Constant") {
      auto it = n.attr.find("value");
      if (it == n.attr.end() || it->second.t.empty())
        throw ImportError(n.where() + ": only tensor-valued constants are supported");
      Value v;
      v.is_const = true;
      v.c = parse_tensor(it->second.t, nullptr);
      set(n, std::move(v));
    } else if (op == "Identity" || op == "Dropout") {
      set(n, raw_input(n, 0));
    } else if (op == "Conv") {
      convert_conv(n);
    } else if (op == "Gemm" || op == "MatMul") {
      const Value& a = input(n, 0);
      const int x = node_of(n, 0);
      const ConstTensor& w = const_of(n, 1);
      if (n.i("transA", 0)) throw ImportError(n.where() + ": transA is not supported");
      if (w.dims.size() != 2)
        throw ImportError(n.where() + ": weights must be rank 2, got " + w.dims_str());
      const bool tb = op == "Gemm" && n.i("transB", 0);
      const long nin = tb ? w.dims[1] : w.dims[0], nout = tb ? w.dims[0] : w.dims[1];
      if (nin != long(b_.shape(x).size()))
        throw ImportError(n.where() + ": weights " + w.dims_str() + " do not match input " +
                          b_.shape(x).str());
      std::vector<float> wt = tb ? w.data : transpose2d(w.data, nin, nout);  // -> [out][in]
      const float alpha = n.f("alpha", 1.0f), beta = n.f("beta", 1.0f);
      if (a.flat) {  // columns were C,H,W; the engine flattens H,W,C
        const long C = a.chw.c, H = a.chw.h, W = a.chw.w;
        std::vector<float> p(wt.size());
        for (long o = 0; o < nout; ++o)
          for (long c = 0; c < C; ++c)
            for (long hw = 0; hw < H * W; ++hw)
              p[size_t(o * nin + hw * C + c)] = wt[size_t(o * nin + c * H * W + hw)];
        wt = std::move(p);
      }
      for (float& v : wt) v *= alpha;
      std::vector<float> bias;
      if (op == "Gemm" && has_input(n, 2)) {
        bias = const_of(n, 2).data;
        if (bias.size() == 1) bias.assign(size_t(nout), bias[0]);
        for (float& v : bias) v *= beta;
      }
      set_node(n,
               b_.fully_connected(name, x, std::move(wt), std::move(bias), nout, Activation::none));
    } else if (op == "Relu") {
      set_node(n, b_.activation(name, node_of(n, 0), Activation::relu));
    } else if (op == "Clip") {
      // min/max are attributes before opset 11, optional inputs after.
      float lo = n.f("min", -std::numeric_limits<float>::infinity()),
            hi = n.f("max", std::numeric_limits<float>::infinity());
      if (has_input(n, 1)) lo = const_of(n, 1).data.at(0);
      if (has_input(n, 2)) hi = const_of(n, 2).data.at(0);
      Activation act;
      if (lo == 0.0f && hi == 6.0f)
        act = Activation::relu6;
      else if (lo == 0.0f && std::isinf(hi))
        act = Activation::relu;
      else
        throw ImportError(n.where() + ": Clip(" + std::to_string(lo) + ", " + std::to_string(hi) +
                          ") is not supported (ReLU/ReLU6 only)");
      set_node(n, b_.activation(name, node_of(n, 0), act));
    } else if (op == "BatchNormalization") {
      const int x = spatial_node(n, 0);
      const long c = b_.shape(x).c;
      auto bn = std::make_unique<BatchNorm>(c, n.f("epsilon", 1e-5f));
      std::vector<float>* dst[4] = {&bn->gamma, &bn->beta, &bn->mean, &bn->var};
      for (size_t i = 0; i < 4; ++i) {
        const ConstTensor& t = const_of(n, i + 1);
        if (long(t.data.size()) != c)
          throw ImportError(n.where() + ": parameter " + std::to_string(i + 1) + " does not have " +
                            std::to_string(c) + " values");
        *dst[i] = t.data;
      }
      set_node(n, b_.add(name, std::move(bn), {x}));
    } else if (op == "MaxPool" || op == "AveragePool") {
      convert_pool(n);
    } else if (op == "GlobalAveragePool") {
      const int x = spatial_node(n, 0);
      set_node(n, b_.pool(name, x, false, b_.shape(x).h, b_.shape(x).w, 1, 1, Pads{}));
    } else if (op == "Transpose") {
      convert_transpose(n);
    } else if (op == "Split") {
      convert_split(n);
    } else if (op == "Slice") {
      convert_slice(n);
    } else if (op == "Shape" || op == "Gather" || op == "Unsqueeze" || op == "Cast" ||
               op == "Div") {
      fold_constant(n);
    } else if (op == "ReduceMean") {
      convert_reduce_mean(n);
    } else if (op == "Concat") {
      convert_concat(n);
    } else if (op == "Mul") {
      convert_mul(n);
    } else if (op == "Pad") {
      convert_pad(n);
    } else if (op == "Sigmoid" || op == "HardSigmoid") {
      Value v;
      v.node = spatial_node(n, 0);
      v.gated = true;
      v.gate = op == "Sigmoid" ? UnaryOp::sigmoid : UnaryOp::hard_sigmoid;
      v.alpha = n.f("alpha", 0.2f), v.beta = n.f("beta", 0.5f);
      if (!std::isfinite(v.alpha) || !std::isfinite(v.beta))
        throw ImportError(n.where() + ": alpha and beta must be finite");
      set(n, std::move(v));
    } else if (op == "HardSwish") {
      set_node(n, b_.add(name, std::make_unique<Unary>(UnaryOp::hard_swish), {spatial_node(n, 0)}));
    } else if (op == "Reshape" && convert_view(n)) {
      return;
    } else if (op == "Flatten" || op == "Reshape") {
      Value v = input(n, 0);
      if (v.is_const) throw ImportError(n.where() + ": reshaping constants is not supported");
      if (op == "Flatten" && n.i("axis", 1) != 1)
        throw ImportError(n.where() + ": only axis 1 is supported");
      if (op == "Reshape") {
        const ConstTensor& s = const_of(n, 1);
        const bool batch = !s.data.empty() && (s.data[0] == 1 || s.data[0] == 0 || s.data[0] == -1);
        const Shape in = b_.shape(v.node);
        // [N, C, 1, 1] of a vector (a squeeze-and-excitation gate made by Linear layers).
        if (batch && s.data.size() == 4 && in.h * in.w == 1 && s.data[2] == 1 && s.data[3] == 1 &&
            (s.data[1] == float(in.c) || s.data[1] == -1)) {
          v.flat = false;
          set(n, std::move(v));
          return;
        }
        if (s.data.size() != 2 || !batch)
          throw ImportError(n.where() + ": only reshapes to [batch, features] or a vector to " +
                            "[batch, C, 1, 1] are supported");
      }
      const Shape s = b_.shape(v.node);
      if (!v.flat && s.h * s.w > 1) v.flat = true, v.chw = s;
      set(n, std::move(v));
    } else if (op == "Softmax") {
      const Value& v = input(n, 0);
      const Shape s = b_.shape(node_of(n, 0));
      if (s.h * s.w != 1)
        throw ImportError(n.where() + ": softmax over a spatial map is not supported");
      (void)v;
      set_node(n, b_.add(name, std::make_unique<Softmax>(), {node_of(n, 0)}));
    } else if (op == "Add") {
      const Value &a = input(n, 0), &c = input(n, 1);
      if (!a.is_const && !c.is_const) {
        if (a.flat || c.flat)
          throw ImportError(n.where() + ": adding flattened maps is not supported");
        set_node(n, b_.add(name, std::make_unique<Add>(), {a.node, c.node}));
      } else if (a.is_const != c.is_const) {
        const int x = a.is_const ? c.node : a.node;
        const std::vector<float>& k = (a.is_const ? a : c).c.data;
        if (k.size() != 1 && long(k.size()) != b_.shape(x).c)
          throw ImportError(n.where() + ": only per-channel or scalar constants can be added");
        set_node(n, b_.affine(name, x, {}, k));
      } else {  // shape arithmetic (torch.chunk's slice bounds)
        fold_arithmetic(n, a.c, c.c, [](float p, float q) { return p + q; });
      }
    } else {
      throw ImportError(n.where() + ": operator '" + op + "' is not supported by the converter");
    }
  }

  NetBuilder& b_;
  std::vector<OnnxNode> nodes_;
  std::vector<std::string_view> inputs_, outputs_;
  std::map<std::string, Value> values_;
};

}  // namespace

int import_onnx(NetBuilder& b, std::string_view file, int in) {
  return OnnxReader(b, file).run(in);
}

}  // namespace eb::import
