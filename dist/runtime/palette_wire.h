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

#include "core/tensor.h"
#include "dist/plan/link.h"  // kPaletteMaxChannels, kPaletteMaxLevels, palette_bytes: the planner's too

namespace eb::dist {

// The palette form of v[0, n) (n a multiple of `channels`, in [1, kPaletteMaxChannels]), or none
// where a channel has more than 256 distinct values (by bits: -0.0 and each NaN are their own).
std::optional<std::vector<uint8_t>> palette_encode(const float* v, size_t n, int channels);
// The most distinct values (by bits) a channel of v[0, n) has, or 0 where one has more than 256
// (its rows go as plain fp32) or `channels` is outside [1, kPaletteMaxChannels]: what the planner
// needs to predict the input's frames (Cluster::input_levels).
size_t palette_levels(const float* v, size_t n, int channels);
// The same over a batch of input images (Cluster::input_levels): the most of any image, or 0
// where one goes as plain fp32.
int images_palette_levels(const std::vector<Tensor>& images);
// Decodes a palette form of n values of `channels` channels into dst; throws ProtocolError
// (dist/runtime/protocol.h) when its channel count, palette sizes, length or any byte does not
// fit. dst is untouched then.
void palette_decode(const uint8_t* in, size_t bytes, float* dst, size_t n, int channels);

}  // namespace eb::dist
