// HALP, the host-assisted schedule (Li, Iosifidis, Zhang 2022), top to bottom. Paper -> code:
//
//   host              device 0 (Cluster::devices[0], the process that runs HostRuntime): holds
//                     the image, computes its own zones of every block, relays rows, runs the
//                     tail (global pooling, FC, softmax) except split FC slices.
//   secondaries       devices 1..n-1 (`edgeband worker`s). In the star they talk to the host only.
//   zone order        each block's output rows are cut into segments S1, H, S2, H, ..., Sk
//                     (k = n-1 secondaries; with one secondary: S1 then H): halp_zones().
//   overlap zones     the paper's name for the host's segments H, which lie between two
//                     secondaries' segments and cover the receptive-field overlap (the halos)
//                     between them, so every halo a secondary needs comes from the host in one
//                     hop. (Not BlockPlan::overlap, below, which overlaps compute with transfer.)
//   partition ratio   Plan::host_share: the fraction of each block's rows the host computes,
//                     split evenly over its k-1 zones; the secondaries share the rest in
//                     proportion to their speed. plan_halp() sweeps it 0..100% in 2% steps.
//   overlap blocks    BlockPlan::overlap: a device first computes the rows it can from rows it
//                     already holds while the halos are in flight, then the rest
//                     (overlap_compute(); executed by dist/runtime/executor.cpp compute_zones).
//                     Chosen per block where the simulator says it pays (choose_overlap()).
//   edge-first        Cluster::edge_first / Plan::edge_first: the rows others need are computed
//                     first and sent while the interior computes (edge_first_ready()). Off by
//                     default: measured slower (planner.h).
//
// Blocks come from the same dynamic program as DPFP (best_blocks, planner.cpp); the simulator
// (simulate.cpp) judges every choice; the local search (refine, planner.cpp) moves zone
// boundaries and toggles overlap blocks. At run time the host and every worker execute the
// plan's zones with the same per-image executor (dist/runtime/executor.h).
#include <algorithm>
#include <limits>

#include "dist/plan/schedule.h"

namespace eb::dist::detail {

// The zone order S1, H, S2, H, ..., Sk for a node with h output rows.
std::vector<std::vector<RowRange>> halp_zones(int h, const std::vector<double>& speed,
                                              double host_share) {
  const size_t n = speed.size();
  std::vector<std::vector<RowRange>> z(n);
  double sec_total = 0;
  for (size_t d = 1; d < n; ++d) sec_total += speed[d];
  const size_t k = n - 1, host_zones = k == 1 ? 1 : k - 1;
  std::vector<double> w;
  std::vector<int> owner;
  for (size_t d = 1; d < n; ++d) {
    w.push_back((1.0 - host_share) * speed[d] / sec_total);
    owner.push_back(int(d));
    if (d < n - 1 || k == 1) {
      w.push_back(host_share / double(host_zones));
      owner.push_back(0);
    }
  }
  const std::vector<RowRange> r = split_rows(h, w);
  for (size_t i = 0; i < r.size(); ++i)
    if (!r[i].empty()) {
      auto& dst = z[size_t(owner[i])];
      if (!dst.empty() && dst.back().end == r[i].begin)
        dst.back().end = r[i].end;  // merge adjacent host zones when a secondary got no rows
      else
        dst.push_back(r[i]);
    }
  return z;
}

namespace {
// HALP's overlap, block by block where the simulation says it pays: splitting a zone costs
// the layers' fixed costs again (Winograd weight streaming), hiding the halo wait saves time.
void choose_overlap(const Graph& g, const Cluster& c, Plan& p) {
  for (size_t b = 0; b < p.blocks.size(); ++b) {
    Plan trial = trial_of(p);
    trial.blocks[b].overlap = true;
    simulate(g, c, trial);
    if (trial.predicted_ms < p.predicted_ms) p = std::move(trial);
  }
}
}  // namespace

// The partition ratio and the overlap blocks. The DP assumes every block waits for its halos.
// Each block structure it finds is tried again with overlap blocks, at host shares around the
// one it was found at: hiding the waits favours thinner blocks and a share nearer the even split
// than the DP's choice.
Plan plan_halp(const Graph& g, const Cluster& c, int batch) {
  const Scheme s = Scheme::halp;
  Plan best;
  best.predicted_ms = std::numeric_limits<double>::infinity();
  struct Structure {
    std::vector<int> cuts;
    int share;  // in 2% steps: where the DP found it
  };
  std::vector<Structure> structures;
  for (int k = 0; k <= 50; ++k) {  // host share 0..100% in 2% steps
    const Plan p = best_blocks(g, c, s, k / 50.0, batch);
    if (p.predicted_ms < best.predicted_ms) best = p;
    std::vector<int> cuts;
    for (size_t b = 1; b < p.blocks.size(); ++b) cuts.push_back(p.blocks[b].first);
    if (std::none_of(structures.begin(), structures.end(),
                     [&](const Structure& x) { return x.cuts == cuts; }))
      structures.push_back({cuts, k});
  }
  // Each structure with overlap, from its own share down and up while the latency drops.
  std::vector<Plan> candidates;
  for (const Structure& st : structures) {
    auto at = [&](int k) {
      Plan p = plan_with_cuts(g, c, s, st.cuts, k / 50.0, batch);
      choose_overlap(g, c, p);
      return p;
    };
    Plan here = at(st.share);
    for (int dir : {-1, 1})
      for (int k = st.share + dir; k >= 0 && k <= 50; k += dir) {
        Plan p = at(k);
        if (p.predicted_ms >= here.predicted_ms) break;
        here = std::move(p);
      }
    candidates.push_back(with_best_tail(g, c, std::move(here)));
  }
  // The local search lands in different optima from different structures: it refines the
  // three best (all of them cost seconds per plan on MobileNet's many blocks).
  std::sort(candidates.begin(), candidates.end(),
            [](const Plan& a, const Plan& b) { return a.predicted_ms < b.predicted_ms; });
  if (candidates.size() > 3) candidates.resize(3);
  for (Plan& q : candidates) {
    refine(g, c, q);
    if (q.predicted_ms < best.predicted_ms) best = std::move(q);
  }
  return best;
}

// Edge-first: rows others need are computed before the interior of the zone, so a transfer of
// t.rows is ready after that fraction of the zone's compute.
double edge_first_ready(const Transfer& t, double start, double end, double zone_rows) {
  const double frac = std::min(1.0, double(t.rows.size()) / zone_rows);
  return start + frac * (end - start);
}

// An overlap block on device d: the rows computable from this device's own rows first (from
// when its CPU is free), the rest once the halos are in.
std::pair<double, double> overlap_compute(const Graph& g, const DeviceProfile& prof,
                                          const BlockPlan& bp, int d, const std::vector<int>& own,
                                          double cpu_free, double halos_in) {
  auto mine = [&](RowRange r) {
    for (int y = r.begin; y < r.end; ++y)
      if (own[size_t(y)] != d) return false;
    return true;
  };
  std::vector<RowRange> early, late;
  for (const RowRange& z : bp.zones[size_t(d)]) {
    const RowRange q = computable_rows(g, bp.first, bp.last, z, mine);
    if (q.empty()) {
      late.push_back(z);
      continue;
    }
    early.push_back(q);
    if (q.begin > z.begin) late.push_back({z.begin, q.begin});
    if (z.end > q.end) late.push_back({q.end, z.end});
  }
  const double st = cpu_free;
  const double mid = st + zone_compute_ms(g, prof, bp, early);
  const double en = late.empty() ? mid : std::max(mid, halos_in) + zone_compute_ms(g, prof, bp, late);
  return {st, en};
}

}  // namespace eb::dist::detail
