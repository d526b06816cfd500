// libFuzzer target: a worker's frame as the host reads it - header and JSON, then what the host
// takes from each reply: an error's message, or rows into its feature store with the compute
// spans and peak memory riding on them. The worker may be buggy or hostile; nothing it sends may
// reach an undefined conversion (a span at 1e300 us, a peak RSS of -1e19).
#include <cstdint>
#include <string>
#include <vector>

#include "dist/runtime/executor.h"
#include "dist/runtime/protocol.h"
#include "dist/runtime/reply.h"
#include "models/zoo.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(reply) {
  static const eb::Graph g = eb::models::build_synthetic("mobilenet_v1:0.25:32");
  if (size < eb::dist::kHeaderBytes) return 0;
  try {
    const eb::dist::FrameHeader h = eb::dist::decode_header(data);
    const size_t rest = size - eb::dist::kHeaderBytes;
    if (h.json_len > rest) return 0;
    const std::string text(reinterpret_cast<const char*>(data) + eb::dist::kHeaderBytes,
                           h.json_len);
    const eb::Json j = eb::Json::parse(text);
    if (h.type == eb::dist::MsgType::error) (void)eb::dist::error_text(j);
    if (h.type != eb::dist::MsgType::rows) return 0;
    std::vector<eb::dist::ComputeSpan> spans;
    eb::dist::read_spans(j, 1, h.request_id, h.request_id + 2, &spans);
    for (const eb::dist::ComputeSpan& s : spans)
      if (s.image < h.request_id || s.t1_us < s.t0_us) __builtin_trap();  // the reader's promise
    if (eb::dist::read_peak_rss_kb(j) < -1) __builtin_trap();
    const uint8_t* payload = data + eb::dist::kHeaderBytes + h.json_len;
    eb::dist::FeatureStore s(g);
    s.put_wire(h.request_id, j, std::vector<uint8_t>(payload, data + size));
  } catch (const std::exception&) {
  }
  return 0;
}
