// libFuzzer target: a HELLO's params as a worker reads them before (and during) authentication:
// check_params' range checks, then what the worker builds from params that pass - the emulated
// link (parse_link) and the time-variant channel (channel_from_wire), each used once as the
// peer's pacing uses it. Values that pass the checks must never reach undefined conversions.
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/json.h"
#include "dist/plan/channel.h"
#include "dist/plan/link.h"
#include "dist/runtime/handshake.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(hello) {
  try {
    const eb::Json p = eb::Json::parse(std::string(reinterpret_cast<const char*>(data), size));
    eb::dist::check_params(p);
    if (p.has("link") && !p.at("link").is_null()) {
      const eb::dist::LinkModel l = eb::dist::parse_link(p.at("link").string("link"));
      const auto pace = std::chrono::duration<double>(l.transfer_s(1 << 20) + l.latency_s);
      (void)std::chrono::duration_cast<std::chrono::nanoseconds>(pace);
    }
    if (p.has("channel")) {
      auto epoch = std::chrono::steady_clock::now();
      const eb::dist::BandwidthTrace t = eb::dist::channel_from_wire(p.at("channel"), epoch);
      (void)t.rate_mbit_at(0.5);
      (void)t.rate_mbit_at(1e9);
      (void)t.mean_mbit();
    }
  } catch (const std::exception&) {
  }
  return 0;
}
