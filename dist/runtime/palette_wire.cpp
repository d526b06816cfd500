#include "dist/runtime/palette_wire.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>

#include "dist/runtime/protocol.h"

namespace eb::dist {
namespace {
void put_u16(std::vector<uint8_t>& out, size_t v) {
  out.push_back(uint8_t(v));
  out.push_back(uint8_t(v >> 8));
}
size_t get_u16(const uint8_t* p) {
  return size_t(p[0]) | size_t(p[1]) << 8;
}

// One channel's distinct values by bits, with a byte index each: open addressing over 1024
// slots (at most a quarter full), so a lookup is about one probe.
class Levels {
 public:
  // The index of `bits`, added when new; -1 when the channel would exceed 256 values.
  int index(uint32_t bits) {
    for (uint32_t s = (bits * 0x9E3779B1u) >> 22;; s = (s + 1) & 1023) {
      if (used_[s] && keys_[s] == bits) return idx_[s];
      if (!used_[s]) {
        if (values_.size() == kPaletteMaxLevels) return -1;
        used_[s] = true, keys_[s] = bits, idx_[s] = uint8_t(values_.size());
        values_.push_back(bits);
        return idx_[s];
      }
    }
  }
  const std::vector<uint32_t>& values() const { return values_; }

 private:
  std::array<uint32_t, 1024> keys_{};
  std::array<uint8_t, 1024> idx_{};
  std::array<bool, 1024> used_{};
  std::vector<uint32_t> values_;
};

// Each channel's distinct values of v[0, n) into `levels` (one per channel), and each value's
// index into index[0, n) where given; false where a channel has more than 256.
bool scan_levels(const float* v, size_t n, std::vector<Levels>& levels, uint8_t* index) {
  const size_t channels = levels.size();
  for (size_t i = 0; i < n;)
    for (size_t c = 0; c < channels; ++c, ++i) {
      uint32_t bits;
      std::memcpy(&bits, v + i, sizeof bits);
      const int k = levels[c].index(bits);
      if (k < 0) return false;
      if (index) index[i] = uint8_t(k);
    }
  return true;
}
}  // namespace

size_t palette_levels(const float* v, size_t n, int channels) {
  if (channels < 1 || channels > kPaletteMaxChannels || n % size_t(channels)) return 0;
  std::vector<Levels> levels(static_cast<size_t>(channels));
  if (!scan_levels(v, n, levels, nullptr)) return 0;
  size_t most = 0;
  for (const Levels& l : levels) most = std::max(most, l.values().size());
  return most;
}

int images_palette_levels(const std::vector<Tensor>& images) {
  size_t most = 0;
  for (const Tensor& im : images) {
    const size_t k = palette_levels(im.data(), im.size(), im.c());
    if (k == 0) return 0;
    most = std::max(most, k);
  }
  return int(most);
}

std::optional<std::vector<uint8_t>> palette_encode(const float* v, size_t n, int channels) {
  if (channels < 1 || channels > kPaletteMaxChannels || n % size_t(channels))
    throw std::logic_error("palette_encode: 1 to 4 channels, whole pixels");
  std::vector<Levels> levels(static_cast<size_t>(channels));
  std::vector<uint8_t> index(n);
  if (!scan_levels(v, n, levels, index.data())) return std::nullopt;
  std::vector<uint8_t> out;
  out.reserve(palette_bytes(n, channels, kPaletteMaxLevels));
  put_u16(out, size_t(channels));
  for (const Levels& l : levels) {
    put_u16(out, l.values().size());
    for (uint32_t b : l.values())
      for (int k = 0; k < 4; ++k) out.push_back(uint8_t(b >> (8 * k)));
  }
  out.insert(out.end(), index.begin(), index.end());
  return out;
}

void palette_decode(const uint8_t* in, size_t bytes, float* dst, size_t n, int channels) {
  if (channels < 1 || channels > kPaletteMaxChannels || n % size_t(channels))
    throw ProtocolError("palette rows for a band of more than 4 channels");
  if (bytes < 2 || get_u16(in) != size_t(channels)) throw ProtocolError("palette rows for other channels");
  // Every channel's palette (the values' bits), checked against the length before anything is written.
  std::vector<std::array<uint32_t, kPaletteMaxLevels>> pal(static_cast<size_t>(channels));
  std::vector<size_t> count(static_cast<size_t>(channels));
  size_t at = 2;
  for (int c = 0; c < channels; ++c) {
    if (bytes < at + 2) throw ProtocolError("palette rows shorter than their palettes");
    const size_t k = get_u16(in + at);
    at += 2;
    if (k < 1 || k > kPaletteMaxLevels) throw ProtocolError("a palette of 0 or more than 256 values");
    if (bytes < at + 4 * k) throw ProtocolError("palette rows shorter than their palettes");
    std::memcpy(pal[size_t(c)].data(), in + at, 4 * k);
    at += 4 * k;
    count[size_t(c)] = k;
  }
  if (bytes != at + n) throw ProtocolError("palette rows do not match their values");
  const uint8_t* idx = in + at;
  for (size_t i = 0; i < n;)
    for (int c = 0; c < channels; ++c, ++i)
      if (idx[i] >= count[size_t(c)]) throw ProtocolError("a palette index past its palette");
  for (size_t i = 0; i < n;)
    for (int c = 0; c < channels; ++c, ++i) std::memcpy(dst + i, &pal[size_t(c)][idx[i]], 4);
}

}  // namespace eb::dist
