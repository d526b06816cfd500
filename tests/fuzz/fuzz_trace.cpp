// libFuzzer target: bandwidth trace files and --channel specs (the first byte picks which), and
// the trace's rate lookups. Channel specs are held to 4096 steps: a million-step channel is
// generated, not parsed, and at ~2,000 of them per second the parser got few executions.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "dist/plan/channel.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(trace) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    const eb::dist::BandwidthTrace t =
        data[0] % 2 ? eb::dist::make_channel(text, 4096) : eb::dist::parse_trace(text);
    t.mean_mbit();
    t.rate_mbit_at(0.5 * t.period_s);
    t.rate_mbit_at(3.5 * t.period_s + 1e-3);
  } catch (const std::invalid_argument&) {
  } catch (const std::runtime_error&) {
  }
  return 0;
}
