// Internal to dist/plan (not installed): what the planner (planner.cpp), the simulator
// (simulate.cpp) and the two scheme files (halp.cpp, modnn_dpfp.cpp) share.
#pragma once
#include <utility>
#include <vector>

#include "dist/plan/planner.h"

namespace eb::dist::detail {

// --- planner.cpp --------------------------------------------------------------------------------
void validate(const Graph& g, const Cluster& c);
// Relative speed of each device: inverse of its time for the whole spatial part.
std::vector<double> speeds(const Graph& g, const Cluster& c);
// Splits as many leading FC layers of the tail as pay for their broadcast.
Plan with_best_tail(const Graph& g, const Cluster& c, Plan p);
// Local search on zone boundaries, HALP overlap toggles and tail slices, judged by simulate.
void refine(const Graph& g, const Cluster& c, Plan& p);

// --- simulate.cpp -------------------------------------------------------------------------------
// Into `own`: the owner of each row of the output of block b (b < 0: the input, all host's).
void owners(const Plan& p, const Graph& g, int b, std::vector<int>& own);
// Bytes on the wire for `rows` rows of node `node`'s output (-1: the input), in the form the
// runtime sends them: fp16, palettes (the input), zeros elided or raw fp32.
uint64_t rows_bytes(const Graph& g, const Cluster& c, int node, int rows);
// Predicted time of one device computing `zones` of block bp.
double zone_compute_ms(const Graph& g, const DeviceProfile& prof, const BlockPlan& bp,
                       const std::vector<RowRange>& zones);
// A copy of p for a local-search trial to change and simulate: the decisions only, not what
// simulate() remakes (transfers, timeline), whose copies were most of a trial's cost. p is
// left as it was.
Plan trial_of(Plan& p);

// --- modnn_dpfp.cpp -----------------------------------------------------------------------------
// MoDNN's and DPFP's zones: one band per device, in device order, rows in proportion to speed.
std::vector<std::vector<RowRange>> proportional_zones(int h, const std::vector<double>& speed);
Plan plan_modnn(const Graph& g, const Cluster& c, int batch);
Plan plan_dpfp(const Graph& g, const Cluster& c, int batch);

// --- halp.cpp -----------------------------------------------------------------------------------
std::vector<std::vector<RowRange>> halp_zones(int h, const std::vector<double>& speed,
                                              double host_share);
Plan plan_halp(const Graph& g, const Cluster& c, int batch);
// Edge-first: when rows `t` of a zone computed over [start, end) are ready to send.
double edge_first_ready(const Transfer& t, double start, double end, double zone_rows);
// An overlap block on device d: {start, end} of its compute.
std::pair<double, double> overlap_compute(const Graph& g, const DeviceProfile& prof,
                                          const BlockPlan& bp, int d, const std::vector<int>& own,
                                          double cpu_free, double halos_in);

}  // namespace eb::dist::detail
