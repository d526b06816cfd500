// libFuzzer target: the JSON reader every profile, plan, weights header and peer frame goes
// through. Whatever parses must print and parse back to the same text.
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "core/json.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(json) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  eb::Json j;
  try {
    j = eb::Json::parse(text);
  } catch (const std::runtime_error&) {
    return 0;
  }
  const std::string once = j.dump();
  if (eb::Json::parse(once).dump() != once) std::abort();  // printing is a fixed point
  return 0;
}
