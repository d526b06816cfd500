// What a classifier's output means: the k most probable classes of a probability vector.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace eb {

struct Prediction {
  int index;
  float prob;
};
// The k largest entries of `probs`, most probable first (k is capped at probs.size()).
std::vector<Prediction> top_k(const Tensor& probs, int k);

}  // namespace eb
