// libFuzzer target: the wire protocol decoder - frame header, checksum, JSON, a plan validated
// against a model, and rows (fp32, zero-elided fp32, palettes, fp16) put into a feature store. The checksum
// is checked but not required to pass, so the fuzzer also reaches the JSON and plan validation
// behind it.
#include <cstdint>
#include <string>

#include "dist/runtime/executor.h"
#include "dist/runtime/protocol.h"
#include "models/zoo.h"
#include "tests/fuzz/frame_input.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(frame) {
  static const eb::Graph g = eb::models::build_synthetic("mobilenet_v1:0.25:32");
  try {
    const auto f = eb::test::split_frame(data, size);
    if (!f) return 0;
    try {
      eb::dist::verify_frame(data, f->json, f->payload, f->payload_len);
    } catch (const eb::dist::ProtocolError&) {
    }
    const eb::Json j = eb::Json::parse(f->json);
    if (f->h.type == eb::dist::MsgType::plan) eb::dist::plan_from_wire(j, g);
    if (f->h.type == eb::dist::MsgType::rows) {  // rows into a store: fp32, zero-elided, palettes, fp16
      eb::dist::FeatureStore s(g);
      s.put_wire(1, j, std::vector<uint8_t>(f->payload, f->payload + f->payload_len));
    }
  } catch (const std::exception&) {
  }
  return 0;
}
