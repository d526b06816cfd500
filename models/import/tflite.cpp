// TFLite flatbuffers (schema.fbs): one subgraph, NHWC activations, OHWI conv weights,
// [1,kh,kw,C] depthwise weights, uint8/int8 tensors dequantized with their scale and zero
// point (per channel where the file has per-channel scales).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/half.h"
#include "core/layers/branch_ops.h"
#include "core/layers/elementwise.h"
#include "models/import/importers.h"

namespace eb::import {
namespace {

// Field ids from TFLite's schema.fbs (declaration order).
enum ModelField { kOperatorCodes = 1, kSubgraphs = 2, kBuffers = 4 };
enum SubGraphField { kTensors = 0, kInputs = 1, kOutputs = 2, kOperators = 3 };
enum TensorField { kShape = 0, kType = 1, kBuffer = 2, kName = 3, kQuant = 4 };
enum OpField { kOpcode = 0, kOpInputs = 1, kOpOutputs = 2, kOptions = 4 };
enum TensorType { kF32 = 0, kF16 = 1, kI32 = 2, kU8 = 3, kI64 = 4, kI8 = 9 };
enum Builtin {
  kAdd = 0,
  kAvgPool = 1,
  kConcat = 2,
  kConv = 3,
  kDepthwise = 4,
  kDequantize = 6,
  kFullyConnected = 9,
  kLogistic = 14,
  kMaxPool = 17,
  kMul = 18,
  kRelu = 19,
  kRelu6 = 21,
  kReshape = 22,
  kSoftmax = 25,
  kPad = 34,
  kMean = 40,
  kSqueeze = 43,
  kQuantize = 114,
  kHardSwish = 117
};

const char* builtin_name(int op) {
  switch (op) {
    case kAdd:
      return "ADD";
    case kAvgPool:
      return "AVERAGE_POOL_2D";
    case kConcat:
      return "CONCATENATION";
    case kLogistic:
      return "LOGISTIC";
    case kMul:
      return "MUL";
    case kPad:
      return "PAD";
    case kMean:
      return "MEAN";
    case kHardSwish:
      return "HARD_SWISH";
    case kConv:
      return "CONV_2D";
    case kDepthwise:
      return "DEPTHWISE_CONV_2D";
    case kDequantize:
      return "DEQUANTIZE";
    case kFullyConnected:
      return "FULLY_CONNECTED";
    case kMaxPool:
      return "MAX_POOL_2D";
    case kRelu:
      return "RELU";
    case kRelu6:
      return "RELU6";
    case kReshape:
      return "RESHAPE";
    case kSoftmax:
      return "SOFTMAX";
    case kSqueeze:
      return "SQUEEZE";
    case kQuantize:
      return "QUANTIZE";
    default:
      return nullptr;
  }
}

Activation fused(int code, const std::string& where) {
  switch (code) {
    case 0:
      return Activation::none;
    case 1:
      return Activation::relu;
    case 3:
      return Activation::relu6;
    default:
      throw ImportError(where + ": fused activation " + std::to_string(code) + " is not supported");
  }
}

class TfliteReader {
 public:
  TfliteReader(NetBuilder& b, std::string_view file) : b_(b), file_(file) {
    if (file.size() < 8 || file.substr(4, 4) != "TFL3")
      throw ImportError("not a TFLite file (no TFL3 identifier)");
    model_ = FlatTable::root(file);
    if (model_.vec_size(kSubgraphs) < 1) throw ImportError("TFLite: the model has no subgraph");
    sg_ = model_.vec_table(kSubgraphs, 0);
    ntensors_ = sg_.vec_size(kTensors);
    node_.assign(ntensors_, kNone);
  }

  int run(int in) {
    const std::vector<int32_t> ins = sg_.vec<int32_t>(kInputs), outs = sg_.vec<int32_t>(kOutputs);
    if (ins.size() != 1 || outs.size() != 1)
      throw ImportError("TFLite: expected one input and one output, got " +
                        std::to_string(ins.size()) + " and " + std::to_string(outs.size()));
    const std::vector<long> s = shape(ins[0]);
    if (s.size() != 4 || s[0] != 1) throw ImportError("TFLite: input must be NHWC with batch 1");
    const Shape want{int(s[1]), int(s[2]), int(s[3])};
    if (in < 0) {
      b_.graph.input = want;
    } else if (b_.shape(in).h != want.h || b_.shape(in).w != want.w || b_.shape(in).c != want.c) {
      throw ImportError("TFLite: this file's input " + want.str() +
                        " does not match the previous file's output " + b_.shape(in).str());
    }
    node_[size_t(check_index(ins[0]))] = in;
    const size_t nops = sg_.vec_size(kOperators);
    for (size_t i = 0; i < nops; ++i) op(sg_.vec_table(kOperators, i), i);
    const int out = node_[size_t(check_index(outs[0]))];
    if (out == kNone) throw ImportError("TFLite: the output tensor is never computed");
    return out;
  }

 private:
  static constexpr int kNone = std::numeric_limits<int>::min();

  size_t check_index(int32_t t) const {
    if (t < 0 || size_t(t) >= ntensors_)
      throw ImportError("TFLite: tensor index " + std::to_string(t) + " out of range");
    return size_t(t);
  }
  FlatTable tensor(int32_t t) const { return sg_.vec_table(kTensors, check_index(t)); }
  std::string tname(int32_t t) const { return tensor(t).string(kName); }
  std::vector<long> shape(int32_t t) const {
    std::vector<long> d;
    for (int32_t v : tensor(t).vec<int32_t>(kShape)) d.push_back(v);
    checked_numel(d, "tensor '" + tname(t) + "'");
    return d;
  }

  std::string_view buffer_of(const FlatTable& t) const {
    const uint32_t bi = t.scalar<uint32_t>(kBuffer, 0);
    if (bi == 0) return {};  // buffer 0 is the empty sentinel
    if (bi >= model_.vec_size(kBuffers)) throw ImportError("TFLite: buffer index out of range");
    const FlatTable buf = model_.vec_table(kBuffers, bi);
    std::string_view data = buf.bytes(0);
    if (data.empty() && buf.has(1)) {  // large models keep data outside the flatbuffer
      const uint64_t off = buf.scalar<uint64_t>(1, 0), n = buf.scalar<uint64_t>(2, 0);
      if (off > file_.size() || n > file_.size() - off)
        throw ImportError("TFLite: buffer offset out of range");
      data = file_.substr(size_t(off), size_t(n));
    }
    return data;
  }

  bool is_const(int32_t t) const { return !buffer_of(tensor(t)).empty(); }

  // The constant's values as float, dequantized.
  ConstTensor constant(int32_t t) const {
    const FlatTable ft = tensor(t);
    const std::string name = ft.string(kName);
    ConstTensor c;
    c.dims = shape(t);
    const long n = c.numel();
    const std::string_view data = buffer_of(ft);
    const int type = ft.scalar<int8_t>(kType, kF32);
    const size_t esize = type == kF32 || type == kI32 ? 4 : type == kF16 ? 2 : type == kI64 ? 8 : 1;
    if (type != kF32 && type != kF16 && type != kI32 && type != kU8 && type != kI8)
      throw ImportError("TFLite: tensor '" + name + "' has unsupported type " +
                        std::to_string(type));
    if (data.size() != size_t(n) * esize)
      throw ImportError("TFLite: tensor '" + name + "' holds " + std::to_string(data.size()) +
                        " bytes, shape " + c.dims_str() + " needs " +
                        std::to_string(size_t(n) * esize));
    std::vector<float> scale;
    std::vector<int64_t> zero;
    int qdim = 0;
    if (ft.has(kQuant)) {
      const FlatTable q = ft.table(kQuant);
      scale = q.vec<float>(2);
      zero = q.vec<int64_t>(3);
      qdim = q.scalar<int32_t>(6, 0);
    }
    // int32 without quantization holds plain integers (PAD's paddings, MEAN's axes).
    if (type == kI32 && scale.empty()) scale = {1.0f};
    c.data.resize(size_t(n));
    const bool quantized = type == kU8 || type == kI8 || type == kI32;
    if (quantized) {
      if (scale.empty()) throw ImportError("TFLite: quantized tensor '" + name + "' has no scale");
      if (zero.empty()) zero.assign(scale.size(), 0);
      if (zero.size() != scale.size())
        throw ImportError("TFLite: tensor '" + name + "': scale/zero point counts differ");
      if (scale.size() > 1 &&
          (qdim < 0 || size_t(qdim) >= c.dims.size() || long(scale.size()) != c.dims[size_t(qdim)]))
        throw ImportError("TFLite: tensor '" + name +
                          "': per-channel scales do not match dimension " + std::to_string(qdim));
    }
    // Elements per step of the quantized dimension, to find each element's channel.
    long inner = 1;
    for (size_t d = size_t(qdim) + 1; quantized && scale.size() > 1 && d < c.dims.size(); ++d)
      inner *= c.dims[d];
    const uint8_t* p = reinterpret_cast<const uint8_t*>(data.data());
    for (long i = 0; i < n; ++i) {
      const size_t ch = scale.size() > 1 ? size_t((i / inner) % long(scale.size())) : 0;
      float v;
      switch (type) {
        case kF32:
          std::memcpy(&v, p + 4 * i, 4);
          break;
        case kF16: {
          uint16_t h;
          std::memcpy(&h, p + 2 * i, 2);
          v = half_to_float(h);
          break;
        }
        case kU8:
          v = scale[ch] * float(int64_t(p[i]) - zero[ch]);
          break;
        case kI8:
          v = scale[ch] * float(int64_t(int8_t(p[i])) - zero[ch]);
          break;
        default: {
          int32_t q;
          std::memcpy(&q, p + 4 * i, 4);
          v = scale[ch] * float(int64_t(q) - zero[ch]);
          break;
        }
      }
      c.data[size_t(i)] = v;
    }
    return c;
  }

  int input_node(int32_t t, const std::string& where) const {
    const int id = node_[check_index(t)];
    if (id == kNone)
      throw ImportError(where + ": input tensor '" + tname(t) +
                        "' is not computed by an earlier operator");
    return id;
  }

  void op(const FlatTable& o, size_t index) {
    const uint32_t oc = o.scalar<uint32_t>(kOpcode, 0);
    if (oc >= model_.vec_size(kOperatorCodes))
      throw ImportError("TFLite: opcode index out of range");
    const FlatTable code = model_.vec_table(kOperatorCodes, oc);
    const int builtin = std::max<int>(code.scalar<int8_t>(0, 0), code.scalar<int32_t>(3, 0));
    const std::vector<int32_t> ins = o.vec<int32_t>(kOpInputs), outs = o.vec<int32_t>(kOpOutputs);
    if (outs.size() != 1 || ins.empty())
      throw ImportError("TFLite: operator " + std::to_string(index) + " has no single output");
    const std::string name = tname(outs[0]);
    const char* opname = builtin_name(builtin);
    const std::string where = "operator " + std::to_string(index) + " '" + name + "' (" +
                              (opname ? opname : "builtin " + std::to_string(builtin)) + ")";
    if (!opname) throw ImportError(where + " is not supported by the converter");
    const FlatTable opt = o.has(kOptions) ? o.table(kOptions) : FlatTable();
    const bool has_opt = o.has(kOptions);
    auto oi = [&](int f, int d) { return has_opt ? opt.scalar<int32_t>(f, d) : d; };
    auto ob = [&](int f, int d) { return has_opt ? int(opt.scalar<int8_t>(f, int8_t(d))) : d; };
    int& out = node_[check_index(outs[0])];
    if (out != kNone) throw ImportError(where + ": tensor '" + name + "' is written twice");
    switch (builtin) {
      case kConv:
      case kDepthwise: {
        if (ins.size() < 2) throw ImportError(where + ": missing weights");
        const bool dw = builtin == kDepthwise;
        const int x = input_node(ins[0], where);
        ConstTensor w = constant(ins[1]);
        if (w.dims.size() != 4)
          throw ImportError(where + ": weights must be rank 4, got " + w.dims_str());
        std::vector<float> bias;
        if (ins.size() > 2 && ins[2] >= 0) bias = constant(ins[2]).data;
        const int dil_w = oi(dw ? 5 : 4, 1), dil_h = oi(dw ? 6 : 5, 1);
        if (dil_w != 1 || dil_h != 1) throw ImportError(where + ": dilation is not supported");
        const long sh = oi(2, 1), sw = oi(1, 1), kh = w.dims[1], kw = w.dims[2];
        const Pads pads = ob(0, 0) == 0 ? same_pads(b_.shape(x), kh, kw, sh, sw) : Pads{};
        const Activation act = fused(ob(dw ? 4 : 3, 0), where);
        long cout = w.dims[dw ? 3 : 0];
        if (dw) {
          if (cout != b_.shape(x).c)
            throw ImportError(where + ": depth multiplier other than 1 is not supported");
          w.data = hwc1_to_dw(ConstTensor{{kh, kw, cout, 1}, std::move(w.data)});
        } else if (w.dims[3] != b_.shape(x).c) {
          throw ImportError(where + ": weights " + w.dims_str() + " do not match input " +
                            b_.shape(x).str());
        }
        out = b_.conv(name, x, std::move(w.data), std::move(bias), cout, kh, kw, sh, sw, pads, dw,
                      act);
        break;
      }
      case kAvgPool:
      case kMaxPool: {
        const int x = input_node(ins[0], where);
        const long sh = oi(2, 1), sw = oi(1, 1), kw = oi(3, 1), kh = oi(4, 1);
        const Pads pads = ob(0, 0) == 0 ? same_pads(b_.shape(x), kh, kw, sh, sw) : Pads{};
        out = b_.pool(name, x, builtin == kMaxPool, kh, kw, sh, sw, pads);
        const Activation act = fused(ob(5, 0), where);
        if (act != Activation::none) out = b_.activation(name + "/act", out, act);
        break;
      }
      case kFullyConnected: {
        if (ins.size() < 2) throw ImportError(where + ": missing weights");
        const int x = input_node(ins[0], where);
        ConstTensor w = constant(ins[1]);
        if (w.dims.size() != 2 || w.dims[1] != long(b_.shape(x).size()))
          throw ImportError(where + ": weights " + w.dims_str() + " do not match input " +
                            b_.shape(x).str());
        std::vector<float> bias;
        if (ins.size() > 2 && ins[2] >= 0) bias = constant(ins[2]).data;
        out = b_.fully_connected(name, x, std::move(w.data), std::move(bias), w.dims[0],
                                 fused(ob(0, 0), where));
        break;
      }
      case kRelu:
      case kRelu6:
        out = b_.activation(name, input_node(ins[0], where),
                            builtin == kRelu ? Activation::relu : Activation::relu6);
        break;
      case kReshape:
      case kSqueeze:
      case kQuantize:
      case kDequantize: {
        // Row-major NHWC reshapes keep the HWC order the engine flattens by; (de)quantize is a
        // no-op once everything is float. A reshape that moves data off the channel axis before
        // a softmax is caught there.
        out = input_node(ins[0], where);
        const std::vector<long> s = shape(outs[0]);
        if (!s.empty() && s.back() != b_.shape(out).c && b_.shape(out).h * b_.shape(out).w != 1)
          reshaped_[size_t(check_index(outs[0]))] = true;
        break;
      }
      case kSoftmax: {
        if (has_opt && opt.scalar<float>(0, 1.0f) != 1.0f)
          throw ImportError(where + ": softmax beta other than 1 is not supported");
        if (reshaped_.count(check_index(ins[0])))
          throw ImportError(where + ": softmax over a reshaped spatial map is not supported");
        out = b_.add(name, std::make_unique<Softmax>(), {input_node(ins[0], where)});
        break;
      }
      case kAdd:
      case kMul:
        out = binary(builtin == kMul, ins, name, fused(ob(0, 0), where), where);
        break;
      case kConcat: {
        const int axis = oi(0, 0);
        if (axis != 3 && axis != -1)
          throw ImportError(where + ": only concatenation along channels (axis 3) is supported");
        out = concat(ins, name, fused(ob(1, 0), where), where);
        break;
      }
      case kLogistic:
      case kHardSwish:
        out = b_.add(name,
                     std::make_unique<Unary>(builtin == kLogistic ? UnaryOp::sigmoid : UnaryOp::hard_swish),
                     {input_node(ins[0], where)});
        break;
      case kPad:
        out = pad(ins, name, where);
        break;
      case kMean:
        out = mean(ins, name, where);
        break;
    }
  }

  // ADD/MUL of two maps (MUL: equal, or by a 1x1xC gate), or of a map and a per-channel or
  // scalar constant (MobileNet-V3's hard-sigmoid: x + 3, ReLU6, x / 6).
  int binary(bool mul, const std::vector<int32_t>& ins, const std::string& name, Activation act,
             const std::string& where) {
    if (ins.size() != 2 || (is_const(ins[0]) && is_const(ins[1])))
      throw ImportError(where + ": needs two inputs, at most one of them constant");
    int out;
    if (is_const(ins[0]) || is_const(ins[1])) {
      const bool first = is_const(ins[0]);
      const int x = input_node(ins[first ? 1 : 0], where);
      std::vector<float> k = constant(ins[first ? 0 : 1]).data;
      if (k.size() != 1 && long(k.size()) != b_.shape(x).c)
        throw ImportError(where + ": only per-channel or scalar constants are supported");
      out = mul ? b_.affine(name, x, std::move(k), {}) : b_.affine(name, x, {}, std::move(k));
    } else {
      int x = input_node(ins[0], where), y = input_node(ins[1], where);
      const Shape sx = b_.shape(x);
      if (mul && sx != b_.shape(y) && sx.h == 1 && sx.w == 1) std::swap(x, y);  // gate second
      out = mul ? b_.add(name, std::make_unique<Mul>(), {x, y})
                : b_.add(name, std::make_unique<Add>(), {x, y});
    }
    return act == Activation::none ? out : b_.activation(name + "/act", out, act);
  }

  int concat(const std::vector<int32_t>& ins, const std::string& name, Activation act,
             const std::string& where) {
    std::vector<int> ids;
    for (int32_t t : ins) ids.push_back(input_node(t, where));
    if (ids.size() == 1) return ids[0];
    std::unique_ptr<Layer> l;
    try {
      l = std::make_unique<Concat>(int(ids.size()));
    } catch (const std::exception& e) {
      throw ImportError(where + ": " + e.what());
    }
    const int out = b_.add(name, std::move(l), ids);
    return act == Activation::none ? out : b_.activation(name + "/act", out, act);
  }

  // Zero padding of H and W: paddings are [[0,0],[top,bottom],[left,right],[0,0]].
  int pad(const std::vector<int32_t>& ins, const std::string& name, const std::string& where) {
    if (ins.size() != 2 || !is_const(ins[1]))
      throw ImportError(where + ": needs the data and constant paddings");
    const std::vector<float> p = constant(ins[1]).data;
    if (p.size() != 8 || p[0] != 0 || p[1] != 0 || p[6] != 0 || p[7] != 0)
      throw ImportError(where + ": only padding of H and W of an NHWC map is supported");
    for (float v : p)
      if (!(v >= 0 && v <= 1024)) throw ImportError(where + ": padding out of range 0..1024");
    return b_.add(name, std::make_unique<ZeroPad>(long(p[2]), long(p[4]), long(p[3]), long(p[5])),
                  {input_node(ins[0], where)});
  }

  // The mean over H and W (axes 1 and 2) is global average pooling, mid-network too.
  int mean(const std::vector<int32_t>& ins, const std::string& name, const std::string& where) {
    if (ins.size() != 2 || !is_const(ins[1])) throw ImportError(where + ": needs constant axes");
    std::vector<float> axes = constant(ins[1]).data;
    std::sort(axes.begin(), axes.end());
    if (axes != std::vector<float>{1, 2} && axes != std::vector<float>{-3, -2})
      throw ImportError(where + ": only the mean over H and W (axes 1, 2) is supported");
    const int x = input_node(ins[0], where);
    return b_.pool(name, x, false, b_.shape(x).h, b_.shape(x).w, 1, 1, Pads{});
  }

  NetBuilder& b_;
  std::string_view file_;
  FlatTable model_, sg_;
  size_t ntensors_ = 0;
  std::vector<int> node_;
  std::map<size_t, bool> reshaped_;
};

}  // namespace

int import_tflite(NetBuilder& b, std::string_view file, int in) {
  return TfliteReader(b, file).run(in);
}

}  // namespace eb::import
