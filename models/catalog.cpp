#include "models/catalog.h"

#include "models/zoo.h"

namespace eb::models {

const std::vector<CatalogEntry>& catalog() {
  static const std::vector<CatalogEntry> c = {
      {"mobilenet_v1:1:224", 70.9, "MobileNet paper, Table 6 / TF-slim"},
      {"mobilenet_v1:0.75:192", 67.2, "TF-slim MobileNet-V1 release"},
      {"mobilenet_v1:0.5:160", 59.1, "TF-slim MobileNet-V1 release"},
      {"mobilenet_v1:0.25:224", 49.8, "TF-slim MobileNet-V1 release"},
      {"mobilenet_v1:0.25:128", 41.5, "TF-slim MobileNet-V1 release"},
      {"vgg16:224", 71.5, "TF-slim VGG-16 release"},
  };
  return c;
}

double top1_accuracy(const std::string& name) {
  std::string canon = name;
  try {
    canon = parse_model_name(name).canonical();
  } catch (const std::exception&) {
  }
  for (const CatalogEntry& e : catalog())
    if (e.name == canon) return e.top1;
  return -1;
}

std::vector<std::string> mobilenet_candidates() {
  return {"mobilenet_v1:1:224", "mobilenet_v1:0.75:192", "mobilenet_v1:0.5:160",
          "mobilenet_v1:0.25:128"};
}

}  // namespace eb::models
