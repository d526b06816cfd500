// The planner: blocks, zones, the DP over block cuts, the local search, split FC layers, idle
// devices, and plans as JSON. The schemes' own parts are in halp.cpp (HALP) and modnn_dpfp.cpp
// (MoDNN, DPFP); the timeline simulator and stage costs in simulate.cpp.
#include "dist/plan/planner.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "core/compute_hook.h"
#include "dist/plan/memory.h"
#include "dist/plan/schedule.h"

namespace eb::dist {

const char* scheme_name(Scheme s) {
  switch (s) {
    case Scheme::local: return "local";
    case Scheme::modnn: return "modnn";
    case Scheme::dpfp: return "dpfp";
    case Scheme::halp: return "halp";
  }
  return "?";
}

Scheme parse_scheme(const std::string& s) {
  for (Scheme x : {Scheme::local, Scheme::modnn, Scheme::dpfp, Scheme::halp})
    if (s == scheme_name(x)) return x;
  throw std::invalid_argument("unknown scheme '" + s + "' (expected local, modnn, dpfp or halp)");
}

std::vector<RowRange> split_rows(int h, const std::vector<double>& w) {
  double total = 0;
  for (double x : w) total += std::max(0.0, x);
  std::vector<RowRange> out(w.size());
  if (total <= 0) throw std::invalid_argument("split_rows: no positive weight");
  double acc = 0;
  int prev = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    acc += std::max(0.0, w[i]);
    const int end = i + 1 == w.size() ? h : int(std::lround(acc / total * h));
    out[i] = {prev, std::max(prev, end)};
    prev = out[i].end;
  }
  return out;
}

RowRange computable_rows(const Graph& g, int first, int last, RowRange want,
                         const std::function<bool(RowRange)>& have) {
  RowRange q = want;
  while (!q.empty()) {
    const RowRange need = g.block_input_rows(first, last, q);
    if (need.empty() || have(need)) break;
    const bool lo = have({need.begin, need.begin + 1}), hi = have({need.end - 1, need.end});
    if (lo && hi) return {want.begin, want.begin};  // a hole inside: wait for everything
    if (!lo) ++q.begin;
    if (!hi && q.end > q.begin) --q.end;
  }
  const int gr = std::max(1, g.node(last - 1).layer->row_granule());
  if (q.begin != want.begin) q.begin = (q.begin + gr - 1) / gr * gr;
  if (q.end != want.end) q.end = q.end / gr * gr;
  if (q.end <= q.begin) return {want.begin, want.begin};
  return q;
}

std::vector<int> candidate_cuts(const Graph& g) {
  std::vector<int> c;
  for (int i = 1, end = g.spatial_end(); i < end; ++i)
    if (g.is_cut(i)) c.push_back(i);
  return c;
}

void Cluster::set_worker_links(const std::vector<LinkModel>& l, size_t workers) {
  links.clear();
  if (l.size() == 1) {
    link = l[0];
    return;
  }
  if (l.empty() || l.size() != workers)
    throw std::invalid_argument("give one link, or one per worker (" + std::to_string(workers) +
                                ") separated by '/'");
  link = l[0];
  for (const LinkModel& x : l)
    link.bits_per_s = std::min(link.bits_per_s, x.bits_per_s),
    link.latency_s = std::max(link.latency_s, x.latency_s);
  links.push_back(link);  // the host's own entry: never used (no transfer stays on the host)
  links.insert(links.end(), l.begin(), l.end());
}

void Cluster::set_memory(const std::string& spec) {
  std::vector<double> mb;
  size_t at = 0;
  for (;;) {
    const size_t comma = spec.find(',', at);
    mb.push_back(parse_memory_mb(spec.substr(at, comma == std::string::npos ? comma : comma - at)));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  if (mb.size() != 1 && mb.size() != devices.size())
    throw std::invalid_argument("--memory: give one size, or one per device (" +
                                std::to_string(devices.size()) + ")");
  for (size_t d = 0; d < devices.size(); ++d) devices[d].memory_mb = mb[mb.size() == 1 ? 0 : d];
}

namespace detail {

void validate(const Graph& g, const Cluster& c) {
  if (c.devices.empty()) throw std::invalid_argument("a plan needs at least one device");
  if (c.devices.size() > kMaxPlanDevices)
    throw std::invalid_argument("a plan spans at most " + std::to_string(kMaxPlanDevices) +
                                " devices, not " + std::to_string(c.devices.size()));
  for (const DeviceProfile& d : c.devices)
    if (int(d.layers.size()) != g.size())
      throw std::invalid_argument("profile '" + d.name + "' does not match model " + g.model);
  if (!c.links.empty() && c.links.size() != c.devices.size())
    throw std::invalid_argument("give one link for all devices or one per device");
  for (size_t d = 0; d < c.devices.size(); ++d)
    if (!(c.link_to(int(d)).bits_per_s > 0) || !(c.link_to(int(d)).latency_s >= 0))
      throw std::invalid_argument("link rate must be positive and latency non-negative");
  if (c.input_levels < 0 || uint64_t(c.input_levels) > kPaletteMaxLevels)
    throw std::invalid_argument("input levels must be in [0, 256]");
  if (g.spatial_end() == 0) throw std::invalid_argument("model has no spatial layers to split");
}

// Relative speed of each device: inverse of its time for the whole spatial part.
std::vector<double> speeds(const Graph& g, const Cluster& c) {
  std::vector<double> s;
  for (const DeviceProfile& d : c.devices) {
    double t = 0;
    for (int i = 0, end = g.spatial_end(); i < end; ++i) t += d.band_ms(g, i, {0, g.shape_of(i).h});
    s.push_back(1.0 / std::max(t, 1e-9));
  }
  return s;
}

// A block's zones as segments in row order: (device, rows).
std::vector<std::pair<int, RowRange>> segments_of(const BlockPlan& bp) {
  std::vector<std::pair<int, RowRange>> seg;
  for (size_t d = 0; d < bp.zones.size(); ++d)
    for (const RowRange& r : bp.zones[d]) seg.push_back({int(d), r});
  std::sort(seg.begin(), seg.end(),
            [](const auto& a, const auto& b) { return a.second.begin < b.second.begin; });
  return seg;
}

// The inverse: a block's zones from segments in row order, empty ones dropped and a device's
// adjacent ones merged.
void set_segments(BlockPlan& bp, const std::vector<std::pair<int, RowRange>>& seg) {
  for (auto& dz : bp.zones) dz.clear();
  for (const auto& [d, r] : seg) {
    if (r.empty()) continue;
    auto& dz = bp.zones[size_t(d)];
    if (!dz.empty() && dz.back().end == r.begin)
      dz.back().end = r.end;
    else
      dz.push_back(r);
  }
}

}  // namespace detail

using detail::refine;
using detail::speeds;
using detail::validate;
using detail::with_best_tail;

namespace {
// Output zones of a node with h rows for the scheme's row shares.
std::vector<std::vector<RowRange>> zones_for(Scheme s, int h, const std::vector<double>& speed,
                                             double host_share) {
  if (s == Scheme::local || speed.size() == 1) {
    std::vector<std::vector<RowRange>> z(speed.size());
    z[0].push_back({0, h});
    return z;
  }
  if (s == Scheme::halp) return detail::halp_zones(h, speed, host_share);
  return detail::proportional_zones(h, speed);
}

// Rows of node last-1 that cover whole tiles of the block's last Winograd layer (6-, 4- or 2-row
// tiles at fixed positions, so that outputs equal the local run's): its granule divided by the
// downsampling after it (2 after a 2x2 pool), or 1 where that does not divide. A zone boundary
// inside a tile makes both devices compute the whole tile. A halo through an overlapping kernel
// after it still costs a neighbour rows; the simulator judges the result.
int block_granule(const Graph& g, int first, int last) {
  const int h_out = g.shape_of(last - 1).h;
  for (int n = last - 1; n >= first; --n) {
    const int gr = g.node(n).layer->row_granule();
    if (gr <= 1) continue;
    const int h = g.shape_of(n).h;
    if (h_out <= 0 || h % h_out != 0) return 1;
    const int r = h / h_out;
    return gr % r == 0 ? gr / r : 1;
  }
  return 1;
}

// Every zone boundary of a block moved to the nearest multiple of `gr` (down where up would
// reach the last row), or none where that would leave a segment empty.
void snap_zones(BlockPlan& bp, int h, int gr) {
  if (gr <= 1) return;
  std::vector<std::pair<int, RowRange>> seg = detail::segments_of(bp);
  for (size_t i = 0; i + 1 < seg.size(); ++i) {
    int x = (seg[i].second.end + gr / 2) / gr * gr;
    if (x >= h) x = seg[i].second.end / gr * gr;
    seg[i].second.end = seg[i + 1].second.begin = x;
  }
  for (const auto& s : seg)
    if (s.second.empty()) return;
  detail::set_segments(bp, seg);
}

// The blocks and zones of a plan, not yet simulated. `sp`: speeds(g, c), which the DP
// computes once for its thousands of candidates; its callers have validated g and c.
Plan plan_structure(const Graph& g, const Cluster& c, Scheme s, const std::vector<int>& cuts,
                    double host_share, int batch, const std::vector<double>& sp) {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1");
  Plan p;
  p.scheme = s;
  p.devices = s == Scheme::local ? 1 : int(c.devices.size());
  p.batch = batch;
  p.gather_every_block = s == Scheme::modnn;
  p.edge_first = s == Scheme::halp && c.edge_first;
  p.host_share = s == Scheme::halp ? host_share : 0;
  p.tail_first = g.spatial_end();
  const std::vector<double> used(sp.begin(), sp.begin() + p.devices);
  int first = 0;
  std::vector<int> all = cuts;
  all.push_back(p.tail_first);
  for (int last : all) {
    if (last <= first || last > p.tail_first || (last < p.tail_first && !g.is_cut(last)))
      throw std::invalid_argument("invalid block cut " + std::to_string(last));
    BlockPlan bp;
    bp.first = first;
    bp.last = last;
    bp.zones = zones_for(s, g.shape_of(last - 1).h, used, host_share);
    if (c.tile_aligned_zones) snap_zones(bp, g.shape_of(last - 1).h, block_granule(g, first, last));
    p.blocks.push_back(bp);
    first = last;
  }
  return p;
}
}  // namespace

Plan plan_with_cuts(const Graph& g, const Cluster& c, Scheme s, const std::vector<int>& cuts,
                    double host_share, int batch) {
  validate(g, c);  // before speeds(), which reads every profile
  Plan p = plan_structure(g, c, s, cuts, host_share, batch, speeds(g, c));
  simulate(g, c, p);
  return p;
}

// DP over block boundaries minimising staged_cost. Row shares are fixed per scheme, so who owns
// the rows entering a block depends only on where it starts: stage costs depend on (start, end).
Plan best_blocks(const Graph& g, const Cluster& c, Scheme s, double host_share, int batch) {
  std::vector<int> pos{0};
  for (int x : candidate_cuts(g)) pos.push_back(x);
  pos.push_back(g.spatial_end());
  const size_t m = pos.size();
  validate(g, c);
  const std::vector<double> sp = speeds(g, c);
  // Cost of block [pos[i], pos[j]) (plus the gather and tail when it is the last block):
  // a plan whose first block only places the rows of node pos[i]-1.
  auto block_cost = [&](size_t i, size_t j) {
    std::vector<int> cuts;
    if (i > 0) cuts.push_back(pos[i]);
    if (j + 1 < m) cuts.push_back(pos[j]);
    // Only its stage costs matter here: no timeline simulation.
    const Plan p = plan_structure(g, c, s, cuts, host_share, 1, sp);
    double v = stage_cost(g, c, p, i > 0 ? 1 : 0);
    if (j + 1 == m) v += stage_cost(g, c, p, p.blocks.size());
    return v;
  };
  std::vector<double> best(m, std::numeric_limits<double>::infinity());
  std::vector<size_t> from(m, 0);
  best[0] = 0;
  for (size_t j = 1; j < m; ++j)
    for (size_t i = 0; i < j; ++i) {
      const double v = best[i] + block_cost(i, j);
      if (v < best[j]) {
        best[j] = v;
        from[j] = i;
      }
    }
  std::vector<int> cuts;
  for (size_t j = from[m - 1]; j > 0; j = from[j]) cuts.push_back(pos[j]);
  std::reverse(cuts.begin(), cuts.end());
  return plan_with_cuts(g, c, s, cuts, host_share, batch);
}

namespace detail {
// Local search on the zone boundaries with the simulator as the judge. The share sweep places
// every block's boundaries from one global host share, but the waits differ per block: a device
// that would wait for halos anyway can give rows away, one on the critical path should. Moves
// one boundary at a time by a few rows (or toggles a HALP block's overlap) while the predicted
// latency drops.
namespace {
void refine_boundaries(const Graph& g, const Cluster& c, Plan& p, bool toggle_overlap) {
  for (int pass = 0; pass < 100; ++pass) {  // every pass but the last gains
    bool improved = false;
    auto keep_if_faster = [&](Plan& trial) {
      simulate(g, c, trial);
      if (trial.predicted_ms >= p.predicted_ms - 1e-9) return false;
      p = std::move(trial);
      return improved = true;
    };
    for (size_t b = 0; b < p.blocks.size(); ++b) {
      for (size_t i = 0;; ++i) {
        std::vector<std::pair<int, RowRange>> seg = segments_of(p.blocks[b]);
        if (i + 1 >= seg.size()) break;
        const RowRange lo = seg[i].second, hi = seg[i + 1].second;
        for (int x : {lo.end + 1, lo.end - 1, lo.end + 2, lo.end - 2, lo.end + 4, lo.end - 4,
                      lo.begin, hi.end}) {
          // Also either segment's whole removal: a band thinner than a Winograd tile costs
          // the whole tile on each device that holds a part of it.
          if (x < lo.begin || x > hi.end || x == lo.end) continue;
          Plan trial = trial_of(p);
          std::vector<std::pair<int, RowRange>> moved = seg;
          moved[i].second.end = moved[i + 1].second.begin = x;
          set_segments(trial.blocks[b], moved);
          if (keep_if_faster(trial)) break;
        }
      }
    }
    // HALP's overlap per block (its gain depends on the boundaries).
    for (size_t b = 0; toggle_overlap && p.scheme == Scheme::halp && b < p.blocks.size(); ++b) {
      Plan trial = trial_of(p);
      trial.blocks[b].overlap = !trial.blocks[b].overlap;
      keep_if_faster(trial);
    }
    // The split tail layers' channel slices, in whole 64-channel units.
    for (size_t j = 0; j < p.tail_slices.size(); ++j)
      for (size_t d = 0; d + 1 < p.tail_slices[j].size(); ++d)
        for (int step : {64, -64, 128, -128}) {
          const ChannelSlice a = p.tail_slices[j][d], b = p.tail_slices[j][d + 1];
          const int x = a.end + step;
          if (a.empty() || b.empty() || x <= a.begin || x >= b.end) continue;
          Plan trial = trial_of(p);
          trial.tail_slices[j][d].end = trial.tail_slices[j][d + 1].begin = x;
          if (keep_if_faster(trial)) break;
        }
    if (!improved) break;
  }
}

}  // namespace

// Boundaries first, then overlap toggles too: toggles taken early steer the boundary search
// into worse optima (measured on VGG-16), and the second round never loses what the first found.
void refine(const Graph& g, const Cluster& c, Plan& p) {
  refine_boundaries(g, c, p, false);
  refine_boundaries(g, c, p, true);
}

Plan with_best_tail(const Graph& g, const Cluster& c, Plan p) {
  Plan best_p = p;
  for (int k = 1; k <= splittable_tail(g); ++k) {
    split_tail(g, c, p, k);
    if (p.predicted_ms < best_p.predicted_ms) best_p = p;
  }
  return best_p;
}
}  // namespace detail

int splittable_tail(const Graph& g) {
  int k = 0;
  for (int n = g.spatial_end(); n < g.size(); ++n, ++k) {
    const Node& nd = g.node(n);
    if (!nd.layer->splits_channels() || nd.inputs.size() != 1 || nd.inputs[0] != n - 1 ||
        nd.layer->output_shape().h != 1)
      break;
  }
  return k;
}

void split_tail(const Graph& g, const Cluster& c, Plan& p, int k) {
  if (k < 0 || k > splittable_tail(g)) throw std::invalid_argument("tail layers cannot be split");
  p.split_tail = p.devices > 1 ? k : 0;
  p.tail_slices.clear();
  const std::vector<double> sp = speeds(g, c);
  const std::vector<double> used(sp.begin(), sp.begin() + p.devices);
  for (int j = 0; j < p.split_tail; ++j) {
    // Slices in units of 64 channels: whole SIMD panels on every ISA.
    const int out = g.shape_of(p.tail_first + j).c, units = (out + 63) / 64;
    std::vector<ChannelSlice> sl;
    for (const RowRange& u : split_rows(units, used))
      sl.push_back({std::min(out, u.begin * 64), std::min(out, u.end * 64)});
    p.tail_slices.push_back(sl);
  }
  simulate(g, c, p);
}

namespace {
// The devices `keep` of c (keep[0] == 0: the host), with their links.
Cluster sub_cluster(const Cluster& c, const std::vector<size_t>& keep) {
  Cluster sub = c;
  sub.devices.clear();
  sub.links.clear();
  for (size_t d : keep) {
    sub.devices.push_back(c.devices[d]);
    if (!c.links.empty()) sub.links.push_back(c.links[d]);
  }
  return sub;
}

// Whether a layer of the spatial part computes rows in tiles (Winograd): zones may then snap.
bool has_row_tiles(const Graph& g) {
  for (int n = 0, end = g.spatial_end(); n < end; ++n)
    if (g.node(n).layer->row_granule() > 1) return true;
  return false;
}

// The scheme's plan from zones at the speed shares and, where the model has Winograd layers,
// from zones snapped to whole tiles, whichever is predicted faster. Snapping saves recomputed
// tiles (VGG-16, 3 devices, predicted: DPFP -12% at 100 Mbit/s, MoDNN -12% at 1 Gbit/s), but
// can leave too few tiles to balance (HALP on 4 devices keeps the speed shares).
Plan plan_scheme(const Graph& g, const Cluster& c, Scheme s, int batch) {
  auto plan = [&](const Cluster& cl) {
    return s == Scheme::modnn ? detail::plan_modnn(g, cl, batch)
           : s == Scheme::dpfp ? detail::plan_dpfp(g, cl, batch)
                               : detail::plan_halp(g, cl, batch);
  };
  Cluster loose = c, aligned = c;
  loose.tile_aligned_zones = false;
  aligned.tile_aligned_zones = true;
  Plan best = plan(loose);
  if (!has_row_tiles(g)) return best;
  Plan snapped = plan(aligned);
  if (snapped.predicted_ms < best.predicted_ms) best = std::move(snapped);
  return best;
}

// A batch with at least an image per device: `rounds` rounds of one whole image per device
// (the host's first, so that it sends the others their images before it computes), then the
// rest split as p. The split plan keeps p's pipelining of its own images.
Plan with_whole_images(const Graph& g, const Cluster& c, Plan p, int rounds) {
  const size_t n = size_t(p.devices);
  Plan split = p;
  split.batch = 1;
  split.timeline.clear();  // the batch's timeline is p's; each image plan holds its structure only
  p.image_plans.clear();
  for (size_t i = 0; i < size_t(p.batch); ++i)
    p.image_plans.push_back(i < size_t(rounds) * n ? whole_image_plan(g, split, int(i % n)) : split);
  simulate(g, c, p);
  return p;
}

// `rounds` rounds of whole images as above, and the one image left over pipelined
// (pipelined_image_plan) rather than split. It is listed after the deep device's whole images and
// before the others', so that it reaches the early devices first and the deep one last. The
// deep device, the cut (anywhere, added to p's block cuts) and the early devices' zones (their
// own plan at a few host shares, with and without tile-aligned zones) are chosen by simulating
// the batch. No plan (predicted_ms infinite) where another count of images is left over.
Plan with_pipelined_image(const Graph& g, const Cluster& c, const Plan& p, int rounds) {
  const int n = p.devices;
  Plan best;
  best.predicted_ms = std::numeric_limits<double>::infinity();
  if (p.scheme == Scheme::modnn || n < 2 || p.batch != rounds * n + 1 || splittable_tail(g) == 0) return best;
  std::vector<int> block_cuts;
  for (size_t b = 1; b < p.blocks.size(); ++b) block_cuts.push_back(p.blocks[b].first);
  // The early zones' variants: HALP's host share around an even one (DPFP ignores it; with two
  // devices the host computes them alone), tile-aligned or not where the model has tiles.
  std::vector<double> shares{1.0};
  if (p.scheme == Scheme::halp && n > 2) shares = {0.7, 0.85, 1.0, 1.15};
  std::vector<bool> alignments{false};
  if (has_row_tiles(g) && n > 2) alignments.push_back(true);
  for (int deep = 1; deep < n; ++deep) {
    std::vector<size_t> keep;
    for (int d = 0; d < n; ++d)
      if (d != deep) keep.push_back(size_t(d));
    Cluster sub = sub_cluster(c, keep);
    for (int at : candidate_cuts(g)) {
      std::vector<int> cuts = block_cuts;
      if (std::find(cuts.begin(), cuts.end(), at) == cuts.end()) cuts.push_back(at);
      std::sort(cuts.begin(), cuts.end());
      const int cut = int(std::find(cuts.begin(), cuts.end(), at) - cuts.begin()) + 1;  // a block index
      for (bool aligned : alignments)
        for (double share : shares) {
          sub.tile_aligned_zones = aligned;
          const Plan early =
              embed_plan(g, c, plan_with_cuts(g, sub, p.scheme, cuts, share / double(n - 1)), keep);
          const Plan piped = pipelined_image_plan(g, early, cut, deep);
          Plan q = piped;
          q.batch = p.batch;
          for (int r = 0; r < rounds; ++r) q.image_plans.push_back(whole_image_plan(g, early, deep));
          q.image_plans.push_back(piped);
          for (int d = 0; d < n; ++d)
            for (int r = 0; r < rounds && d != deep; ++r) q.image_plans.push_back(whole_image_plan(g, early, d));
          simulate(g, c, q);
          if (q.predicted_ms < best.predicted_ms) best = std::move(q);
        }
    }
  }
  return best;
}

// The split plan p, or whole images and the rest split (or the first of the rest pipelined)
// where that is predicted faster and every board still fits its memory (a whole image needs
// the whole model on each device).
Plan with_whole_images(const Graph& g, const Cluster& c, Plan p) {
  if (p.devices < 2 || p.batch < p.devices) return p;
  Plan best = p;
  // A worker holds at most kMaxWholeImages inputs at once (they leave the host together), and
  // two split images (one ahead), well inside its in-flight limit (worker.cpp).
  for (int r = 1; r <= std::min(p.batch / p.devices, kMaxWholeImages); ++r)
    for (Plan q : {with_whole_images(g, c, p, r), with_pipelined_image(g, c, p, r)})
      if (q.predicted_ms < best.predicted_ms && memory_shortfall(g, c, q).device < 0) best = std::move(q);
  return best;
}

// The best plan of a scheme that gives every device of c rows (or the host alone).
Plan plan_all_devices(const Graph& g, const Cluster& c, Scheme s, int batch) {
  if (s == Scheme::local || c.devices.size() == 1) return plan_with_cuts(g, c, Scheme::local, {}, 1.0, batch);
  if (s == Scheme::modnn) return plan_scheme(g, c, s, batch);
  Plan local = plan_with_cuts(g, c, Scheme::local, {}, 1.0, batch);
  Plan best = plan_scheme(g, c, s, batch);
  // On links too slow to pay off, fall back to the host alone (reported as this scheme).
  best = with_best_tail(g, c, best);
  refine(g, c, best);
  if (batch > 1) {
    // The searches above start from plans shaped for batches; the best single-image plan,
    // pipelined, may beat them.
    Plan one = plan_all_devices(g, c, s, 1);
    if (one.devices == best.devices) {
      one.batch = batch;
      simulate(g, c, one);
      refine(g, c, one);
      if (one.predicted_ms < best.predicted_ms) best = std::move(one);
    }
  }
  // Before the fallback: on a link too slow to split over, whole images may still pay.
  best = with_whole_images(g, c, std::move(best));
  if (local.predicted_ms <= best.predicted_ms || best.bytes == 0) {
    local.scheme = s;
    return local;
  }
  return best;
}

}  // namespace

Plan embed_plan(const Graph& g, const Cluster& c, Plan sub, const std::vector<size_t>& keep) {
  const size_t n = c.devices.size();
  for (BlockPlan& bp : sub.blocks) {
    std::vector<std::vector<RowRange>> z(n);
    for (size_t i = 0; i < keep.size(); ++i) z[keep[i]] = std::move(bp.zones[i]);
    bp.zones = std::move(z);
  }
  for (auto& sl : sub.tail_slices) {
    std::vector<ChannelSlice> t(n);
    for (size_t i = 0; i < keep.size(); ++i) t[keep[i]] = sl[i];
    sl = std::move(t);
  }
  sub.devices = int(n);
  for (Plan& ip : sub.image_plans) {
    ip = embed_plan(g, c, std::move(ip), keep);
    ip.timeline.clear();
  }
  simulate(g, c, sub);
  return sub;
}

namespace {
// Moves channels of the split FC layers off the workers over their memory budget: a slice of
// VGG-16's fc6 (411 MB in all) decides whether a board fits, and shrinking it costs less than
// leaving the board idle. They go to the device with the most room (no budget: unlimited; the
// host first among equals) among the host and the devices that hold channels already, so that
// a device the plan left idle stays idle, and never past its own budget. Slices stay
// contiguous, in device order, in 64-channel units (split_tail's).
Plan fit_tail_to_memory(const Graph& g, const Cluster& c, Plan p) {
  constexpr double kMb = 1024.0 * 1024.0;
  if (!p.image_plans.empty()) return p;  // kept only where every board fits (with_whole_images)
  bool moved = false;
  for (int round = 0; round < 4 * p.devices && p.split_tail > 0; ++round) {
    const std::vector<DeviceMemory> m = predict_memory(g, c, p);
    // The worker furthest over its budget that still holds channels to give.
    size_t over = 0;
    double excess = 0;
    for (size_t d = 1; d < m.size() && d < c.devices.size(); ++d) {
      const double have = c.devices[d].memory_mb, x = m[d].total_mb - have;
      bool holds = false;
      for (int j = 0; j < p.split_tail; ++j) holds = holds || p.tail_slices[size_t(j)][d].size() >= 64;
      if (have > 0 && x > excess && holds) over = d, excess = x;
    }
    if (over == 0) break;
    size_t to = 0;
    double room = -1;
    for (size_t d = 0; d < m.size() && d < c.devices.size(); ++d) {
      bool holds = d == 0;
      for (int j = 0; j < p.split_tail; ++j) holds = holds || !p.tail_slices[size_t(j)][d].empty();
      const double have = c.devices[d].memory_mb, r = have > 0 ? have - m[d].total_mb : 1e300;
      if (d != over && holds && r > room) to = d, room = r;
    }
    if (room <= 0) break;
    bool moved_now = false;
    for (int j = 0; j < p.split_tail && excess > 0; ++j) {
      std::vector<ChannelSlice>& sl = p.tail_slices[size_t(j)];
      // A slice's packed panels, and its source while they are packed (memory.cpp): shrinking
      // it saves at least the panels; the receiver gains as much.
      const double unit_mb = double(g.node(p.tail_first + j).layer->packed_bytes({0, 64})) / kMb;
      const int units = int(std::min({double(sl[over].size() / 64), std::ceil(excess / unit_mb),
                                      std::floor(room / (2 * unit_mb))}));
      if (units <= 0) continue;
      std::vector<int> count(sl.size());
      for (size_t d = 0; d < sl.size(); ++d) count[d] = sl[d].size();
      count[over] -= units * 64, count[to] += units * 64;
      room -= 2 * units * unit_mb;
      for (size_t d = 0, at = 0; d < sl.size(); at += size_t(count[d]), ++d)
        sl[d] = {int(at), int(at) + count[d]};
      excess -= units * unit_mb;
      moved = moved_now = true;
    }
    if (!moved_now) break;  // no room for a whole unit anywhere
  }
  if (moved) simulate(g, c, p);
  return p;
}
}  // namespace

Plan make_plan(const Graph& g, const Cluster& c, Scheme s, int batch) {
  const ComputeScope section(section_of(Work::plan));  // a board plans at its own speed
  validate(g, c);
  Plan best = fit_tail_to_memory(g, c, plan_all_devices(g, c, s, batch));
  // A plan that keeps every board within its memory (memory_shortfall) beats one that does not;
  // among those that fit, the faster.
  auto fits = [&](const Plan& p) { return memory_shortfall(g, c, p).device < 0; };
  auto preferred = [&](const Plan& q, const Plan& than) {
    const bool qf = fits(q), tf = fits(than);
    return qf != tf ? qf : q.predicted_ms < than.predicted_ms;
  };
  // More devices are not always faster: in a star the host's link carries every halo and
  // relay, and a slow board or a slow link can cost more than its rows save. Leave idle the
  // secondary whose absence predicts fastest (each is tried: slow compute and slow links both
  // count), while that gains or until every board fits its memory.
  std::vector<size_t> keep(c.devices.size());
  for (size_t d = 0; d < keep.size(); ++d) keep[d] = d;
  while (s != Scheme::modnn && best.devices > 1 && keep.size() > 2) {
    Plan round_best;
    size_t drop = 0;
    for (size_t i = 1; i < keep.size(); ++i) {
      std::vector<size_t> k = keep;
      k.erase(k.begin() + long(i));
      const Plan p = plan_all_devices(g, sub_cluster(c, k), s, batch);
      if (p.devices == 1) continue;
      Plan q = fit_tail_to_memory(g, c, embed_plan(g, c, p, k));
      if (drop == 0 || preferred(q, round_best)) round_best = std::move(q), drop = i;
    }
    if (drop == 0 || !(preferred(round_best, best) || (!fits(best) && !fits(round_best)))) break;
    best = std::move(round_best);
    keep.erase(keep.begin() + long(drop));
  }
  if (!fits(best) && s != Scheme::modnn && c.devices.size() > 1) {  // the host alone, then
    Plan alone = embed_plan(g, c, plan_all_devices(g, sub_cluster(c, {0}), s, batch), {0});
    if (fits(alone)) best = std::move(alone);
  }
  const MemoryShortfall sf = memory_shortfall(g, c, best);
  if (sf.device >= 0) throw std::invalid_argument(sf.message(c));
  return best;
}

Plan whole_image_plan(const Graph& g, const Plan& p, int d) {
  Plan w = p;
  w.image_plans.clear();
  w.batch = 1;
  for (BlockPlan& b : w.blocks) {
    b.zones.assign(size_t(p.devices), {});
    b.zones[size_t(d)] = {{0, g.shape_of(b.last - 1).h}};
    b.overlap = false;
  }
  w.split_tail = splittable_tail(g);  // the FC layers too: the host runs only what cannot split
  w.tail_slices.resize(size_t(w.split_tail));
  for (int j = 0; j < w.split_tail; ++j) {
    w.tail_slices[size_t(j)].assign(size_t(p.devices), {});
    w.tail_slices[size_t(j)][size_t(d)] = {0, g.shape_of(w.tail_first + j).c};
  }
  w.transfers.clear();
  w.timeline.clear();
  return w;
}

bool holds_whole_slice(const Graph& g, const Plan& p, int j, int d) {
  return j >= 0 && j < p.split_tail &&
         p.tail_slices.at(size_t(j)).at(size_t(d)).size() == g.shape_of(p.tail_first + j).c;
}

int finishing_worker(const Graph& g, const Plan& p) {
  if (const int d = p.sole_device(); d >= 0 || p.blocks.empty() || p.split_tail == 0) return std::max(d, 0);
  const BlockPlan& b = p.blocks.back();
  const int h = g.shape_of(b.last - 1).h;
  for (size_t d = 1; d < b.zones.size(); ++d)
    if (b.zones[d].size() == 1 && b.zones[d][0].begin == 0 && b.zones[d][0].end == h)
      return holds_whole_slice(g, p, 0, int(d)) ? int(d) : 0;
  return 0;
}

bool host_finishes_split(const Graph& g, const Plan& p) {
  return p.sole_device() < 0 && finishing_worker(g, p) == 0;
}

Plan pipelined_image_plan(const Graph& g, const Plan& early, int cut, int deep) {
  Plan w = whole_image_plan(g, early, deep);  // blocks from `cut` on and the FC layers
  for (int b = 0; b < cut; ++b) w.blocks[size_t(b)] = early.blocks[size_t(b)];
  return w;
}

bool host_gathers_tail_input(const Graph& g, const Plan& p) {
  const int w = finishing_worker(g, p);
  return p.gather_every_block || !(w && holds_whole_slice(g, p, 0, w));
}

int Plan::sole_device() const {
  int who = -1;
  for (const BlockPlan& b : blocks)
    for (size_t d = 0; d < b.zones.size(); ++d)
      if (!b.zones[d].empty()) {
        if (who >= 0 && who != int(d)) return -1;
        who = int(d);
      }
  return who;
}

double Plan::whole_image_silence_ms(size_t i) const {
  if (image_plans.empty()) return whole_image_worker() ? predicted_ms : 0;
  return for_image(i).transfers.empty() ? 0 : predicted_ms;  // the host's own whole image: none
}

bool Plan::image_plans_match() const {
  for (const Plan& ip : image_plans) {
    if (ip.devices != devices || ip.blocks.size() != blocks.size() || !ip.image_plans.empty()) return false;
    for (size_t b = 0; b < blocks.size(); ++b)
      if (ip.blocks[b].first != blocks[b].first || ip.blocks[b].last != blocks[b].last) return false;
  }
  return true;
}

std::vector<double> row_shares(const Graph& g, const Plan& p) {
  std::vector<double> share(size_t(p.devices), 0.0);
  for (const BlockPlan& b : p.blocks) {
    const double h = g.shape_of(b.last - 1).h;
    for (size_t d = 0; d < share.size() && d < b.zones.size(); ++d)
      for (const RowRange& z : b.zones[d]) share[d] += z.size() / h / double(p.blocks.size());
  }
  return share;
}

Json zones_to_json(const std::vector<std::vector<RowRange>>& zones) {
  Json zs = Json::array();
  for (const auto& dz : zones) {
    Json jd = Json::array();
    for (const RowRange& r : dz) jd.push_back(Json(Json::Array{r.begin, r.end}));
    zs.push_back(jd);
  }
  return zs;
}

Json slices_to_json(const std::vector<ChannelSlice>& slices) {
  Json all = Json::array();
  for (const ChannelSlice& s : slices) {
    Json one = Json::array();
    if (!s.empty()) one.push_back(Json(Json::Array{s.begin, s.end}));
    all.push_back(one);
  }
  return all;
}

Json Plan::to_json(const Graph& g) const {
  Json j = Json::object();
  j["scheme"] = scheme_name(scheme);
  j["devices"] = devices;
  j["batch"] = batch;
  j["predicted_ms"] = predicted_ms;
  j["bytes"] = static_cast<unsigned long>(bytes);
  if (scheme == Scheme::halp) j["host_share"] = host_share;
  Json bl = Json::array();
  for (const BlockPlan& b : blocks) {
    Json jb = Json::object();
    jb["first"] = b.first;
    jb["last"] = b.last;
    jb["layers"] = g.node(b.first).name + ".." + g.node(b.last - 1).name;
    jb["rows"] = zones_to_json(b.zones);
    jb["overlap"] = b.overlap;
    bl.push_back(jb);
  }
  j["blocks"] = bl;
  Json tl = Json::array();
  for (int k = 0; k < split_tail; ++k) {
    Json jt = Json::object();
    jt["layer"] = g.node(tail_first + k).name;
    jt["channels"] = slices_to_json(tail_slices[size_t(k)]);
    tl.push_back(jt);
  }
  j["split_tail"] = tl;
  Json lb = Json::array();
  for (size_t d = 1; d < link_bytes.size(); ++d) lb.push_back(static_cast<unsigned long>(link_bytes[d]));
  j["link_bytes"] = lb;
  if (!image_plans.empty()) {
    Json who = Json::array();  // per image: the device that runs it whole, or -1: split
    Json ends = Json::array();  // per image: the worker whose blocks end it (pipelined, whole), or 0
    for (const Plan& ip : image_plans) {
      who.push_back(ip.sole_device() >= 0 && devices > 1 ? ip.sole_device() : -1);
      ends.push_back(finishing_worker(g, ip));
    }
    j["whole_images"] = who;
    j["finishing_workers"] = ends;
  }
  return j;
}

}  // namespace eb::dist
