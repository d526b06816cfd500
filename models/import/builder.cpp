#include "models/import/builder.h"

#include <fstream>
#include <sstream>

#include "core/layers/conv2d.h"
#include "core/layers/elementwise.h"
#include "core/layers/fully_connected.h"
#include "core/layers/global_avg_pool.h"
#include "core/layers/pool2d.h"
#include "models/zoo.h"

namespace eb::import {

long checked_numel(const std::vector<long>& dims, const std::string& what) {
  long n = 1;
  for (long d : dims) {
    if (d < 0 || d > (1L << 31))
      throw ImportError(what + ": invalid dimension " + std::to_string(d));
    n *= d;
    if (n > (1L << 31)) throw ImportError(what + ": tensor larger than 2^31 elements");
  }
  return n;
}

long ConstTensor::numel() const {
  return checked_numel(dims, "tensor");
}

std::string ConstTensor::dims_str() const {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + "]";
}

static void need_rank(const ConstTensor& w, size_t r, const char* what) {
  if (w.dims.size() != r || long(w.data.size()) != w.numel())
    throw ImportError(std::string(what) + ": expected a rank-" + std::to_string(r) +
                      " weight tensor, got " + w.dims_str());
}

std::vector<float> hwio_to_ohwi(const ConstTensor& w) {
  need_rank(w, 4, "HWIO weights");
  const long kh = w.dims[0], kw = w.dims[1], ci = w.dims[2], co = w.dims[3];
  std::vector<float> o(w.data.size());
  for (long y = 0; y < kh; ++y)
    for (long x = 0; x < kw; ++x)
      for (long i = 0; i < ci; ++i)
        for (long c = 0; c < co; ++c)
          o[size_t(((c * kh + y) * kw + x) * ci + i)] =
              w.data[size_t(((y * kw + x) * ci + i) * co + c)];
  return o;
}

std::vector<float> oihw_to_ohwi(const ConstTensor& w) {
  need_rank(w, 4, "OIHW weights");
  const long co = w.dims[0], ci = w.dims[1], kh = w.dims[2], kw = w.dims[3];
  std::vector<float> o(w.data.size());
  for (long c = 0; c < co; ++c)
    for (long i = 0; i < ci; ++i)
      for (long y = 0; y < kh; ++y)
        for (long x = 0; x < kw; ++x)
          o[size_t(((c * kh + y) * kw + x) * ci + i)] =
              w.data[size_t(((c * ci + i) * kh + y) * kw + x)];
  return o;
}

std::vector<float> hwc1_to_dw(const ConstTensor& w) {
  need_rank(w, 4, "depthwise weights");
  if (w.dims[3] != 1)
    throw ImportError("depthwise channel multiplier " + std::to_string(w.dims[3]) +
                      " is not supported (only 1)");
  const long kh = w.dims[0], kw = w.dims[1], c = w.dims[2];
  std::vector<float> o(w.data.size());
  for (long y = 0; y < kh; ++y)
    for (long x = 0; x < kw; ++x)
      for (long i = 0; i < c; ++i)
        o[size_t((i * kh + y) * kw + x)] = w.data[size_t((y * kw + x) * c + i)];
  return o;
}

std::vector<float> transpose2d(const std::vector<float>& a, long rows, long cols) {
  std::vector<float> t(a.size());
  for (long r = 0; r < rows; ++r)
    for (long c = 0; c < cols; ++c) t[size_t(c * rows + r)] = a[size_t(r * cols + c)];
  return t;
}

Pads same_pads(const Shape& in, long kh, long kw, long sh, long sw) {
  // Before the layer checks its own parameters: SAME padding divides by the stride.
  if (sh < 1 || sw < 1 || kh < 1 || kw < 1)
    throw ImportError("kernel " + std::to_string(kh) + "x" + std::to_string(kw) + ", stride " +
                      std::to_string(sh) + "x" + std::to_string(sw) +
                      ": kernels and strides must be at least 1");
  const models::Pad v = models::same_padding(in.h, kh, sh), h = models::same_padding(in.w, kw, sw);
  return {v.before, h.before, v.after, h.after};
}

int NetBuilder::add(const std::string& name, std::unique_ptr<Layer> layer,
                    std::vector<int> inputs) {
  std::vector<Shape> in;
  for (int i : inputs) in.push_back(shape(i));
  try {
    layer->configure(in);  // shapes now, so later operators can compute their padding
  } catch (const std::exception& e) {
    throw ImportError("node '" + name + "': " + e.what());
  }
  return graph.add(name, std::move(layer), std::move(inputs));
}

static void fill(std::vector<float>& dst, std::vector<float>&& src, const std::string& name,
                 const char* what) {
  if (src.size() != dst.size())
    throw ImportError("node '" + name + "': " + what + " has " + std::to_string(src.size()) +
                      " values, expected " + std::to_string(dst.size()));
  dst = std::move(src);
}

int NetBuilder::conv(const std::string& name, int in, std::vector<float> w, std::vector<float> bias,
                     long cout, long kh, long kw, long sh, long sw, Pads pads, bool depthwise,
                     Activation act, long groups) {
  const Shape s = shape(in);
  if (bias.empty()) bias.assign(size_t(cout), 0.0f);
  if (!depthwise && groups == 1 && kh == 1 && kw == 1 && s.h == 1 && s.w == 1 &&
      pads.t + pads.l + pads.b + pads.r == 0)
    return fully_connected(name, in, std::move(w), std::move(bias), cout, act);
  Conv2DParams p;
  p.cin = s.c;
  p.cout = cout;
  p.kh = kh, p.kw = kw, p.sh = sh, p.sw = sw;
  p.pad_t = pads.t, p.pad_l = pads.l, p.pad_b = pads.b, p.pad_r = pads.r;
  p.depthwise = depthwise;
  p.groups = groups;
  p.act = act;
  std::unique_ptr<Conv2D> c;
  try {
    c = std::make_unique<Conv2D>(p);
  } catch (const std::exception& e) {
    throw ImportError("node '" + name + "': " + e.what());
  }
  fill(c->weight(), std::move(w), name, "weight");
  fill(c->bias(), std::move(bias), name, "bias");
  return add(name, std::move(c), {in});
}

int NetBuilder::fully_connected(const std::string& name, int in, std::vector<float> w,
                                std::vector<float> bias, long out, Activation act) {
  const long nin = long(shape(in).size());
  std::unique_ptr<FullyConnected> fc;
  try {
    fc = std::make_unique<FullyConnected>(nin, out, act);
  } catch (const std::exception& e) {
    throw ImportError("node '" + name + "': " + e.what());
  }
  if (bias.empty()) bias.assign(size_t(out), 0.0f);
  std::vector<Param> ps = fc->params();
  fill(*ps[0].data, std::move(w), name, "weight");
  fill(*ps[1].data, std::move(bias), name, "bias");
  return add(name, std::move(fc), {in});
}

int NetBuilder::pool(const std::string& name, int in, bool max, long kh, long kw, long sh, long sw,
                     Pads pads) {
  const Shape s = shape(in);
  if (!max && kh == s.h && kw == s.w && pads.t + pads.l + pads.b + pads.r == 0)
    return add(name, std::make_unique<GlobalAvgPool>(), {in});
  if (kh != kw || sh != sw)
    throw ImportError("node '" + name + "': pooling " + std::to_string(kh) + "x" +
                      std::to_string(kw) + " stride " + std::to_string(sh) + "x" +
                      std::to_string(sw) + " is not supported (square windows and strides only)");
  std::unique_ptr<Layer> l;
  try {
    l = std::make_unique<Pool2D>(max ? kernels::PoolKind::max : kernels::PoolKind::average, kh, sh,
                                 pads.t, pads.l, pads.b, pads.r);
  } catch (const std::exception& e) {
    throw ImportError("node '" + name + "': " + e.what());
  }
  return add(name, std::move(l), {in});
}

int NetBuilder::activation(const std::string& name, int in, Activation act) {
  return add(name, std::make_unique<ActivationLayer>(act), {in});
}

int NetBuilder::affine(const std::string& name, int in, std::vector<float> scale,
                       std::vector<float> shift) {
  const long c = shape(in).c;
  if (scale.empty()) scale.assign(size_t(c), 1.0f);
  if (shift.empty()) shift.assign(size_t(c), 0.0f);
  if (scale.size() == 1) scale.assign(size_t(c), scale[0]);
  if (shift.size() == 1) shift.assign(size_t(c), shift[0]);
  auto bn = std::make_unique<BatchNorm>(c, 0.0f);
  fill(bn->gamma, std::move(scale), name, "scale");
  fill(bn->beta, std::move(shift), name, "shift");
  bn->var.assign(size_t(c), 1.0f);  // y = gamma * x / sqrt(1 + 0) + beta
  return add(name, std::move(bn), {in});
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ImportError("cannot open '" + path + "'");
  f.seekg(0, std::ios::end);
  const std::streamoff n = f.tellg();
  if (n < 0 || n > (std::streamoff(1) << 32))
    throw ImportError("'" + path + "': unreadable or larger than 4 GiB");
  std::string s(size_t(n), '\0');
  f.seekg(0);
  if (!f.read(s.data(), n)) throw ImportError("'" + path + "': read failed");
  return s;
}

std::vector<std::string> parse_labels(const std::string& text, long classes,
                                      const std::string& what) {
  std::vector<std::string> labels;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > 1024)
      throw ImportError("labels file '" + what + "' line " + std::to_string(labels.size() + 1) +
                        " is longer than 1024 bytes");
    labels.push_back(line);
    if (long(labels.size()) > classes) break;
  }
  if (long(labels.size()) != classes)
    throw ImportError("labels file '" + what + "' has " +
                      (long(labels.size()) > classes ? "more" : std::to_string(labels.size())) +
                      " lines but the model has " + std::to_string(classes) + " outputs");
  return labels;
}

Graph NetBuilder::finish(const ImportOptions& opt) {
  if (graph.size() == 0) throw ImportError("the model has no operators to convert");
  graph.model = opt.name;
  if (!opt.labels_path.empty())
    graph.labels = parse_labels(read_file(opt.labels_path), long(graph.output_shape().size()),
                                opt.labels_path);
  graph.finalize();
  return std::move(graph);
}

}  // namespace eb::import
