// Replays tests/fuzz/regressions/TARGET-* through the fuzz targets themselves: inputs that once
// crashed a reader (or a harness) must now be rejected cleanly or accepted, under the sanitizers
// too.
#include <dirent.h>
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/json.h"
#include "core/weights_io.h"
#include "dist/plan/channel.h"
#include "dist/plan/profile.h"
#include "models/import/builder.h"
#include "models/import/importers.h"
#include "tests/fuzz/target.h"

namespace {

// Feeds one input to the fuzz target its file name names (the same code libFuzzer ran); false
// for a name that is no target.
bool replay(const std::string& target, const std::string& bytes) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
#define EB_FUZZ_REPLAY_ONE(name) \
  if (target == #name) return eb_fuzz_##name(data, bytes.size()), true;
  EB_FUZZ_TARGETS(EB_FUZZ_REPLAY_ONE)
#undef EB_FUZZ_REPLAY_ONE
  return false;
}

}  // namespace

TEST_CASE("fuzz regressions: every input that once crashed a reader is now handled") {
  const std::string dir = std::string(EDGEBAND_SOURCE_DIR) + "/tests/fuzz/regressions";
  DIR* d = opendir(dir.c_str());
  REQUIRE(d != nullptr);
  int replayed = 0;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || name == "README.md") continue;
    const size_t dash = name.find('-');
    CAPTURE(name);
    REQUIRE(dash != std::string::npos);  // TARGET-...
    std::ifstream f(dir + "/" + name, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CHECK(replay(name.substr(0, dash), bytes));
    ++replayed;
  }
  closedir(d);
  MESSAGE(replayed << " regression inputs replayed");
}

TEST_CASE("images: JPEG, PNG and BMP decode; other formats and oversized images are refused") {
  auto read = [](const std::string& name) {
    std::ifstream f(std::string(EDGEBAND_SOURCE_DIR) + "/tests/fuzz/seeds/image/" + name,
                    std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  // rgb8x6_progressive.jpg: `jpegtran -progressive rgb8x6.jpg` (libjpeg-turbo 2.1.5): its scans
  // read DC and AC tables in separate passes, which the Huffman table checks must allow.
  for (const char* name : {"rgb8x6.png", "rgb8x6.bmp", "rgb8x6.jpg", "rgb8x6_progressive.jpg"}) {
    CAPTURE(name);
    const std::string b = read(name);
    const eb::RgbImage im =
        eb::decode_image(reinterpret_cast<const unsigned char*>(b.data()), b.size(), name);
    CHECK(im.w == 8);
    CHECK(im.h == 6);
  }
  // The same PNG claiming 10000x10000 in its header (300 MB decoded): refused from the header.
  std::string big = read("rgb8x6.png");
  REQUIRE(big.size() > 24);
  const unsigned char dims[8] = {0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10};  // IHDR width, height
  big.replace(16, 8, reinterpret_cast<const char*>(dims), 8);
  CHECK_THROWS_WITH(
      eb::decode_image(reinterpret_cast<const unsigned char*>(big.data()), big.size(), "big.png"),
      doctest::Contains("10000x10000 is larger than the limit of 50 megapixels"));
  const std::string gif = "GIF89a\x01\x00\x01\x00\x00\x00\x00;";
  CHECK_THROWS_WITH(
      eb::decode_image(reinterpret_cast<const unsigned char*>(gif.data()), gif.size(), "x.gif"),
      doctest::Contains("JPEG, PNG and BMP are supported"));
}
