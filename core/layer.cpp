#include "core/layer.h"

#include <cmath>

#include <stdexcept>

#include "core/layers/branch_ops.h"
#include "core/layers/conv2d.h"
#include "core/layers/elementwise.h"
#include "core/layers/fully_connected.h"
#include "core/layers/global_avg_pool.h"
#include "core/layers/pool2d.h"
#include "kernels/cache.h"

namespace eb {

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::none: return "none";
    case Activation::relu: return "relu";
    case Activation::relu6: return "relu6";
  }
  return "?";
}

void fold_batchnorm_rows(std::vector<float>& w, std::vector<float>& b, const std::vector<float>& gamma,
                         const std::vector<float>& beta, const std::vector<float>& mean,
                         const std::vector<float>& var, float eps) {
  const size_t n = b.size(), per = n ? w.size() / n : 0;
  for (size_t c = 0; c < n; ++c) {
    const double s = double(gamma[c]) / std::sqrt(double(var[c]) + eps);
    for (size_t i = 0; i < per; ++i) w[c * per + i] = float(w[c * per + i] * s);
    b[c] = float((b[c] - mean[c]) * s + beta[c]);
  }
}

Activation parse_activation(const std::string& s) {
  if (s == "none") return Activation::none;
  if (s == "relu") return Activation::relu;
  if (s == "relu6") return Activation::relu6;
  throw std::runtime_error("unknown activation '" + s + "'");
}

void Layer::check_inputs(const std::vector<const Band*>& in, const Band& out) const {
  if (in.size() != in_shapes_.size()) throw std::invalid_argument(type() + ": wrong input count");
  if (!RowRange{0, out_shape_.h}.contains(out.rows()) || out.t.w() != out_shape_.w ||
      out.t.c() != out_shape_.c)
    throw std::invalid_argument(type() + ": output band does not fit " + out_shape_.str());
  for (size_t i = 0; i < in.size(); ++i) {
    const RowRange need = input_rows(out.rows(), int(i)).clip(in_shapes_[i].h);
    if (!in[i]->rows().contains(need) || in[i]->t.w() != in_shapes_[i].w ||
        in[i]->t.c() != in_shapes_[i].c)
      throw std::invalid_argument(type() + ": input band rows [" + std::to_string(in[i]->row0) +
                                  "," + std::to_string(in[i]->rows().end) + ") do not hold [" +
                                  std::to_string(need.begin) + "," + std::to_string(need.end) + ")");
  }
}

std::unique_ptr<Layer> make_layer(const std::string& type, const Json& a) {
  auto act = [&] { return parse_activation(a.at("activation").string("activation")); };
  if (type == "conv2d") {
    const Json &k = a.at("kernel"), &s = a.at("stride"), &p = a.at("pad");
    if (k.size() != 2 || s.size() != 2 || p.size() != 4)
      throw std::runtime_error("conv2d: kernel/stride/pad have the wrong length");
    Conv2DParams cp;
    cp.cin = a.at("cin").integer("cin");
    cp.cout = a.at("cout").integer("cout");
    cp.kh = k[0].integer("kernel");
    cp.kw = k[1].integer("kernel");
    cp.sh = s[0].integer("stride");
    cp.sw = s[1].integer("stride");
    cp.pad_t = p[0].integer("pad");
    cp.pad_l = p[1].integer("pad");
    cp.pad_b = p[2].integer("pad");
    cp.pad_r = p[3].integer("pad");
    cp.depthwise = a.at("depthwise").boolean("depthwise");
    // Files written before grouped convolutions have no "groups": dense or depthwise.
    if (a.has("groups")) cp.groups = a.at("groups").integer("groups");
    cp.act = act();
    return std::make_unique<Conv2D>(cp);
  }
  if (type == "maxpool") return Pool2D::from_attrs(kernels::PoolKind::max, a);
  if (type == "avgpool") return Pool2D::from_attrs(kernels::PoolKind::average, a);
  if (type == "global_avgpool") return std::make_unique<GlobalAvgPool>();
  if (type == "fully_connected")
    return std::make_unique<FullyConnected>(a.at("in").integer("in"), a.at("out").integer("out"),
                                            act());
  if (type == "softmax") return std::make_unique<Softmax>();
  if (type == "add") return std::make_unique<Add>(act());
  if (type == "activation") return std::make_unique<ActivationLayer>(act());
  if (type == "concat") {
    const long n = a.at("inputs").integer("inputs");
    if (n < 2 || n > 1024) throw std::runtime_error("concat: inputs must be 2 to 1024");
    return std::make_unique<Concat>(int(n));
  }
  if (type == "mul") return std::make_unique<Mul>();
  if (type == "unary") return Unary::from_attrs(a);
  if (type == "pad") return ZeroPad::from_attrs(a);
  if (type == "channel_shuffle")
    return std::make_unique<ChannelShuffle>(a.at("groups").integer("groups"));
  if (type == "slice_channels")
    return std::make_unique<SliceChannels>(a.at("begin").integer("begin"), a.at("end").integer("end"));
  if (type == "batchnorm")
    return std::make_unique<BatchNorm>(a.at("channels").integer("channels"),
                                       float(a.at("eps").number("eps")));
  throw std::runtime_error("unknown layer type '" + type + "'");
}

void meet_as_in_a_plan(const Layer& l, const std::vector<const Band*>& ins) {
  if (l.packed_bytes() == 0) return;
  l.evict_weights();
  kernels::sweep_caches();
  for (const Band* b : ins) kernels::read_into_caches(b->t.data(), b->t.size() * sizeof(float));
}

}  // namespace eb
