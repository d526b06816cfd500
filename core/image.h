// Image input: decode (stb_image: JPEG, PNG and BMP only), central crop, bilinear resize,
// normalise.
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

// Limits, checked from the header before decoding: a 10000x10000 PNG would take 300 MB decoded.
constexpr long kMaxImageSide = 16384;
constexpr long kMaxImagePixels = 50'000'000;
constexpr size_t kMaxImageFileBytes = size_t(256) << 20;

RgbImage load_image(const std::string& path);  // throws ImageError with stb's reason
// max_pixels: a lower limit where the caller wants one (the fuzz target bounds its work per
// input with it; the checks are the same).
RgbImage decode_image(const unsigned char* data, size_t size, const std::string& name,
                      long max_pixels = kMaxImagePixels);
// Central crop keeping `fraction` of each side (TF-slim eval: 0.875), then bilinear resize to
// size x size with half-pixel centres, then (x - mean) / std per channel.
Tensor preprocess(const RgbImage& img, int size, const Normalization& norm, double fraction = 0.875);
// Reads a raw little-endian float32 HWC tensor file of exactly the given shape.
Tensor load_raw_tensor(const std::string& path, Shape shape);

}  // namespace eb
