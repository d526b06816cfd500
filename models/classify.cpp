#include "models/classify.h"

#include <algorithm>

namespace eb {

std::vector<Prediction> top_k(const Tensor& probs, int k) {
  std::vector<Prediction> p;
  for (size_t i = 0; i < probs.size(); ++i) p.push_back({int(i), probs.data()[i]});
  k = std::min<int>(k, int(p.size()));
  std::partial_sort(p.begin(), p.begin() + k, p.end(),
                    [](const Prediction& a, const Prediction& b) { return a.prob > b.prob; });
  p.resize(size_t(k));
  return p;
}

}  // namespace eb
