#include "core/image.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace eb {

RgbImage load_image(const std::string& path) {
  int w = 0, h = 0, n = 0;
  unsigned char* p = stbi_load(path.c_str(), &w, &h, &n, 3);
  if (!p) throw ImageError("cannot read image '" + path + "': " + stbi_failure_reason());
  RgbImage img;
  img.w = w;
  img.h = h;
  img.px.assign(p, p + size_t(w) * size_t(h) * 3);
  stbi_image_free(p);
  return img;
}

Tensor preprocess(const RgbImage& img, int size, const Normalization& norm, double fraction) {
  if (img.w <= 0 || img.h <= 0) throw ImageError("empty image");
  // TF central_crop: offset = (dim - dim*fraction) / 2, truncated.
  const int ch = std::max(1, int(img.h * fraction)), cw = std::max(1, int(img.w * fraction));
  const int oy = (img.h - ch) / 2, ox = (img.w - cw) / 2;
  Tensor t(size, size, 3);
  const double sy = double(ch) / size, sx = double(cw) / size;
  for (int y = 0; y < size; ++y) {
    const double fy = std::clamp((y + 0.5) * sy - 0.5, 0.0, double(ch - 1));
    const int y0 = int(fy), y1 = std::min(y0 + 1, ch - 1);
    const double wy = fy - y0;
    for (int x = 0; x < size; ++x) {
      const double fx = std::clamp((x + 0.5) * sx - 0.5, 0.0, double(cw - 1));
      const int x0 = int(fx), x1 = std::min(x0 + 1, cw - 1);
      const double wx = fx - x0;
      for (int c = 0; c < 3; ++c) {
        auto px = [&](int yy, int xx) {
          return double(img.px[(size_t(oy + yy) * size_t(img.w) + size_t(ox + xx)) * 3 + size_t(c)]);
        };
        const double v = (1 - wy) * ((1 - wx) * px(y0, x0) + wx * px(y0, x1)) +
                         wy * ((1 - wx) * px(y1, x0) + wx * px(y1, x1));
        t.at(y, x, c) = float((v - norm.mean[size_t(c)]) / norm.std[size_t(c)]);
      }
    }
  }
  return t;
}

Tensor load_raw_tensor(const std::string& path, Shape shape) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw ImageError("cannot open tensor file '" + path + "'");
  const auto bytes = size_t(f.tellg());
  if (bytes != shape.size() * sizeof(float))
    throw ImageError("tensor file '" + path + "' has " + std::to_string(bytes) + " bytes, expected " +
                     std::to_string(shape.size() * sizeof(float)) + " for " + shape.str());
  Tensor t(shape);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(t.data()), std::streamsize(bytes));
  if (!f) throw ImageError("read error on '" + path + "'");
  return t;
}

}  // namespace eb
