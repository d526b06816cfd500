// Lossless palette form for the input's rows where they have few distinct values per channel.
// An 8-bit image already at the model's size (a camera set to it, a crop, a synthetic image)
// has at most 256 levels per channel, and normalisation maps each level to one float; a photo
// resized to the model (bilinear blends of pixels) has more, and goes as plain fp32. The form
// sends each channel's distinct values once and a byte per value: a 224x224x3 input moves 154 KB
// instead of 602 KB (the first frames of every plan: they hold back every worker's first block),
// with every bit of every value kept. Only the input's rows of 1-kPaletteMaxChannels channels
// try it: feature maps have thousands of distinct values.
//
// Layout (little-endian): u16 channel count C (that of the rows), then per channel a u16 count
// K (1..256) and K raw fp32 values, then one byte per value (value i of the rows is entry
// byte[i] of channel i % C's palette).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace eb::dist {

constexpr int kPaletteMaxChannels = 4;
constexpr size_t kPaletteMaxLevels = 256;

// The palette form of v[0, n) (n a multiple of `channels`, in [1, kPaletteMaxChannels]), or none
// where a channel has more than 256 distinct values (by bits: -0.0 and each NaN are their own).
std::optional<std::vector<uint8_t>> palette_encode(const float* v, size_t n, int channels);
// Bytes of the palette form of n values of `channels` channels with `levels` values each.
size_t palette_bytes(size_t n, int channels, size_t levels);
// Decodes a palette form of n values of `channels` channels into dst; throws ProtocolError
// (dist/runtime/protocol.h) when its channel count, palette sizes, length or any byte does not
// fit. dst is untouched then.
void palette_decode(const uint8_t* in, size_t bytes, float* dst, size_t n, int channels);

}  // namespace eb::dist
