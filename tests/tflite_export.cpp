#include "tests/tflite_export.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/layers/elementwise.h"

namespace eb::test {
namespace {

// A flatbuffer object: a table (inline scalar fields and child objects, by field id), a vector
// of tables, or a vector of scalars (raw little-endian bytes, `count` elements).
struct Fb {
  enum Kind { table, tables, scalars } kind = table;
  std::vector<int> ids;  // table: field ids of `inline_bytes`, then of `children`
  std::vector<std::string> inline_bytes;
  std::vector<int> child_ids;
  std::vector<Fb> children;  // table: child objects; tables: the elements
  std::string raw;
  uint32_t count = 0;

  template <class T>
  Fb& scalar(int id, T v) {
    std::string b(sizeof(T), '\0');
    std::memcpy(b.data(), &v, sizeof(T));
    ids.push_back(id);
    inline_bytes.push_back(b);
    return *this;
  }
  Fb& child(int id, Fb f) {
    child_ids.push_back(id);
    children.push_back(std::move(f));
    return *this;
  }
};

template <class T>
Fb vec(const std::vector<T>& v) {
  Fb f;
  f.kind = Fb::scalars;
  f.raw.assign(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  f.count = uint32_t(v.size());
  return f;
}
Fb str(const std::string& s) { return vec(std::vector<char>(s.begin(), s.end())); }
Fb tables(std::vector<Fb> v) {
  Fb f;
  f.kind = Fb::tables;
  f.children = std::move(v);
  return f;
}

void put32(std::string& buf, size_t at, uint32_t v) { std::memcpy(&buf[at], &v, 4); }
void align4(std::string& buf) { buf.resize((buf.size() + 3) / 4 * 4, '\0'); }

// Parents before children: every uoffset then points forward, as flatbuffers require, and is
// patched once its child is written. Returns the object's position.
size_t write(std::string& buf, const Fb& o) {
  align4(buf);
  const size_t at = buf.size();
  if (o.kind == Fb::scalars) {
    buf.append(4, '\0');
    put32(buf, at, o.count);
    buf += o.raw;
    return at;
  }
  if (o.kind == Fb::tables) {
    buf.append(4 + 4 * o.children.size(), '\0');
    put32(buf, at, uint32_t(o.children.size()));
    for (size_t i = 0; i < o.children.size(); ++i) {
      const size_t slot = at + 4 + 4 * i;
      put32(buf, slot, uint32_t(write(buf, o.children[i]) - slot));
    }
    return at;
  }
  int max_id = -1;
  for (int id : o.ids) max_id = std::max(max_id, id);
  for (int id : o.child_ids) max_id = std::max(max_id, id);
  std::vector<uint16_t> vt(size_t(max_id + 1), 0);
  uint16_t size = 4;  // the soffset to the vtable comes first
  for (size_t i = 0; i < o.ids.size(); ++i)
    vt[size_t(o.ids[i])] = size, size = uint16_t(size + o.inline_bytes[i].size());
  for (int id : o.child_ids) vt[size_t(id)] = size, size = uint16_t(size + 4);
  const uint16_t head[2] = {uint16_t(4 + 2 * vt.size()), size};
  buf.append(reinterpret_cast<const char*>(head), 4);
  buf.append(reinterpret_cast<const char*>(vt.data()), 2 * vt.size());
  align4(buf);
  const size_t t = buf.size();
  buf.append(4, '\0');
  put32(buf, t, uint32_t(t - at));  // vtable = table - soffset
  for (const std::string& b : o.inline_bytes) buf += b;
  buf.append(4 * o.children.size(), '\0');
  for (size_t i = 0; i < o.children.size(); ++i) {
    const size_t slot = t + vt[size_t(o.child_ids[i])];
    put32(buf, slot, uint32_t(write(buf, o.children[i]) - slot));
  }
  return t;
}

// schema.fbs builtin codes and fused activation codes.
enum Code { kAdd = 0, kConcat = 2, kConv = 3, kDepthwise = 4, kLogistic = 14, kMul = 18,
            kRelu = 19, kRelu6 = 21, kPad = 34, kMean = 40, kHardSwish = 117 };
int8_t fused(const Json& a) {
  const std::string act = a.has("activation") ? a.at("activation").string() : "none";
  return act == "relu" ? 1 : act == "relu6" ? 3 : 0;
}

class TfliteWriter {
 public:
  explicit TfliteWriter(Graph& g) : g_(g) { buffers_.push_back(Fb()); }

  std::string write_model() {
    const int in = tensor(g_.input, "input");
    std::vector<int> ids;
    for (int i = 0; i < g_.size(); ++i) ids.push_back(node(i, ids, in));
    Fb sg;
    sg.child(0, tables(tensors_)).child(1, vec(std::vector<int32_t>{in}));
    sg.child(2, vec(std::vector<int32_t>{ids.back()})).child(3, tables(ops_));
    Fb codes;
    std::vector<Fb> oc;
    for (int c : codes_) oc.push_back(Fb().scalar<int8_t>(0, int8_t(std::min(c, 127))).scalar<int32_t>(3, c));
    Fb model;
    model.scalar<uint32_t>(0, 3).child(1, tables(oc)).child(2, tables({sg})).child(4, tables(buffers_));
    std::string buf(8, '\0');
    std::memcpy(&buf[4], "TFL3", 4);
    put32(buf, 0, uint32_t(write(buf, model)));
    return buf;
  }

 private:
  int tensor(Shape s, const std::string& name) {
    return add_tensor({1, s.h, s.w, s.c}, 0, 0, name);
  }
  int add_tensor(const std::vector<int32_t>& dims, int8_t type, uint32_t buffer,
                 const std::string& name) {
    Fb t;
    t.scalar<int8_t>(1, type).scalar<uint32_t>(2, buffer).child(0, vec(dims)).child(3, str(name));
    tensors_.push_back(t);
    return int(tensors_.size() - 1);
  }
  template <class T>
  int constant(const std::vector<int32_t>& dims, const std::vector<T>& v, int8_t type,
               const std::string& name) {
    buffers_.push_back(Fb().child(0, vec(std::vector<char>(reinterpret_cast<const char*>(v.data()),
                                                           reinterpret_cast<const char*>(v.data() + v.size())))));
    return add_tensor(dims, type, uint32_t(buffers_.size() - 1), name);
  }
  void op(int code, const std::vector<int32_t>& ins, int out, Fb options = Fb()) {
    size_t k = 0;
    while (k < codes_.size() && codes_[k] != code) ++k;
    if (k == codes_.size()) codes_.push_back(code);
    Fb o;
    o.scalar<uint32_t>(0, uint32_t(k)).child(1, vec(ins)).child(2, vec(std::vector<int32_t>{out}));
    o.child(4, std::move(options));  // the importer keys on the code, not the union type
    ops_.push_back(std::move(o));
  }

  int node(int i, const std::vector<int>& ids, int in) {
    Node& n = g_.node(i);
    auto src = [&](size_t k) { return n.inputs[k] < 0 ? in : ids[size_t(n.inputs[k])]; };
    const std::string t = n.layer->type(), name = "t" + std::to_string(i);
    const Json a = n.layer->attrs();
    const int out = tensor(n.layer->output_shape(), name);
    std::vector<Param> ps = n.layer->params();
    if (t == "conv2d") {
      conv(n, a, ps, src(0), out, name);
    } else if (t == "activation") {
      op(a.at("activation").string() == "relu" ? kRelu : kRelu6, {src(0)}, out);
    } else if (t == "unary") {
      const std::string u = a.at("op").string();
      if (u != "sigmoid" && u != "hard_swish") throw std::logic_error("TFLite has no " + u);
      op(u == "sigmoid" ? kLogistic : kHardSwish, {src(0)}, out);
    } else if (t == "concat") {
      std::vector<int32_t> ins;
      for (size_t k = 0; k < n.inputs.size(); ++k) ins.push_back(src(k));
      op(kConcat, ins, out, Fb().scalar<int32_t>(0, 3));
    } else if (t == "pad") {
      const Json& p = a.at("pad");
      const std::vector<int32_t> v = {0, 0, int32_t(p[0].integer()), int32_t(p[2].integer()),
                                      int32_t(p[1].integer()), int32_t(p[3].integer()), 0, 0};
      op(kPad, {src(0), constant({4, 2}, v, 2, name + "_pads")}, out);
    } else if (t == "global_avgpool") {
      const int axes = constant({2}, std::vector<int32_t>{1, 2}, 2, name + "_axes");
      op(kMean, {src(0), axes}, out, Fb().scalar<uint8_t>(0, 1));
    } else if (t == "mul" || t == "add") {
      op(t == "mul" ? kMul : kAdd, {src(0), src(1)}, out, Fb().scalar<int8_t>(0, fused(a)));
    } else if (t == "batchnorm") {  // only y = gamma * x + beta: MUL then ADD by constants
      const std::vector<float>&gamma = *ps[0].data, &beta = *ps[1].data, &mean = *ps[2].data,
                           &var = *ps[3].data;
      for (size_t c = 0; c < gamma.size(); ++c)
        if (mean[c] != 0 || var[c] != 1 || a.at("eps").number() != 0)
          throw std::logic_error("TFLite export: batchnorm must be a plain affine");
      const int c = int(gamma.size());
      const int mid = tensor(n.layer->output_shape(), name + "_scaled");
      op(kMul, {src(0), constant({c}, gamma, 0, name + "_gamma")}, mid, Fb().scalar<int8_t>(0, 0));
      op(kAdd, {constant({c}, beta, 0, name + "_beta"), mid}, out, Fb().scalar<int8_t>(0, 0));
    } else {
      throw std::logic_error("export_tflite: no mapping for " + t);
    }
    return out;
  }

  void conv(Node& n, const Json& a, std::vector<Param>& ps, int x, int out, const std::string& name) {
    const Json &p = a.at("pad"), &st = a.at("stride");
    for (size_t k = 0; k < 4; ++k)
      if (p[k].integer() != 0) throw std::logic_error("TFLite export: pad with a PAD, not the conv");
    const int co = int(a.at("cout").integer()), kh = int(a.at("kernel")[0].integer()),
              kw = int(a.at("kernel")[1].integer()), ci = int(a.at("cin").integer());
    const bool dw = a.at("depthwise").boolean();
    if (!dw && a.has("groups")) throw std::logic_error("TFLite has no grouped conv");
    std::vector<float> w = *ps[0].data;  // OHWI, as CONV_2D wants
    if (dw) {                            // [c][kh][kw][1] -> [1][kh][kw][c]
      for (int c = 0; c < co; ++c)
        for (int k = 0; k < kh * kw; ++k) w[size_t(k * co + c)] = (*ps[0].data)[size_t(c * kh * kw + k)];
    }
    const std::vector<int32_t> wd = dw ? std::vector<int32_t>{1, kh, kw, co}
                                       : std::vector<int32_t>{co, kh, kw, ci};
    const int wt = constant(wd, w, 0, name + "_w"), bt = constant({co}, *ps[1].data, 0, name + "_b");
    Fb o;
    o.scalar<int8_t>(0, 1)  // VALID
        .scalar<int32_t>(1, int32_t(st[1].integer()))
        .scalar<int32_t>(2, int32_t(st[0].integer()));
    if (dw) o.scalar<int32_t>(3, 1);  // depth_multiplier
    o.scalar<int8_t>(dw ? 4 : 3, fused(a));
    op(dw ? kDepthwise : kConv, {x, wt, bt}, out, std::move(o));
    (void)n;
  }

  Graph& g_;
  std::vector<Fb> tensors_, ops_, buffers_;
  std::vector<int> codes_;
};

}  // namespace

std::string export_tflite(Graph& g) { return TfliteWriter(g).write_model(); }

}  // namespace eb::test
