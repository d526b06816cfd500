// The model catalogue the deadline-aware selector chooses from: each built-in model with its
// published ImageNet top-1 accuracy (float models; the uint8 TFLite conversions of
// ../shared score about 1-2 points lower, see weights/README.md).
#pragma once
#include <string>
#include <vector>

namespace eb::models {

struct CatalogEntry {
  std::string name;  // canonical model name
  double top1;       // ImageNet top-1, percent
  const char* source;
};

const std::vector<CatalogEntry>& catalog();
// Top-1 of a model by any accepted name; -1 when the catalogue does not list it.
double top1_accuracy(const std::string& name);
// MobileNet-V1 candidates for selection, most accurate first.
std::vector<std::string> mobilenet_candidates();

}  // namespace eb::models
