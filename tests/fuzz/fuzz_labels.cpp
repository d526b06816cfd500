// libFuzzer target: the labels file read by convert (one class name per line).
#include <cstdint>
#include <stdexcept>
#include <string>

#include "models/import/builder.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(labels) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    eb::import::parse_labels(text, long(data[0]) + 1);
  } catch (const eb::import::ImportError&) {
  }
  return 0;
}
