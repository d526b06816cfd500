#include "kernels/half.h"

#include <cstring>

namespace eb {

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7FFFFFFFu;
  if (absx >= 0x7F800000u) return uint16_t(sign | (absx > 0x7F800000u ? 0x7E00u : 0x7C00u));
  if (absx >= 0x477FF000u) return uint16_t(sign | 0x7C00u);  // rounds to infinity
  // At most 2^-25 (half the smallest subnormal, a tie to even): zero. Checked first: the shifts
  // below must stay under 32 bits (tiny values once came out as garbage through an over-wide shift).
  if (absx <= 0x33000000u) return uint16_t(sign);
  if (absx < 0x38800000u) {  // subnormal
    const uint32_t shift = 113 - (absx >> 23);  // <= 11 here
    const uint32_t mant = (absx & 0x7FFFFFu) | 0x800000u;
    uint32_t r = mant >> (shift + 13);
    const uint32_t rem = mant & ((1u << (shift + 13)) - 1), half = 1u << (shift + 12);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = ((absx - 0x38000000u) >> 13);
  const uint32_t rem = absx & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) ++r;
  return uint16_t(sign | r);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  uint32_t x;
  if (e == 0) {
    if (m == 0) {
      x = sign;
    } else {  // subnormal: normalise
      int shift = 0;
      uint32_t mm = m;
      while (!(mm & 0x400u)) {
        mm <<= 1;
        ++shift;
      }
      x = sign | uint32_t(127 - 15 - shift + 1) << 23 | (mm & 0x3FFu) << 13;
    }
  } else if (e == 31) {
    x = sign | 0x7F800000u | m << 13;
  } else {
    x = sign | (e + 112) << 23 | m << 13;
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

}  // namespace eb
