// The two baselines HALP is measured against, top to bottom:
//
//   MoDNN (layer-wise): one block per layer; every device computes one band of each layer's
//          output rows in proportion to its speed; after every layer the host gathers all rows
//          and re-scatters each device's next input band with its halos
//          (Plan::gather_every_block; the transfers are built in simulate.cpp).
//   DPFP (fused-layer partition): the same proportional bands, but layers are fused into
//          blocks chosen by dynamic programming (best_blocks, planner.cpp) and only the halo
//          rows travel between blocks, relayed by the host (a star).
//
// Both may split leading FC layers of the tail by channels (with_best_tail); DPFP's plans are
// then refined by the local search, as HALP's are (planner.cpp, plan_all_devices).
#include "dist/plan/schedule.h"

namespace eb::dist::detail {

std::vector<std::vector<RowRange>> proportional_zones(int h, const std::vector<double>& speed) {
  std::vector<std::vector<RowRange>> z(speed.size());
  const std::vector<RowRange> r = split_rows(h, speed);
  for (size_t d = 0; d < speed.size(); ++d)
    if (!r[d].empty()) z[d].push_back(r[d]);
  return z;
}

Plan plan_modnn(const Graph& g, const Cluster& c, int batch) {
  std::vector<int> cuts = candidate_cuts(g);  // one block per layer
  return with_best_tail(g, c, plan_with_cuts(g, c, Scheme::modnn, cuts, 0, batch));
}

Plan plan_dpfp(const Graph& g, const Cluster& c, int batch) {
  return best_blocks(g, c, Scheme::dpfp, 0, batch);
}

}  // namespace eb::dist::detail
