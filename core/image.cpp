#include "core/image.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

// The decoder itself is compiled in core/stb_image.cpp (JPEG, PNG and BMP only).
#include <stb/stb_image.h>

namespace eb {

namespace {

// The SOS header at d[at] (after its length), `len` bytes as it declares: the tables each
// component's decoding reads must exist. A baseline scan reads both; a progressive one its DC
// table in a first DC pass, else its AC table. Bytes past the file's end read as zeros, as stb
// reads them (a truncated header is no refusal: it decodes as component 0 with tables 0).
bool scan_tables_defined(const unsigned char* d, size_t n, size_t at, size_t len,
                         const bool (&defined)[2][4], bool progressive) {
  auto byte = [&](size_t k) -> unsigned { return at + k < n ? d[at + k] : 0; };
  const size_t ns = len >= 1 ? byte(0) : 0;
  if (ns < 1 || len != 4 + 2 * ns) return true;  // stb refuses a bad count or length itself
  const unsigned ss = byte(1 + 2 * ns), ah = byte(3 + 2 * ns) >> 4;
  for (size_t c = 0; c < ns; ++c) {
    const unsigned td = byte(2 + 2 * c) >> 4, ta = byte(2 + 2 * c) & 15;
    if (td > 3 || ta > 3) continue;  // stb refuses these itself
    const bool dc = !progressive || (ss == 0 && ah == 0), ac = !progressive || ss > 0;
    if ((dc && !defined[0][td]) || (ac && !defined[1][ta])) return false;
  }
  return true;
}

// stb_image 2022-09 builds each JPEG Huffman table from its 16 code counts before it checks them
// against the segment's length: counts summing past 256 symbols write past its 257-entry size
// array (stb_image.h:1990), and tables read on past a short segment fed its decoder a symbol
// index far out of range (stb_image.h:2120). Both were found by fuzz_image; the inputs are in
// tests/fuzz/regressions/image-*. This walks the JPEG's segments as stb reads them, entropy-coded
// data included, and refuses such tables before stb sees them. (The over-subscription test is
// stb's own "bad code lengths" check, repeated here so that nothing is built from such a table.)
// It also refuses a scan that uses a table no DHT defined: stb's decoder state is malloc'ed, not
// zeroed, so such a table is whatever the heap held (stb_image.h:2120 again, found later).
bool jpeg_huffman_tables_fit(const unsigned char* d, size_t n) {
  bool defined[2][4] = {};  // [DC, AC][table id]
  bool progressive = false;
  // stb takes any run of 0xFF bytes followed by the SOI code as the start of a JPEG.
  size_t i = 0;
  while (i < n && d[i] == 0xFF) ++i;
  if (i == 0 || i >= n || d[i] != 0xD8) return true;  // not a JPEG
  ++i;
  while (i + 4 <= n) {
    if (d[i] != 0xFF) {  // entropy-coded data after a scan header: on to the next marker
      ++i;
      continue;
    }
    const unsigned char m = d[i + 1];
    if (m == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {  // stuffed 0xFF, TEM, RSTn
      i += 2;
      continue;
    }
    if (m == 0xD9) break;  // end of image
    const size_t len = size_t(d[i + 2]) << 8 | d[i + 3];
    if (len < 2) break;
    if (m == 0xC2) progressive = true;
    if (m == 0xDA && !scan_tables_defined(d, n, i + 4, len - 2, defined, progressive)) return false;
    if (m == 0xC4) {  // DHT: tables of (class/id, 16 counts, symbols)
      // As stb reads them: a table's 17 header bytes are read whatever the segment length says
      // (past the file's end as zeros), and the table is built before the length is checked.
      long left = long(len) - 2;
      for (size_t p = i + 4; left > 0;) {
        size_t symbols = 0;
        unsigned long code = 0;  // canonical Huffman codes: no length may overflow its space
        for (size_t k = 1; k <= 16; ++k) {
          const unsigned count = p + k < n ? d[p + k] : 0;
          symbols += count;
          code += count;
          if (count && code - 1 >= (1ul << k)) return false;  // over-subscribed
          code <<= 1;
        }
        if (symbols > 256) return false;
        const unsigned q = p < n ? d[p] : 0;
        if ((q >> 4) <= 1 && (q & 15) <= 3) defined[q >> 4][q & 15] = true;
        p += 17 + symbols;
        left -= long(17 + symbols);
      }
    }
    if (i + 2 + len > n) break;  // truncated: stb reports it
    i += 2 + len;
  }
  return true;
}

}  // namespace

RgbImage decode_image(const unsigned char* data, size_t size, const std::string& name,
                     long max_pixels) {
  auto fail = [&](const std::string& why) {
    return ImageError("cannot read image '" + name + "': " + why);
  };
  if (size > kMaxImageFileBytes) throw fail("file larger than 256 MiB");
  if (!jpeg_huffman_tables_fit(data, size)) throw fail("corrupt JPEG (bad or missing Huffman table)");
  int w = 0, h = 0, n = 0;
  // Size first, from the header alone: the decoder then never allocates for a hostile size.
  if (!stbi_info_from_memory(data, int(size), &w, &h, &n))
    throw fail(std::string(stbi_failure_reason()) + " (JPEG, PNG and BMP are supported)");
  if (w <= 0 || h <= 0 || w > kMaxImageSide || h > kMaxImageSide || long(w) * long(h) > max_pixels) {
    const std::string limit = max_pixels >= 1000000 ? std::to_string(max_pixels / 1000000) + " megapixels"
                                                    : std::to_string(max_pixels) + " pixels";
    throw fail(std::to_string(w) + "x" + std::to_string(h) + " is larger than the limit of " + limit +
               " (" + std::to_string(kMaxImageSide) + " per side)");
  }
  unsigned char* p = stbi_load_from_memory(data, int(size), &w, &h, &n, 3);
  if (!p) throw fail(stbi_failure_reason());
  RgbImage img;
  img.w = w;
  img.h = h;
  img.px.assign(p, p + size_t(w) * size_t(h) * 3);
  stbi_image_free(p);
  return img;
}

RgbImage load_image(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw ImageError("cannot read image '" + path + "': cannot open file");
  const std::streamoff size = f.tellg();
  if (size < 0 || size_t(size) > kMaxImageFileBytes)
    throw ImageError("cannot read image '" + path + "': not a regular file of at most 256 MiB");
  std::vector<unsigned char> buf(static_cast<size_t>(size));
  f.seekg(0);
  if (!f.read(reinterpret_cast<char*>(buf.data()), size))
    throw ImageError("cannot read image '" + path + "': read error");
  return decode_image(buf.data(), buf.size(), path);
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
          return double(
              img.px[(size_t(oy + yy) * size_t(img.w) + size_t(ox + xx)) * 3 + size_t(c)]);
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
    throw ImageError("tensor file '" + path + "' has " + std::to_string(bytes) +
                     " bytes, expected " + std::to_string(shape.size() * sizeof(float)) + " for " +
                     shape.str());
  Tensor t(shape);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(t.data()), std::streamsize(bytes));
  if (!f) throw ImageError("read error on '" + path + "'");
  return t;
}

}  // namespace eb
