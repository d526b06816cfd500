// Image input: decode (stb_image: JPEG/PNG/BMP/...), central crop, bilinear resize, normalise.
#pragma once
#include <stdexcept>
#include <string>

#include "core/graph.h"

namespace eb {

struct ImageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// 8-bit RGB pixels, HWC.
struct RgbImage {
  int h = 0, w = 0;
  std::vector<unsigned char> px;
};

RgbImage load_image(const std::string& path);  // throws ImageError with stb's reason
// Central crop keeping `fraction` of each side (TF-slim eval: 0.875), then bilinear resize to
// size x size with half-pixel centres, then (x - mean) / std per channel.
Tensor preprocess(const RgbImage& img, int size, const Normalization& norm, double fraction = 0.875);
// Reads a raw little-endian float32 HWC tensor file of exactly the given shape.
Tensor load_raw_tensor(const std::string& path, Shape shape);

}  // namespace eb
