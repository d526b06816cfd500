// libFuzzer target: image decoding (stb_image, JPEG/PNG/BMP only) with the size limits checked
// from the header first, then the crop/resize/normalise of whatever decoded.
#include <cstdint>
#include <stdexcept>

#include "core/image.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(image) {
  try {
    const eb::RgbImage im = eb::decode_image(data, size, "fuzz");
    eb::preprocess(im, 8, eb::Normalization{});
  } catch (const eb::ImageError&) {
  }
  return 0;
}
