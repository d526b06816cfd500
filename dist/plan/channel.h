// Time-variant wireless channel: a bandwidth trace (time -> Mbit/s), read from a file or made
// by a generator (Rayleigh block fading mapped to Shannon rate, or a two-state Markov on/off
// channel), applied by the built-in link shaping during real runs; and the host's live
// bandwidth estimate from the bytes and times of recent transfers.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace eb::dist {

struct BandwidthTrace {
  // Steps: rate mbit[i] holds from t_s[i] until t_s[i+1]; the trace repeats after its end.
  std::vector<double> t_s, mbit;
  double period_s = 0;  // length of one repetition
  double rate_mbit_at(double t) const;
  double mean_mbit() const;
};

// File format: one "TIME_S RATE_MBIT" pair per line (space, tab or comma), '#' comments,
// blank lines; times start at 0 and strictly increase; rates > 0. Anything else is an error
// naming the line. The last step lasts as long as the mean step.
BandwidthTrace parse_trace(const std::string& text, const std::string& what = "trace");
BandwidthTrace load_trace(const std::string& path);

// "rayleigh:mean=50,coherence=0.1,duration=60,seed=1": block fading, |h|^2 ~ Exp(1) per
//   coherence time, rate = mean * log2(1 + snr*|h|^2) / log2(1 + snr) with snr=10 (10 dB)
//   unless given, so the mean rate is close to `mean` Mbit/s and deep fades are rare but real.
// "markov:good=100,bad=5,p_gb=0.1,p_bg=0.3,step=0.1,duration=60,seed=1": on/off channel.
// A spec asking for more than max_steps steps is refused (the fuzzer lowers the bound).
BandwidthTrace make_channel(const std::string& spec, double max_steps = 1e6);

}  // namespace eb::dist
namespace eb {
class Json;
}
namespace eb::dist {
// A trace as the host sends it to workers in hello ({"t_s": [...], "mbit": [...], "elapsed_s"}),
// validated like a trace file; `epoch` is set so that both ends read the same trace time.
BandwidthTrace channel_from_wire(const Json& j, std::chrono::steady_clock::time_point& epoch);

// Exponentially weighted throughput estimate over completed transfers. Small transfers are
// latency-dominated and ignored (min_bytes), so the estimate tracks the link rate.
class BandwidthEstimator {
 public:
  explicit BandwidthEstimator(double initial_bits_per_s, double alpha = 0.3,
                              uint64_t min_bytes = 16384)
      : est_(initial_bits_per_s), alpha_(alpha), min_bytes_(min_bytes) {}
  void add(uint64_t bytes, double seconds);
  double bits_per_s() const { return est_; }
  int samples() const { return n_; }

 private:
  double est_, alpha_;
  uint64_t min_bytes_;
  int n_ = 0;
};

}  // namespace eb::dist
