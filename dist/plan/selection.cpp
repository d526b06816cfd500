#include "dist/plan/selection.h"

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

}  // namespace eb::dist
