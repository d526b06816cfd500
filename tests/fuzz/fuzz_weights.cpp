// libFuzzer target: the native .ebw loaders (header, JSON, offsets, checksum, layer attributes),
// eager and lazy (sections read when each node is loaded).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/weights_io.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(weights) {
  static const std::string path = "/dev/shm/edgeband_fuzz_" + std::to_string(::getpid()) + ".ebw";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    eb::load_weights(path);
  } catch (const std::exception&) {
  }
  try {
    const eb::Graph g = eb::load_weights_lazy(path);
    for (int i = 0; i < g.size(); ++i) g.load(i);
  } catch (const std::exception&) {
  }
  return 0;
}
