// libFuzzer target: image decoding (stb_image, JPEG/PNG/BMP only) with the size limits checked
// from the header first (at a lower pixel limit), then the crop/resize/normalise of whatever
// decoded.
#include <cstdint>
#include <stdexcept>

#include "core/image.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(image) {
  try {
    // At most 256x256: a mutated header may declare up to the 50 megapixels users get, which
    // stb then decodes (garbage, but 150 MB of it) at a few executions a second; the checks
    // and the decoders' paths are the same at this size.
    const eb::RgbImage im = eb::decode_image(data, size, "fuzz", 1 << 16);
    eb::preprocess(im, 8, eb::Normalization{});
  } catch (const eb::ImageError&) {
  }
  return 0;
}
