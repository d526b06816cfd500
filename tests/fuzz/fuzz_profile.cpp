// libFuzzer target: device profiles (JSON from a file or a peer), then what the planner reads of
// one: the whole model's time and a layer's time for a band. (A full plan per input took seconds
// under the sanitizers; the planner's own inputs are fuzzed through its tests' sweeps.)
#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/json.h"
#include "dist/plan/profile.h"
#include "models/zoo.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(profile) {
  // Shapes only (lazy: no weights are made), so that a smoke run is not spent building VGG-16.
  static const eb::Graph g =
      eb::models::build_synthetic("vgg16:32", 2022, eb::models::Hold::lazy);
  try {
    const eb::dist::DeviceProfile p = eb::dist::DeviceProfile::from_json(
        eb::Json::parse(std::string(reinterpret_cast<const char*>(data), size)));
    if (p.model != g.model || int(p.layers.size()) != g.size()) return 0;  // load_profile's checks
    p.full_ms(g);
    for (int n = 0; n < g.size(); ++n) p.band_ms(g, n, {0, 1});
  } catch (const std::runtime_error&) {
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
