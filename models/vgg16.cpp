#include "core/layers/conv2d.h"
#include "core/layers/elementwise.h"
#include "core/layers/fully_connected.h"
#include "core/layers/pool2d.h"
#include "models/zoo.h"

namespace eb::models {

// VGG-16 (Simonyan & Zisserman, configuration D): 13 3x3 convs in 5 stages, 3 FC layers.
Graph build_vgg16(int res) {
  Graph g;
  g.input = {res, res, 3};
  g.norm.mean = {123.68f, 116.78f, 103.94f};  // ImageNet RGB statistics
  g.norm.std = {58.40f, 57.12f, 57.38f};
  const int stages[5][2] = {{64, 2}, {128, 2}, {256, 3}, {512, 3}, {512, 3}};
  long cin = 3, h = res;
  for (int s = 0; s < 5; ++s) {
    for (int i = 0; i < stages[s][1]; ++i) {
      Conv2DParams p;
      p.cin = cin;
      p.cout = stages[s][0];
      p.pad_t = p.pad_l = p.pad_b = p.pad_r = 1;
      p.act = Activation::relu;
      g.add("conv" + std::to_string(s + 1) + "_" + std::to_string(i + 1), std::make_unique<Conv2D>(p));
      cin = p.cout;
    }
    g.add("pool" + std::to_string(s + 1), std::make_unique<Pool2D>(kernels::PoolKind::max, 2, 2));
    h /= 2;
  }
  g.add("fc6", std::make_unique<FullyConnected>(h * h * cin, 4096, Activation::relu));
  g.add("fc7", std::make_unique<FullyConnected>(4096, 4096, Activation::relu));
  g.add("fc8", std::make_unique<FullyConnected>(4096, 1000));
  g.add("prob", std::make_unique<Softmax>());
  return g;
}

}  // namespace eb::models
