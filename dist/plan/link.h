// Link model between the host and each secondary: rate + one-way latency, parsed from
// "1gbit,0.2ms", "100mbit,2ms", "500kbit,10ms", "1.5gbit,50us".
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace eb::dist {

struct LinkModel {
  double bits_per_s = 1e9;
  double latency_s = 0.2e-3;
  double transfer_s(double bytes) const { return bytes * 8.0 / bits_per_s; }
  std::string str() const;
};

LinkModel parse_link(const std::string& spec);  // throws std::invalid_argument
// "RATE,DELAY", or one per worker separated by '/' ("1gbit,0.2ms/50mbit,2ms"); throws
// std::invalid_argument.
std::vector<LinkModel> parse_link_list(const std::string& spec);
// The list's own spelling (parse_link_list reads it back).
std::string link_list_str(const std::vector<LinkModel>& links);

// Whether fp32 rows go on the link in a compact form (zeros elided, palettes) of `bytes` rather
// than raw: only where it saves at least an eighth of the raw bytes, as a smaller saving does not
// pay for the decoding. The runtime chooses by it and the planner predicts by it.
constexpr bool compact_form_pays(uint64_t bytes, uint64_t raw_bytes) {
  return bytes * 8 <= raw_bytes * 7;
}

// The palette form of the input's rows (dist/runtime/palette_wire.h): rows of 1 to 4 channels
// with at most 256 distinct values in each channel go as each channel's values once and a byte
// per value. Its size is here so that the planner predicts what the runtime sends.
constexpr int kPaletteMaxChannels = 4;
constexpr uint64_t kPaletteMaxLevels = 256;
// Bytes of the palette form of n values of `channels` channels with `levels` values each.
constexpr uint64_t palette_bytes(uint64_t n, int channels, uint64_t levels) {
  return 2 + uint64_t(channels) * (2 + 4 * levels) + n;
}

}  // namespace eb::dist
