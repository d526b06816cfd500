// libFuzzer target: the wire protocol decoder - frame header, checksum, JSON, and a plan
// validated against a model. The checksum is checked but not required to pass, so the fuzzer
// also reaches the JSON and plan validation behind it.
#include <cstdint>
#include <string>

#include "dist/protocol.h"
#include "models/zoo.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const eb::Graph g = eb::models::build_synthetic("mobilenet_v1:0.25:32");
  if (size < eb::dist::kHeaderBytes) return 0;
  try {
    const eb::dist::FrameHeader h = eb::dist::decode_header(data);
    const size_t rest = size - eb::dist::kHeaderBytes;
    if (h.json_len > rest) return 0;
    const std::string json(reinterpret_cast<const char*>(data) + eb::dist::kHeaderBytes,
                           h.json_len);
    try {
      eb::dist::verify_frame(data, json, data + eb::dist::kHeaderBytes + h.json_len,
                             rest - h.json_len);
    } catch (const eb::dist::ProtocolError&) {
    }
    const eb::Json j = eb::Json::parse(json);
    if (h.type == eb::dist::MsgType::plan) eb::dist::plan_from_wire(j, g);
  } catch (const std::exception&) {
  }
  return 0;
}
