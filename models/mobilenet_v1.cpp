#include <algorithm>

#include "core/layers/conv2d.h"
#include "core/layers/elementwise.h"
#include "core/layers/fully_connected.h"
#include "core/layers/global_avg_pool.h"
#include "models/zoo.h"

namespace eb::models {

Pad same_padding(long in, long k, long stride) {
  const long out = (in + stride - 1) / stride;
  const long total = std::max(0L, (out - 1) * stride + k - in);
  return {total / 2, total - total / 2};  // TF puts the odd row at the bottom/right
}

// MobileNet-V1 (Howard et al. 2017) as in TF-slim: depth(d) = max(8, int(d * alpha)), TF SAME
// padding, BN + ReLU6 after every conv, 1001 classes (0 = background).
Graph build_mobilenet_v1(double alpha, int res) {
  Graph g;
  g.input = {res, res, 3};
  g.label_offset = 1;
  auto depth = [&](long d) { return std::max(8L, long(d * alpha)); };
  long cin = 3, h = res;
  auto conv = [&](const std::string& name, long cout, long k, long s, bool dw) {
    Conv2DParams p;
    p.cin = cin;
    p.cout = dw ? cin : cout;
    p.kh = p.kw = k;
    p.sh = p.sw = s;
    p.depthwise = dw;
    const Pad pad = same_padding(h, k, s);
    p.pad_t = p.pad_l = pad.before;
    p.pad_b = p.pad_r = pad.after;
    g.add(name, std::make_unique<Conv2D>(p));
    g.add(name + "/bn", std::make_unique<BatchNorm>(p.cout, 0.001f));
    g.add(name + "/relu6", std::make_unique<ActivationLayer>(Activation::relu6));
    cin = p.cout;
    h = (h + s - 1) / s;
  };
  conv("conv0", depth(32), 3, 2, false);
  const long blocks[13][2] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1},
                              {512, 2}, {512, 1}, {512, 1}, {512, 1}, {512, 1},
                              {512, 1}, {1024, 2}, {1024, 1}};
  for (int i = 0; i < 13; ++i) {
    const std::string b = "block" + std::to_string(i + 1);
    conv(b + "/dw", 0, 3, blocks[i][1], true);
    conv(b + "/pw", depth(blocks[i][0]), 1, 1, false);
  }
  g.add("pool", std::make_unique<GlobalAvgPool>());
  g.add("logits", std::make_unique<FullyConnected>(cin, 1001));
  g.add("prob", std::make_unique<Softmax>());
  return g;
}

}  // namespace eb::models
