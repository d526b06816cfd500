// Replays tests/fuzz/regressions/TARGET-*: inputs that once crashed a reader must now be
// rejected with an exception or accepted, under the sanitizers too.
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

namespace {

// Feeds one input to the reader its file name names; false for an unknown target.
bool replay(const std::string& target, const std::string& bytes, const std::string& path) {
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  try {
    if (target == "image") {
      eb::decode_image(u, bytes.size(), path);
    } else if (target == "json") {
      eb::Json::parse(bytes);
    } else if (target == "profile") {
      eb::dist::DeviceProfile::from_json(eb::Json::parse(bytes));
    } else if (target == "weights") {
      eb::load_weights(path);
    } else if (target == "trace" && !bytes.empty()) {
      const std::string text = bytes.substr(1);
      u[0] % 2 ? eb::dist::make_channel(text) : eb::dist::parse_trace(text);
    } else if (target == "labels" && !bytes.empty()) {
      eb::import::parse_labels(bytes.substr(1), long(u[0]) + 1);
    } else if (target == "import" && !bytes.empty()) {
      eb::import::NetBuilder b;
      const std::string_view rest(bytes.data() + 1, bytes.size() - 1);
      if (u[0] % 3 == 0)
        eb::import::import_tflite(b, rest, -1);
      else if (u[0] % 3 == 1)
        eb::import::import_graphdef(b, rest, -1);
      else
        eb::import::import_onnx(b, rest, -1);
      b.graph.finalize();
    } else {
      // Empty inputs of the prefixed formats; anything else is a target without a replay here
      // (frame, handshake: add one with the first regression).
      return target == "trace" || target == "labels" || target == "import";
    }
  } catch (const std::exception&) {
  }
  return true;
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
    CHECK(replay(name.substr(0, dash), bytes, dir + "/" + name));
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
  for (const char* name : {"rgb8x6.png", "rgb8x6.bmp", "rgb8x6.jpg"}) {
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
