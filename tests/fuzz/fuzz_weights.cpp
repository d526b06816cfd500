// libFuzzer target: the native .ebw loader (header, JSON, offsets, checksum, layer attributes).
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
  return 0;
}
