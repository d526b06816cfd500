// A fuzz input read as one frame: the header, the JSON it announces and the bytes after it (the
// frame and reply targets both start here). Empty when the input is shorter than the header
// or than the JSON length the header claims; decode_header's own errors are thrown.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "dist/runtime/protocol.h"

namespace eb::test {

struct FrameInput {
  dist::FrameHeader h;
  std::string json;
  const uint8_t* payload;
  size_t payload_len;
};

inline std::optional<FrameInput> split_frame(const uint8_t* data, size_t size) {
  if (size < dist::kHeaderBytes) return std::nullopt;
  const dist::FrameHeader h = dist::decode_header(data);
  const size_t rest = size - dist::kHeaderBytes;
  if (h.json_len > rest) return std::nullopt;
  const uint8_t* json = data + dist::kHeaderBytes;
  return FrameInput{h, std::string(reinterpret_cast<const char*>(json), h.json_len),
                    json + h.json_len, rest - h.json_len};
}

}  // namespace eb::test
