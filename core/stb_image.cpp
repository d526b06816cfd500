// stb_image's implementation, alone in this translation unit: only the formats we document, and
// the build can treat its code apart from ours (CMakeLists.txt: under UBSan, stb's JPEG bit
// buffer shifts a 32-bit value by 32 and its reader passes NULL to a 0-byte memcpy on corrupt
// data, both harmless and not ours to change; its array bounds and memory errors stay checked,
// and core/image.cpp refuses the inputs found to break them).
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
// Only the formats we document: stb's GIF, TGA, PSD, HDR, PIC and PNM loaders are not compiled
// in (this stb version has known memory-safety bugs in some of them).
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS 16384
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop
