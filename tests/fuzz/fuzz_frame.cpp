// libFuzzer target: the wire protocol decoder - frame header, checksum, JSON, a plan validated
// against a model, and rows (fp32, zero-elided fp32, fp16) put into a feature store. The checksum
// is checked but not required to pass, so the fuzzer also reaches the JSON and plan validation
// behind it.
#include <cstdint>
#include <string>

#include "dist/runtime/executor.h"
#include "dist/runtime/protocol.h"
#include "models/zoo.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(frame) {
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
    if (h.type == eb::dist::MsgType::rows) {  // rows into a store: fp32, zero-elided, fp16
      const uint8_t* payload = data + eb::dist::kHeaderBytes + h.json_len;
      eb::dist::FeatureStore s(g);
      s.put_wire(1, j, std::vector<uint8_t>(payload, data + size));
    }
  } catch (const std::exception&) {
  }
  return 0;
}
