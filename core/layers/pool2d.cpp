#include "core/layers/pool2d.h"

#include <stdexcept>

namespace eb {

Pool2D::Pool2D(kernels::PoolKind kind, long k, long stride, long pt, long pl, long pb, long pr)
    : kind_(kind), k_(k), s_(stride), pt_(pt), pl_(pl), pb_(pb), pr_(pr) {
  if (k <= 0 || stride <= 0 || pt < 0 || pl < 0 || pb < 0 || pr < 0 || k > 1024 || pt >= k ||
      pl >= k)
    throw std::invalid_argument("pool2d: invalid parameters");
}

Shape Pool2D::configure(const std::vector<Shape>& in) {
  if (in.size() != 1) throw std::invalid_argument("pool2d takes one input");
  long oh = (in[0].h + pt_ + pb_ - k_) / s_ + 1, ow = (in[0].w + pl_ + pr_ - k_) / s_ + 1;
  if (oh <= 0 || ow <= 0) throw std::invalid_argument("pool2d: input " + in[0].str() + " too small");
  in_shapes_ = in;
  out_shape_ = {int(oh), int(ow), in[0].c};
  return out_shape_;
}

RowRange Pool2D::input_rows(RowRange out, int) const {
  if (out.empty()) return {0, 0};
  return {int(out.begin * s_ - pt_), int((out.end - 1) * s_ - pt_ + k_)};
}

double Pool2D::flops(RowRange out) const {
  return double(k_) * k_ * out.size() * out_shape_.w * out_shape_.c;
}

void Pool2D::forward(const std::vector<const Band*>& in, Band& out) const {
  check_inputs(in, out);
  const Shape& s = in_shapes_[0];
  kernels::ConvGeom g{s.h, s.w, s.c, s.c, k_, k_, s_, s_, pt_, pl_, out_shape_.h, out_shape_.w};
  const Band& src = *in.at(0);
  kernels::pool2d(kind_, g, {src.t.data(), src.row0, src.t.h()},
                  {out.t.data(), out.row0, out.t.h()});
}

Json Pool2D::attrs() const {
  Json a = Json::object();
  a["kernel"] = k_;
  a["stride"] = s_;
  a["pad"] = Json(Json::Array{pt_, pl_, pb_, pr_});
  return a;
}

std::unique_ptr<Layer> Pool2D::from_attrs(kernels::PoolKind kind, const Json& a) {
  const Json& p = a.at("pad");
  if (p.size() != 4) throw std::runtime_error("pool2d: pad needs 4 values");
  return std::make_unique<Pool2D>(kind, a.at("kernel").integer("kernel"),
                                  a.at("stride").integer("stride"), p[0].integer("pad"),
                                  p[1].integer("pad"), p[2].integer("pad"), p[3].integer("pad"));
}

}  // namespace eb
