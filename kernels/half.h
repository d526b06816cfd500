// IEEE 754 half precision <-> float (round to nearest even): fp16 wire bands, fp16 weights.
#pragma once
#include <cstdint>

namespace eb {

uint16_t float_to_half(float f);
float half_to_float(uint16_t h);

}  // namespace eb
