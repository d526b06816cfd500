#include "tests/reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace eb::ref {

static float apply(Activation a, double v) {
  if (a == Activation::relu) v = std::max(v, 0.0);
  if (a == Activation::relu6) v = std::min(std::max(v, 0.0), 6.0);
  return float(v);
}

Tensor conv2d(const Tensor& in, const std::vector<float>& w, const std::vector<float>& b, long cout,
              const ConvSpec& s) {
  return conv2d_grouped(in, w, b, cout, s, s.depthwise ? in.c() : 1);
}

Tensor conv2d_grouped(const Tensor& in, const std::vector<float>& w, const std::vector<float>& b,
                      long cout, const ConvSpec& s, long groups) {
  const long H = in.h(), W = in.w(), C = in.c();
  const long oh = (H + s.pt + s.pb - s.kh) / s.sh + 1, ow = (W + s.pl + s.pr - s.kw) / s.sw + 1;
  Tensor out{int(oh), int(ow), int(cout)};
  const long cpg = C / groups, cog = cout / groups;
  for (long y = 0; y < oh; ++y)
    for (long x = 0; x < ow; ++x)
      for (long co = 0; co < cout; ++co) {
        double acc = b[size_t(co)];
        for (long ky = 0; ky < s.kh; ++ky)
          for (long kx = 0; kx < s.kw; ++kx) {
            const long iy = y * s.sh - s.pt + ky, ix = x * s.sw - s.pl + kx;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            for (long ci = 0; ci < cpg; ++ci) {
              const long c = (co / cog) * cpg + ci;
              acc += double(in.at(int(iy), int(ix), int(c))) *
                     w[size_t(((co * s.kh + ky) * s.kw + kx) * cpg + ci)];
            }
          }
        out.at(int(y), int(x), int(co)) = apply(s.act, acc);
      }
  return out;
}

static Tensor pool_windows(const Tensor& in, bool is_max, long k, long s, long pt, long pl,
                           long oh, long ow) {
  const long H = in.h(), W = in.w(), C = in.c();
  Tensor out{int(oh), int(ow), int(C)};
  for (long y = 0; y < oh; ++y)
    for (long x = 0; x < ow; ++x)
      for (long c = 0; c < C; ++c) {
        double acc = is_max ? -1e300 : 0;
        long n = 0;
        for (long ky = 0; ky < k; ++ky)
          for (long kx = 0; kx < k; ++kx) {
            const long iy = y * s - pt + ky, ix = x * s - pl + kx;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            const double v = in.at(int(iy), int(ix), int(c));
            acc = is_max ? std::max(acc, v) : acc + v;
            ++n;
          }
        out.at(int(y), int(x), int(c)) = float(is_max ? acc : acc / double(n));
      }
  return out;
}

Tensor pool2d(const Tensor& in, bool is_max, long k, long s, long pt, long pl, long pb, long pr) {
  const long oh = (in.h() + pt + pb - k) / s + 1, ow = (in.w() + pl + pr - k) / s + 1;
  return pool_windows(in, is_max, k, s, pt, pl, oh, ow);
}

static long ceil_out(long in, long k, long s, long before, long after) {
  long o = long(std::ceil(double(in + before + after - k) / double(s))) + 1;
  if ((o - 1) * s >= in + before) --o;
  return o;
}

Tensor pool2d_ceil(const Tensor& in, bool is_max, long k, long s, long pt, long pl, long pb, long pr) {
  return pool_windows(in, is_max, k, s, pt, pl, ceil_out(in.h(), k, s, pt, pb),
                      ceil_out(in.w(), k, s, pl, pr));
}

Tensor concat(const std::vector<Tensor>& in) {
  int c = 0;
  for (const Tensor& t : in) c += t.c();
  Tensor out(in.at(0).h(), in.at(0).w(), c);
  for (int y = 0; y < out.h(); ++y)
    for (int x = 0; x < out.w(); ++x) {
      int c0 = 0;
      for (const Tensor& t : in) {
        for (int k = 0; k < t.c(); ++k) out.at(y, x, c0 + k) = t.at(y, x, k);
        c0 += t.c();
      }
    }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out(a.shape());
  const bool bc = b.shape() != a.shape();
  for (int y = 0; y < a.h(); ++y)
    for (int x = 0; x < a.w(); ++x)
      for (int c = 0; c < a.c(); ++c)
        out.at(y, x, c) = float(double(a.at(y, x, c)) * (bc ? b.at(0, 0, c) : b.at(y, x, c)));
  return out;
}

Tensor unary(const std::string& op, const Tensor& x, double alpha, double beta) {
  Tensor out(x.shape());
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x.data()[i], sig = 1.0 / (1.0 + std::exp(-v));
    double r;
    if (op == "sigmoid") r = sig;
    else if (op == "hard_sigmoid") r = std::min(1.0, std::max(0.0, alpha * v + beta));
    else if (op == "silu") r = v * sig;
    else if (op == "hard_swish") r = v * std::min(1.0, std::max(0.0, (v + 3.0) / 6.0));
    else throw std::runtime_error("reference: unknown unary " + op);
    out.data()[i] = float(r);
  }
  return out;
}

Tensor channel_shuffle(const Tensor& x, long groups) {
  Tensor out(x.shape());
  const long per = x.c() / groups;
  std::vector<float> m(size_t(x.c()));  // m[j][i], the transposed groups x per matrix
  for (int y = 0; y < x.h(); ++y)
    for (int xx = 0; xx < x.w(); ++xx) {
      for (long i = 0; i < groups; ++i)
        for (long j = 0; j < per; ++j) m[size_t(j * groups + i)] = x.at(y, xx, int(i * per + j));
      for (int c = 0; c < x.c(); ++c) out.at(y, xx, c) = m[size_t(c)];
    }
  return out;
}

Tensor slice_channels(const Tensor& x, long c0, long c1) {
  Tensor out(x.h(), x.w(), int(c1 - c0));
  for (int y = 0; y < x.h(); ++y)
    for (int xx = 0; xx < x.w(); ++xx)
      for (long c = c0; c < c1; ++c) out.at(y, xx, int(c - c0)) = x.at(y, xx, int(c));
  return out;
}

Tensor zero_pad(const Tensor& x, long t, long l, long b, long r) {
  Tensor out(int(x.h() + t + b), int(x.w() + l + r), x.c());  // zero-initialised
  for (int y = 0; y < x.h(); ++y)
    for (int xx = 0; xx < x.w(); ++xx)
      for (int c = 0; c < x.c(); ++c) out.at(int(y + t), int(xx + l), c) = x.at(y, xx, c);
  return out;
}

Tensor forward(Graph& g, const Tensor& input) {
  std::vector<Tensor> outs;
  for (int i = 0; i < g.size(); ++i) {
    Node& n = g.node(i);
    const Json a = n.layer->attrs();
    std::vector<Param> ps = n.layer->params();
    auto in = [&](int k) { return n.inputs[size_t(k)] < 0 ? input : outs[size_t(n.inputs[size_t(k)])]; };
    const std::string t = n.layer->type();
    Tensor o;
    if (t == "conv2d") {
      const Json &k = a.at("kernel"), &st = a.at("stride"), &p = a.at("pad");
      ConvSpec s{k[0].integer(), k[1].integer(), st[0].integer(), st[1].integer(),
                 p[0].integer(), p[1].integer(), p[2].integer(), p[3].integer(),
                 a.at("depthwise").boolean(), parse_activation(a.at("activation").string())};
      const long groups = a.has("groups") ? a.at("groups").integer() : 1;
      o = s.depthwise ? conv2d(in(0), *ps[0].data, *ps[1].data, a.at("cout").integer(), s)
                      : conv2d_grouped(in(0), *ps[0].data, *ps[1].data, a.at("cout").integer(), s,
                                       groups);
    } else if (t == "maxpool" || t == "avgpool") {
      const Json& p = a.at("pad");
      o = pool2d(in(0), t == "maxpool", a.at("kernel").integer(), a.at("stride").integer(),
                 p[0].integer(), p[1].integer(), p[2].integer(), p[3].integer());
    } else if (t == "global_avgpool") {
      const Tensor& x = in(0);
      o = Tensor(1, 1, x.c());
      for (int c = 0; c < x.c(); ++c) {
        double s = 0;
        for (int y = 0; y < x.h(); ++y)
          for (int xx = 0; xx < x.w(); ++xx) s += x.at(y, xx, c);
        o.data()[c] = float(s / (x.h() * x.w()));
      }
    } else if (t == "fully_connected") {
      const long ni = a.at("in").integer(), no = a.at("out").integer();
      const Tensor& x = in(0);
      o = Tensor(1, 1, int(no));
      for (long j = 0; j < no; ++j) {
        double s = (*ps[1].data)[size_t(j)];
        for (long i2 = 0; i2 < ni; ++i2) s += double(x.data()[i2]) * (*ps[0].data)[size_t(j * ni + i2)];
        o.data()[j] = apply(parse_activation(a.at("activation").string()), s);
      }
    } else if (t == "softmax") {
      const Tensor& x = in(0);
      o = Tensor(x.shape());
      const size_t C = size_t(x.c());
      for (size_t p0 = 0; p0 < x.size(); p0 += C) {
        double mx = -1e300, sum = 0;
        for (size_t c = 0; c < C; ++c) mx = std::max(mx, double(x.data()[p0 + c]));
        for (size_t c = 0; c < C; ++c) sum += std::exp(double(x.data()[p0 + c]) - mx);
        for (size_t c = 0; c < C; ++c) o.data()[p0 + c] = float(std::exp(double(x.data()[p0 + c]) - mx) / sum);
      }
    } else if (t == "add") {
      const Tensor &x = in(0), &y = in(1);
      o = Tensor(x.shape());
      for (size_t j = 0; j < x.size(); ++j)
        o.data()[j] = apply(parse_activation(a.at("activation").string()), double(x.data()[j]) + y.data()[j]);
    } else if (t == "batchnorm") {
      const Tensor& x = in(0);
      o = Tensor(x.shape());
      const double eps = a.at("eps").number();
      const size_t C = size_t(x.c());
      for (size_t j = 0; j < x.size(); ++j) {
        const size_t c = j % C;
        o.data()[j] = float((x.data()[j] - (*ps[2].data)[c]) / std::sqrt((*ps[3].data)[c] + eps) *
                                (*ps[0].data)[c] + (*ps[1].data)[c]);
      }
    } else if (t == "activation") {
      const Tensor& x = in(0);
      o = Tensor(x.shape());
      for (size_t j = 0; j < x.size(); ++j)
        o.data()[j] = apply(parse_activation(a.at("activation").string()), x.data()[j]);
    } else if (t == "concat") {
      std::vector<Tensor> ins;
      for (size_t k = 0; k < n.inputs.size(); ++k) ins.push_back(in(int(k)));
      o = concat(ins);
    } else if (t == "mul") {
      o = mul(in(0), in(1));
    } else if (t == "unary") {
      o = unary(a.at("op").string(), in(0), a.at("alpha").number(), a.at("beta").number());
    } else if (t == "channel_shuffle") {
      o = channel_shuffle(in(0), a.at("groups").integer());
    } else if (t == "slice_channels") {
      o = slice_channels(in(0), a.at("begin").integer(), a.at("end").integer());
    } else if (t == "pad") {
      const Json& p = a.at("pad");
      o = zero_pad(in(0), p[0].integer(), p[1].integer(), p[2].integer(), p[3].integer());
    } else {
      throw std::runtime_error("reference: no implementation for " + t);
    }
    outs.push_back(o);
  }
  return outs.back();
}

Tensor random_tensor(Shape s, std::mt19937& rng, float lo, float hi) {
  Tensor t(s);
  std::uniform_real_distribution<float> d(lo, hi);
  for (size_t i = 0; i < t.size(); ++i) t.data()[i] = d(rng);
  return t;
}

std::vector<float> random_vec(size_t n, std::mt19937& rng, float lo, float hi) {
  std::vector<float> v(n);
  std::uniform_real_distribution<float> d(lo, hi);
  for (float& x : v) x = d(rng);
  return v;
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) throw std::runtime_error("shape mismatch " + a.shape().str() + " vs " + b.shape().str());
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a.data()[i] - b.data()[i]));
  return m;
}

float max_abs(const Tensor& a) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a.data()[i]));
  return m;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace eb::ref
