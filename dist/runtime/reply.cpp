#include "dist/runtime/reply.h"

#include <cmath>

namespace eb::dist {

namespace {
// A number within [lo, hi], so that the integer conversions below are defined.
bool in_range(const Json& v, double lo, double hi) {
  return v.is_number() && std::isfinite(v.number()) && v.number() >= lo && v.number() <= hi;
}
}  // namespace

std::string error_text(const Json& j) {
  const bool ok = j.is_object() && j.has("message") && j.at("message").is_string();
  return "error: " + (ok ? j.at("message").string() : std::string("(malformed error frame)"));
}

void read_spans(const Json& j, int device, uint64_t first_image, uint64_t end_image,
                std::vector<ComputeSpan>* out) {
  if (!j.is_object() || !j.has("spans") || !j.at("spans").is_array()) return;
  constexpr double kMaxUs = 9e15;  // ~285 years of steady clock: int64-safe, beyond any uptime
  for (const Json& sp : j.at("spans").items()) {
    if (!sp.is_array() || sp.size() != 4) continue;
    // Block and image are exact integers (Json keeps int64 exactly; compared as integers,
    // since image numbers above 2^53 do not survive a double), times any number in range.
    if (!sp[0].is_integer() || sp[0].integer() < 0 || sp[0].integer() > 1000000 ||
        !sp[1].is_integer() || sp[1].integer() < 0 || !in_range(sp[2], -kMaxUs, kMaxUs) ||
        !in_range(sp[3], sp[2].number(), kMaxUs))
      continue;  // malformed
    const auto image = uint64_t(sp[1].integer());
    if (image < first_image || image >= end_image) continue;  // an image of an earlier call
    out->push_back({device, int(sp[0].integer()), image, int64_t(sp[2].number()),
                    int64_t(sp[3].number())});
  }
}

namespace {
long read_count(const Json& j, const char* key) {
  if (!j.is_object() || !j.has(key) || !in_range(j.at(key), 0, 0x1p40)) return -1;
  return long(j.at(key).number());
}
}  // namespace

long read_peak_rss_kb(const Json& j) {
  return read_count(j, "peak_rss_kb");
}

long read_maps_mapped(const Json& j) {
  return read_count(j, "maps_mapped");
}

}  // namespace eb::dist
