#include "dist/plan/selection.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace eb::dist {

size_t select_candidate(const std::vector<Candidate>& c, double deadline_ms, bool* meets) {
  if (c.empty()) throw std::invalid_argument("no candidate models");
  size_t best = c.size(), fastest = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c[i].predicted_ms < c[fastest].predicted_ms) fastest = i;
    if (c[i].predicted_ms <= deadline_ms &&
        (best == c.size() || c[i].accuracy > c[best].accuracy ||
         (c[i].accuracy == c[best].accuracy && c[i].predicted_ms < c[best].predicted_ms)))
      best = i;
  }
  if (meets) *meets = best != c.size();
  return best != c.size() ? best : fastest;
}

Plan best_plan(const Graph& g, const Cluster& c, int batch) {
  Plan best = make_plan(g, c, Scheme::local, batch);
  if (c.devices.size() < 2) return best;
  for (Scheme s : {Scheme::modnn, Scheme::dpfp, Scheme::halp}) {
    Plan p = make_plan(g, c, s, batch);
    if (p.predicted_ms < best.predicted_ms) best = std::move(p);
  }
  return best;
}

Predictions predict(const std::vector<ModelOption>& options, const Cluster& shape, int batch) {
  Predictions p;
  for (const ModelOption& o : options) {
    if (!o.graph || o.devices.empty())
      throw std::invalid_argument("candidate " + o.model + ": no graph or no device profile");
    p.plans.push_back(best_plan(*o.graph, o.on(shape), batch));
    const Plan& plan = p.plans.back();
    p.candidates.push_back({o.model, o.accuracy, plan.predicted_ms, plan.scheme});
  }
  return p;
}

const Predictions& PredictionMemo::predict(const std::vector<ModelOption>& options, Cluster shape,
                                           int batch) {
  const long step = std::lround(std::log(std::max(shape.link.bits_per_s, 1.0)) / std::log(1.1));
  shape.link.bits_per_s = std::pow(1.1, double(step));
  std::vector<long> key{step, batch};
  for (const ModelOption& o : options) key.insert(key.end(), {long(o.devices.size()), long(o.input_levels)});
  auto it = memo_.find(key);
  if (it == memo_.end()) it = memo_.emplace(key, dist::predict(options, shape, batch)).first;
  return it->second;
}

namespace {
std::string num(double v, bool fixed) {  // 41.2 (fixed), or 50 / 12.5 (%g)
  char s[64];
  std::snprintf(s, sizeof s, fixed ? "%.1f" : "%g", v);
  return s;
}
// "NAME predicted 41.2 ms (halp)"
std::string predicted(const Candidate& c) {
  return c.model + " predicted " + num(c.predicted_ms, true) + " ms (" + scheme_name(c.scheme) +
         ")";
}
}  // namespace

Choice choose(const std::vector<Candidate>& c, double deadline_ms) {
  Choice ch;
  ch.index = select_candidate(c, deadline_ms, &ch.meets);
  const Candidate& x = c[ch.index];
  const std::string top1 = num(x.accuracy, true) + "% top-1";
  if (!ch.meets) {
    ch.reason = "no candidate is predicted to meet the " + num(deadline_ms, false) +
                " ms deadline: " + predicted(x) + " is the fastest, " + top1;
    return ch;
  }
  // The next more accurate candidate, if any (every more accurate one is predicted to miss).
  const Candidate* above = nullptr;
  for (const Candidate& y : c)
    if (y.accuracy > x.accuracy && (!above || y.accuracy < above->accuracy)) above = &y;
  ch.reason = x.model + ": " + top1 + ", predicted " + num(x.predicted_ms, true) + " ms (" +
              scheme_name(x.scheme) + ") <= " + num(deadline_ms, false) + " ms deadline; " +
              (above ? "the more accurate " + predicted(*above) : "the most accurate candidate");
  return ch;
}

Selection select_model(const std::vector<ModelOption>& options, const Cluster& shape,
                       double deadline_ms, int batch) {
  Predictions p = predict(options, shape, batch);
  Selection s;
  s.choice = choose(p.candidates, deadline_ms);
  s.candidate = p.candidates[s.choice.index];
  s.plan = std::move(p.plans[s.choice.index]);
  return s;
}

}  // namespace eb::dist
