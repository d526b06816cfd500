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
#include "tests/fuzz/frame_input.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(reply) {
  static const eb::Graph g = eb::models::build_synthetic("mobilenet_v1:0.25:32");
  try {
    const auto f = eb::test::split_frame(data, size);
    if (!f) return 0;
    const eb::dist::FrameHeader& h = f->h;
    const eb::Json j = eb::Json::parse(f->json);
    if (h.type == eb::dist::MsgType::error) (void)eb::dist::error_text(j);
    if (h.type != eb::dist::MsgType::rows) return 0;
    std::vector<eb::dist::ComputeSpan> spans;
    eb::dist::read_spans(j, 1, h.request_id, h.request_id + 2, &spans);
    for (const eb::dist::ComputeSpan& s : spans)
      if (s.image < h.request_id || s.t1_us < s.t0_us) __builtin_trap();  // the reader's promise
    if (eb::dist::read_peak_rss_kb(j) < -1) __builtin_trap();
    eb::dist::FeatureStore s(g);
    s.put_wire(h.request_id, j, std::vector<uint8_t>(f->payload, f->payload + f->payload_len));
  } catch (const std::exception&) {
  }
  return 0;
}
