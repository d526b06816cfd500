#include "dist/plan/channel.h"

#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>

#include "core/json.h"

namespace eb::dist {

double BandwidthTrace::rate_mbit_at(double t) const {
  if (mbit.empty()) throw std::logic_error("empty bandwidth trace");
  if (period_s > 0) t = std::fmod(std::max(0.0, t), period_s);
  size_t i = 0;
  while (i + 1 < t_s.size() && t_s[i + 1] <= t) ++i;
  return mbit[i];
}

double BandwidthTrace::mean_mbit() const {
  double sum = 0;
  for (size_t i = 0; i < mbit.size(); ++i) {
    const double end = i + 1 < t_s.size() ? t_s[i + 1] : period_s;
    sum += mbit[i] * (end - t_s[i]);
  }
  return period_s > 0 ? sum / period_s : 0;
}

static void finish(BandwidthTrace& tr, const std::string& what) {
  if (tr.t_s.empty()) throw std::invalid_argument(what + ": no samples");
  const double step = tr.t_s.size() > 1 ? tr.t_s.back() / double(tr.t_s.size() - 1) : 1.0;
  tr.period_s = tr.t_s.back() + step;
}

BandwidthTrace parse_trace(const std::string& text, const std::string& what) {
  BandwidthTrace tr;
  std::istringstream in(text);
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (const size_t h = line.find('#'); h != std::string::npos) line.resize(h);
    for (char& c : line)
      if (c == ',' || c == '\t' || c == '\r') c = ' ';
    std::istringstream ls(line);
    double t, r;
    std::string extra;
    if (!(ls >> t)) {
      if (line.find_first_not_of(' ') == std::string::npos) continue;  // blank
      throw std::invalid_argument(what + ":" + std::to_string(line_no) +
                                  ": expected 'TIME_S RATE_MBIT', got '" + line + "'");
    }
    if (!(ls >> r) || (ls >> extra))
      throw std::invalid_argument(what + ":" + std::to_string(line_no) +
                                  ": expected 'TIME_S RATE_MBIT', got '" + line + "'");
    if (!std::isfinite(t) || !std::isfinite(r) || r <= 0 || r > 1e6)
      throw std::invalid_argument(what + ":" + std::to_string(line_no) +
                                  ": rate must be in (0, 1e6] Mbit/s and time finite");
    if (tr.t_s.empty() ? t != 0 : t <= tr.t_s.back())
      throw std::invalid_argument(what + ":" + std::to_string(line_no) +
                                  ": times must start at 0 and strictly increase");
    tr.t_s.push_back(t);
    tr.mbit.push_back(r);
  }
  finish(tr, what);
  return tr;
}

BandwidthTrace load_trace(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::invalid_argument("cannot open trace file '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_trace(ss.str(), path);
}

BandwidthTrace make_channel(const std::string& spec, double max_steps) {
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  std::map<std::string, double> p;
  if (colon != std::string::npos) {
    std::istringstream in(spec.substr(colon + 1));
    for (std::string kv; std::getline(in, kv, ',');) {
      const size_t eq = kv.find('=');
      char* end = nullptr;
      const double v = eq == std::string::npos ? 0 : std::strtod(kv.c_str() + eq + 1, &end);
      if (eq == std::string::npos || end == kv.c_str() + eq + 1 || *end || !std::isfinite(v))
        throw std::invalid_argument("channel '" + spec + "': bad parameter '" + kv + "'");
      p[kv.substr(0, eq)] = v;
    }
  }
  auto get = [&](const char* k, double d) {
    auto it = p.find(k);
    const double v = it == p.end() ? d : it->second;
    p.erase(k);
    return v;
  };
  const double duration = get("duration", 60);
  const double seed_value = get("seed", 1);
  if (!(seed_value >= 0 && seed_value < 4294967296.0))
    throw std::invalid_argument("channel '" + spec + "': seed must be in [0, 2^32)");
  const auto seed = uint32_t(seed_value);
  std::mt19937 rng(seed);
  BandwidthTrace tr;
  if (kind == "rayleigh") {
    const double mean = get("mean", 50), tc = get("coherence", 0.1),
                 snr = std::pow(10.0, get("snr_db", 10) / 10);
    if (mean <= 0 || tc <= 0 || duration < tc || duration / tc > max_steps)
      throw std::invalid_argument("channel '" + spec +
                                  "': mean, coherence > 0, duration >= coherence, at most " +
                                  std::to_string(long(max_steps)) + " steps");
    std::exponential_distribution<double> fade(1.0);
    for (long i = 0; i < long(std::llround(duration / tc)); ++i) {  // integer steps: no drift
      tr.t_s.push_back(double(i) * tc);
      tr.mbit.push_back(std::max(0.01, mean * std::log2(1 + snr * fade(rng)) / std::log2(1 + snr)));
    }
  } else if (kind == "markov") {
    const double good = get("good", 100), bad = get("bad", 5), pgb = get("p_gb", 0.1),
                 pbg = get("p_bg", 0.3), step = get("step", 0.1);
    if (good <= 0 || bad <= 0 || step <= 0 || pgb < 0 || pgb > 1 || pbg < 0 || pbg > 1 ||
        duration < step || duration / step > max_steps)
      throw std::invalid_argument("channel '" + spec +
                                  "': rates and step > 0, probabilities in [0, 1], at most " +
                                  std::to_string(long(max_steps)) + " steps");
    std::uniform_real_distribution<double> u(0, 1);
    bool is_good = true;
    for (long i = 0; i < long(std::llround(duration / step)); ++i) {
      tr.t_s.push_back(double(i) * step);
      tr.mbit.push_back(is_good ? good : bad);
      is_good = is_good ? u(rng) >= pgb : u(rng) < pbg;
    }
  } else {
    throw std::invalid_argument("unknown channel '" + kind + "' (rayleigh:... or markov:...)");
  }
  if (!p.empty())
    throw std::invalid_argument("channel '" + spec + "': unknown parameter '" + p.begin()->first +
                                "'");
  finish(tr, spec);
  return tr;
}

void BandwidthEstimator::add(uint64_t bytes, double seconds) {
  if (bytes < min_bytes_ || !(seconds > 0)) return;
  const double sample = double(bytes) * 8.0 / seconds;
  est_ = n_ == 0 ? sample : (1 - alpha_) * est_ + alpha_ * sample;
  ++n_;
}

BandwidthTrace channel_from_wire(const Json& j, std::chrono::steady_clock::time_point& epoch) {
  const Json::Array &t = j.at("t_s").items("t_s"), &r = j.at("mbit").items("mbit");
  if (t.size() != r.size() || t.empty() || t.size() > 1000000)
    throw std::invalid_argument("channel: bad sample lists");
  std::string text;
  for (size_t i = 0; i < t.size(); ++i)
    text += std::to_string(t[i].number("t_s")) + " " + std::to_string(r[i].number("mbit")) + "\n";
  BandwidthTrace tr = parse_trace(text, "channel");
  const double elapsed = j.at("elapsed_s").number("elapsed_s");
  if (!(elapsed >= 0 && elapsed < 1e7)) throw std::invalid_argument("channel: bad elapsed_s");
  epoch = std::chrono::steady_clock::now() -
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
              std::chrono::duration<double>(elapsed));
  return tr;
}

}  // namespace eb::dist
