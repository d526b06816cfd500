#include "dist/plan/planner.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

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
    const RowRange need = g.block_needs(first, last, q)[0];
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
  for (int i = 1; i < g.spatial_end(); ++i)
    if (g.is_cut(i)) c.push_back(i);
  return c;
}

namespace {

void validate(const Graph& g, const Cluster& c) {
  if (c.devices.empty()) throw std::invalid_argument("a plan needs at least one device");
  for (const DeviceProfile& d : c.devices)
    if (int(d.layers.size()) != g.size())
      throw std::invalid_argument("profile '" + d.name + "' does not match model " + g.model);
  if (!(c.link.bits_per_s > 0) || !(c.link.latency_s >= 0))
    throw std::invalid_argument("link rate must be positive and latency non-negative");
  if (g.spatial_end() == 0) throw std::invalid_argument("model has no spatial layers to split");
}

// Relative speed of each device: inverse of its time for the whole spatial part.
std::vector<double> speeds(const Graph& g, const Cluster& c) {
  std::vector<double> s;
  for (const DeviceProfile& d : c.devices) {
    double t = 0;
    for (int i = 0; i < g.spatial_end(); ++i) t += d.band_ms(g, i, {0, g.shape_of(i).h});
    s.push_back(1.0 / std::max(t, 1e-9));
  }
  return s;
}

// Output zones of a node with h rows for the scheme's row shares.
std::vector<std::vector<RowRange>> zones_for(Scheme s, int h, const std::vector<double>& speed,
                                             double host_share) {
  const size_t n = speed.size();
  std::vector<std::vector<RowRange>> z(n);
  if (s == Scheme::local || n == 1) {
    z[0].push_back({0, h});
    return z;
  }
  if (s != Scheme::halp) {
    const std::vector<RowRange> r = split_rows(h, speed);
    for (size_t d = 0; d < n; ++d)
      if (!r[d].empty()) z[d].push_back(r[d]);
    return z;
  }
  // HALP: S1, H, S2, H, ..., Sk (k = n-1 secondaries). With one secondary: S1 then H.
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

uint64_t row_bytes(const Graph& g, int node, int bpv) {
  return uint64_t(g.shape_of(node).row_size()) * uint64_t(bpv);
}

// Owner of each row of node `node`'s output after block b (or the input, all host's).
std::vector<int> owners(const Plan& p, const Graph& g, int b) {
  const int node = b < 0 ? -1 : p.blocks[size_t(b)].last - 1;
  std::vector<int> own(size_t(g.shape_of(node).h), 0);
  if (b < 0) return own;
  for (size_t d = 0; d < p.blocks[size_t(b)].zones.size(); ++d)
    for (const RowRange& r : p.blocks[size_t(b)].zones[d])
      for (int y = r.begin; y < r.end; ++y) own[size_t(y)] = int(d);
  return own;
}

// Rows of the block input each device needs (bool per row).
std::vector<std::vector<bool>> block_input_needs(const Graph& g, const BlockPlan& bp, int h_in) {
  std::vector<std::vector<bool>> need(bp.zones.size(), std::vector<bool>(size_t(h_in), false));
  for (size_t d = 0; d < bp.zones.size(); ++d)
    for (const RowRange& z : bp.zones[d]) {
      const RowRange r = g.block_needs(bp.first, bp.last, z)[0];
      for (int y = r.begin; y < r.end; ++y) need[d][size_t(y)] = true;
    }
  return need;
}

// Groups the rows where pred(y) holds into maximal ranges (split where owner[y] changes, if
// given: the host sends the rows it computed without waiting for rows it relays).
template <class Pred>
std::vector<RowRange> runs(int h, Pred pred, const std::vector<int>* owner = nullptr) {
  std::vector<RowRange> out;
  for (int y = 0; y < h;) {
    if (!pred(y)) {
      ++y;
      continue;
    }
    int e = y;
    while (e < h && pred(e) && (!owner || (*owner)[size_t(e)] == (*owner)[size_t(y)])) ++e;
    out.push_back({y, e});
    y = e;
  }
  return out;
}

// The transfers feeding block b (b == blocks.size(): the gather for the tail).
std::vector<Transfer> transfers_for(const Graph& g, const Cluster& c, const Plan& p, int b) {
  const int node = b == 0 ? -1 : p.blocks[size_t(b - 1)].last - 1;
  const int h = g.shape_of(node).h;
  const std::vector<int> own = owners(p, g, b - 1);
  const size_t n = size_t(p.devices);
  std::vector<std::vector<bool>> need;
  if (b == int(p.blocks.size())) {
    need.assign(n, std::vector<bool>(size_t(h), false));
    need[0].assign(size_t(h), true);
  } else {
    need = block_input_needs(g, p.blocks[size_t(b)], h);
    if (p.gather_every_block && b > 0) need[0].assign(size_t(h), true);  // MoDNN gathers it all
  }
  const uint64_t rb = row_bytes(g, node, c.bytes_per_value);
  std::vector<Transfer> out;
  // Secondary -> host: rows the host needs itself or relays to another secondary.
  for (size_t s = 1; s < n; ++s)
    for (const RowRange r : runs(h, [&](int y) {
           if (own[size_t(y)] != int(s)) return false;
           for (size_t d = 0; d < n; ++d)
             if (d != s && need[d][size_t(y)]) return true;
           return false;
         }))
      out.push_back({b, int(s), 0, node, r, uint64_t(r.size()) * rb});
  // Host -> secondary: every row the secondary needs and does not own.
  for (size_t d = 1; d < n; ++d)
    for (const RowRange r : runs(
             h, [&](int y) { return need[d][size_t(y)] && own[size_t(y)] != int(d); }, &own))
      out.push_back({b, 0, int(d), node, r, uint64_t(r.size()) * rb});
  return out;
}

double zone_compute_ms(const Graph& g, const DeviceProfile& prof, const BlockPlan& bp,
                       const std::vector<RowRange>& zones) {
  double t = 0;
  for (const RowRange& z : zones) {
    const std::vector<RowRange> need = g.block_needs(bp.first, bp.last, z);
    for (int n = bp.first; n < bp.last; ++n)
      t += prof.band_ms(g, n, need[size_t(n - bp.first + 1)]);
  }
  return t;
}

// The part of the tail the host runs alone.
double tail_ms(const Graph& g, const Plan& p, const Cluster& c) {
  double t = 0;
  for (int n = p.tail_first + p.split_tail; n < g.size(); ++n)
    t += c.devices[0].band_ms(g, n, {0, g.shape_of(n).h});
  return t;
}

// Split tail layer j: the host sends each secondary the layer's input rows it lacks (all of
// them after the first split layer: a secondary keeps no slices).
std::vector<Transfer> tail_transfers(const Graph& g, const Cluster& c, const Plan& p, int j) {
  const int node = p.tail_first + j - 1, h = g.shape_of(node).h;
  const int nb = int(p.blocks.size());
  const std::vector<int> own = owners(p, g, nb - 1);
  const uint64_t rb = row_bytes(g, node, c.bytes_per_value);
  std::vector<Transfer> out;
  for (int d = 1; d < p.devices; ++d) {
    if (p.tail_slices.at(size_t(j)).at(size_t(d)).empty()) continue;  // computes no slice
    for (const RowRange r : runs(
             h, [&](int y) { return j > 0 || own[size_t(y)] != d; }, j == 0 ? &own : nullptr))
      out.push_back({nb + j, 0, d, node, r, uint64_t(r.size()) * rb});
  }
  return out;
}

struct Sim {
  const Graph& g;
  const Cluster& c;
  Plan& p;
  std::vector<double> cpu, up, down;  // per device: compute, uplink, downlink free times (ms)
  // Schedules a transfer ready at `ready`; returns its arrival time.
  double send(const Transfer& t, double ready, int image) {
    const double dur = c.link.transfer_s(double(t.bytes)) * 1e3;
    const double start = std::max({ready, up[size_t(t.src)], down[size_t(t.dst)]});
    const double end = start + dur;
    up[size_t(t.src)] = down[size_t(t.dst)] = end;
    const double arrive = end + c.link.latency_s * 1e3;
    p.timeline.push_back({t.src, image, t.block, "send", t.dst, start, end, t.bytes});
    p.timeline.push_back(
        {t.dst, image, t.block, "recv", t.src, start + c.link.latency_s * 1e3, arrive, t.bytes});
    return arrive;
  }
};

}  // namespace

void simulate(const Graph& g, const Cluster& c, Plan& p) {
  const size_t n = size_t(p.devices), nb = p.blocks.size();
  p.transfers.clear();
  p.timeline.clear();
  for (size_t b = 0; b <= nb; ++b) {
    auto t = transfers_for(g, c, p, int(b));
    p.transfers.insert(p.transfers.end(), t.begin(), t.end());
  }
  for (int j = 0; j < p.split_tail; ++j) {
    auto t = tail_transfers(g, c, p, j);
    p.transfers.insert(p.transfers.end(), t.begin(), t.end());
  }
  p.bytes = 0;
  p.link_bytes.assign(n, 0);
  for (const Transfer& t : p.transfers) {
    p.bytes += t.bytes;
    p.link_bytes[size_t(std::max(t.src, t.dst))] += t.bytes;
  }
  // Slices coming back to the host (not rows of a node: they are not Transfers).
  for (int j = 0; j < p.split_tail; ++j)
    for (size_t d = 1; d < n; ++d) {
      const uint64_t b = uint64_t(p.tail_slices[size_t(j)][d].size()) * uint64_t(c.bytes_per_value);
      p.bytes += b;
      p.link_bytes[d] += b;
    }
  Sim s{g, c, p, std::vector<double>(n, 0), std::vector<double>(n, 0), std::vector<double>(n, 0)};
  double finish = 0;
  for (int img = 0; img < p.batch; ++img) {
    // When each device's rows of the current block input become available to send.
    std::vector<double> start_prev(n, 0), end_prev(n, 0);
    std::vector<double> zone_rows_prev(n, 1);
    for (size_t b = 0; b <= nb; ++b) {
      std::vector<double> arrive(n, 0);
      std::vector<double> relay_ready(size_t(g.shape_of(b == 0 ? -1 : p.blocks[b - 1].last - 1).h), 0);
      for (const Transfer& t : p.transfers) {
        if (t.block != int(b)) continue;
        // At the tail the host's sends are the first split layer's broadcast (it shares the
        // gather's block number): the tail loop below sends them, once.
        if (b == nb && t.src == 0) continue;
        double ready = b == 0 ? 0 : end_prev[size_t(t.src)];
        if (p.edge_first && b > 0 && zone_rows_prev[size_t(t.src)] > 0) {
          // Edge-first: rows others need are computed before the interior of the zone.
          const double frac = std::min(1.0, double(t.rows.size()) / zone_rows_prev[size_t(t.src)]);
          ready = start_prev[size_t(t.src)] + frac * (end_prev[size_t(t.src)] - start_prev[size_t(t.src)]);
        }
        if (t.src == 0 && t.dst != 0) {
          // Rows the host relays wait for their arrival from the owning secondary.
          for (int y = t.rows.begin; y < t.rows.end; ++y) ready = std::max(ready, relay_ready[size_t(y)]);
        }
        const double a = s.send(t, ready, img);
        if (t.dst == 0)
          for (int y = t.rows.begin; y < t.rows.end; ++y) relay_ready[size_t(y)] = a;
        arrive[size_t(t.dst)] = std::max(arrive[size_t(t.dst)], a);
      }
      if (b == nb) {
        double st = std::max(s.cpu[0], arrive[0]);
        for (int j = 0; j < p.split_tail; ++j) {
          // Broadcast the layer's input, every device computes its slice, slices come back.
          const int node = p.tail_first + j;
          std::vector<double> in(n, st);
          for (const Transfer& t : p.transfers) {
            if (t.block != int(nb) + j || t.src != 0) continue;
            // The first layer's input leaves in pieces: the host's own rows once computed,
            // relayed rows once they are here.
            double ready = st;
            if (j == 0) {
              ready = end_prev[0];
              for (int y = t.rows.begin; y < t.rows.end; ++y)
                ready = std::max(ready, relay_ready[size_t(y)]);
            }
            in[size_t(t.dst)] = std::max(in[size_t(t.dst)], s.send(t, ready, img));
          }
          double done = 0;
          for (size_t d = 0; d < n; ++d) {
            const RowRange sl = p.tail_slices[size_t(j)][d];
            if (sl.empty()) continue;
            const double frac = double(sl.size()) / double(g.shape_of(node).c);
            const double cs = std::max(s.cpu[d], in[d]);
            const double ce = cs + frac * c.devices[d].layer_ms(node, 1);
            s.cpu[d] = ce;
            p.timeline.push_back({int(d), img, int(nb) + j, "compute", -1, cs, ce});
            const Transfer back{int(nb) + j + 1, int(d), 0, node, {0, 1},
                                uint64_t(sl.size()) * uint64_t(c.bytes_per_value)};
            done = std::max(done, d == 0 ? ce : s.send(back, ce, img));
          }
          st = done;
        }
        const double en = st + tail_ms(g, p, c);
        s.cpu[0] = en;
        p.timeline.push_back({0, img, int(b), "compute", -1, st, en});
        finish = std::max(finish, en);
        break;
      }
      const BlockPlan& bp = p.blocks[b];
      const std::vector<int> own = bp.overlap ? owners(p, g, int(b) - 1) : std::vector<int>();
      for (size_t d = 0; d < n; ++d) {
        if (bp.zones[d].empty()) {
          start_prev[d] = end_prev[d] = s.cpu[d];
          zone_rows_prev[d] = 0;
          continue;
        }
        double st = std::max(s.cpu[d], arrive[d]), en = 0;
        if (!bp.overlap) {
          en = st + zone_compute_ms(g, c.devices[d], bp, bp.zones[d]);
        } else {
          // The rows computable from this device's own rows first, the rest once halos are in.
          auto mine = [&](RowRange r) {
            for (int y = r.begin; y < r.end; ++y)
              if (own[size_t(y)] != int(d)) return false;
            return true;
          };
          std::vector<RowRange> early, late;
          for (const RowRange& z : bp.zones[d]) {
            const RowRange q = computable_rows(g, bp.first, bp.last, z, mine);
            if (q.empty()) {
              late.push_back(z);
              continue;
            }
            early.push_back(q);
            if (q.begin > z.begin) late.push_back({z.begin, q.begin});
            if (z.end > q.end) late.push_back({q.end, z.end});
          }
          st = s.cpu[d];
          const double mid = st + zone_compute_ms(g, c.devices[d], bp, early);
          en = late.empty() ? mid
                            : std::max(mid, arrive[d]) + zone_compute_ms(g, c.devices[d], bp, late);
        }
        s.cpu[d] = en;
        start_prev[d] = st;
        end_prev[d] = en;
        double rows = 0;
        for (const RowRange& z : bp.zones[d]) rows += z.size();
        zone_rows_prev[d] = rows;
        p.timeline.push_back({int(d), img, int(b), "compute", -1, st, en});
      }
    }
  }
  p.predicted_ms = finish;
}

std::vector<double> stage_costs(const Graph& g, const Cluster& c, const Plan& p) {
  std::vector<double> out;
  const double lat = c.link.latency_s * 1e3;
  for (size_t b = 0; b <= p.blocks.size(); ++b) {
    // Transfers of this stage: the host's uplink and downlink are the bottleneck of a star.
    std::vector<double> in_ms(size_t(p.devices), 0);
    double host_up = 0, host_down = 0;
    for (const Transfer& t : transfers_for(g, c, p, int(b))) {
      const double ms = c.link.transfer_s(double(t.bytes)) * 1e3;
      if (t.src == 0) {
        host_up += ms;
        in_ms[size_t(t.dst)] = std::max(in_ms[size_t(t.dst)], host_down + host_up + lat);
      } else {
        host_down += ms;
        in_ms[0] = std::max(in_ms[0], host_down + lat);
      }
    }
    if (b == p.blocks.size()) {
      out.push_back(in_ms[0] + tail_ms(g, p, c));
      break;
    }
    double stage = 0;
    for (size_t d = 0; d < size_t(p.devices); ++d)
      if (!p.blocks[b].zones[d].empty())
        stage = std::max(stage, in_ms[d] + zone_compute_ms(g, c.devices[d], p.blocks[b], p.blocks[b].zones[d]));
    out.push_back(stage);
  }
  return out;
}

double staged_cost(const Graph& g, const Cluster& c, const Plan& p) {
  double total = 0;
  for (double v : stage_costs(g, c, p)) total += v;
  return total;
}

namespace {
// The blocks and zones of a plan, not yet simulated.
Plan plan_structure(const Graph& g, const Cluster& c, Scheme s, const std::vector<int>& cuts,
                    double host_share, int batch) {
  validate(g, c);
  if (batch < 1) throw std::invalid_argument("batch must be at least 1");
  Plan p;
  p.scheme = s;
  p.devices = s == Scheme::local ? 1 : int(c.devices.size());
  p.batch = batch;
  p.gather_every_block = s == Scheme::modnn;
  p.edge_first = s == Scheme::halp && c.edge_first;
  p.host_share = s == Scheme::halp ? host_share : 0;
  p.tail_first = g.spatial_end();
  const std::vector<double> sp = speeds(g, c);
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
    p.blocks.push_back(bp);
    first = last;
  }
  return p;
}
}  // namespace

Plan plan_with_cuts(const Graph& g, const Cluster& c, Scheme s, const std::vector<int>& cuts,
                    double host_share, int batch) {
  Plan p = plan_structure(g, c, s, cuts, host_share, batch);
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
  // Cost of block [pos[i], pos[j]) (plus the gather and tail when it is the last block):
  // a plan whose first block only places the rows of node pos[i]-1.
  auto block_cost = [&](size_t i, size_t j) {
    std::vector<int> cuts;
    if (i > 0) cuts.push_back(pos[i]);
    if (j + 1 < m) cuts.push_back(pos[j]);
    // Only its stage costs matter here: no timeline simulation.
    const Plan p = plan_structure(g, c, s, cuts, host_share, 1);
    const std::vector<double> st = stage_costs(g, c, p);
    double v = st[i > 0 ? 1 : 0];
    if (j + 1 == m) v += st.back();
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

namespace {
// HALP's overlap, block by block where the simulation says it pays: splitting a zone costs
// the layers' fixed costs again (Winograd weight streaming), hiding the halo wait saves time.
void choose_overlap(const Graph& g, const Cluster& c, Plan& p) {
  for (size_t b = 0; b < p.blocks.size(); ++b) {
    Plan trial = p;
    trial.blocks[b].overlap = true;
    simulate(g, c, trial);
    if (trial.predicted_ms < p.predicted_ms) p = std::move(trial);
  }
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

// Local search on the zone boundaries with the simulator as the judge. The share sweep places
// every block's boundaries from one global host share, but the waits differ per block: a device
// that would wait for halos anyway can give rows away, one on the critical path should. Moves
// one boundary at a time by a few rows (or toggles a HALP block's overlap) while the predicted
// latency drops.
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
          Plan trial = p;
          auto& z = trial.blocks[b].zones;
          for (auto& dz : z) dz.clear();
          for (size_t k = 0; k < seg.size(); ++k) {
            RowRange r = seg[k].second;
            if (k == i) r.end = x;
            if (k == i + 1) r.begin = x;
            if (r.empty()) continue;
            auto& dz = z[size_t(seg[k].first)];
            if (!dz.empty() && dz.back().end == r.begin)
              dz.back().end = r.end;
            else
              dz.push_back(r);
          }
          if (keep_if_faster(trial)) break;
        }
      }
    }
    // HALP's overlap per block (its gain depends on the boundaries).
    for (size_t b = 0; toggle_overlap && p.scheme == Scheme::halp && b < p.blocks.size(); ++b) {
      Plan trial = p;
      trial.blocks[b].overlap = !trial.blocks[b].overlap;
      keep_if_faster(trial);
    }
    // The split tail layers' channel slices, in whole 64-channel units.
    for (size_t j = 0; j < p.tail_slices.size(); ++j)
      for (size_t d = 0; d + 1 < p.tail_slices[j].size(); ++d)
        for (int step : {64, -64, 128, -128}) {
          const RowRange a = p.tail_slices[j][d], b = p.tail_slices[j][d + 1];
          const int x = a.end + step;
          if (a.empty() || b.empty() || x <= a.begin || x >= b.end) continue;
          Plan trial = p;
          trial.tail_slices[j][d].end = trial.tail_slices[j][d + 1].begin = x;
          if (keep_if_faster(trial)) break;
        }
    if (!improved) break;
  }
}

// Boundaries first, then overlap toggles too: toggles taken early steer the boundary search
// into worse optima (measured on VGG-16), and the second round never loses what the first found.
void refine(const Graph& g, const Cluster& c, Plan& p) {
  refine_boundaries(g, c, p, false);
  refine_boundaries(g, c, p, true);
}
}  // namespace

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
    std::vector<RowRange> sl = split_rows(units, used);
    for (RowRange& r : sl) r = {std::min(out, r.begin * 64), std::min(out, r.end * 64)};
    p.tail_slices.push_back(sl);
  }
  simulate(g, c, p);
}

namespace {
// The best plan of a scheme that gives every device of c rows (or the host alone).
Plan plan_all_devices(const Graph& g, const Cluster& c, Scheme s, int batch) {
  if (s == Scheme::local || c.devices.size() == 1) return plan_with_cuts(g, c, Scheme::local, {}, 1.0, batch);
  // Split as many leading FC layers of the tail as pay for their broadcast.
  auto with_best_tail = [&](Plan p) {
    Plan best_p = p;
    for (int k = 1; k <= splittable_tail(g); ++k) {
      split_tail(g, c, p, k);
      if (p.predicted_ms < best_p.predicted_ms) best_p = p;
    }
    return best_p;
  };
  if (s == Scheme::modnn) {
    std::vector<int> cuts = candidate_cuts(g);  // one block per layer
    return with_best_tail(plan_with_cuts(g, c, s, cuts, 0, batch));
  }
  Plan local = plan_with_cuts(g, c, Scheme::local, {}, 1.0, batch);
  Plan best;
  best.predicted_ms = std::numeric_limits<double>::infinity();
  if (s == Scheme::dpfp) {
    best = best_blocks(g, c, s, 0, batch);
  } else {
    // The DP assumes every block waits for its halos. Each block structure it finds is tried
    // again with overlap blocks, at host shares around the one it was found at: hiding the
    // waits favours thinner blocks and a share nearer the even split than the DP's choice.
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
      candidates.push_back(with_best_tail(std::move(here)));
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
  }
  // On links too slow to pay off, fall back to the host alone (reported as this scheme).
  best = with_best_tail(best);
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
    std::vector<RowRange> t(n, RowRange{0, 0});
    for (size_t i = 0; i < keep.size(); ++i) t[keep[i]] = sl[i];
    sl = std::move(t);
  }
  sub.devices = int(n);
  simulate(g, c, sub);
  return sub;
}

Plan make_plan(const Graph& g, const Cluster& c, Scheme s, int batch) {
  validate(g, c);
  Plan best = plan_all_devices(g, c, s, batch);
  if (s == Scheme::modnn || best.devices == 1) return best;
  // More devices are not always faster: in a star the host's link carries every halo and
  // relay. Leave the slowest secondary idle while that predicts faster.
  std::vector<size_t> keep(c.devices.size());
  std::vector<double> full_ms(c.devices.size());
  for (size_t d = 0; d < keep.size(); ++d) keep[d] = d, full_ms[d] = c.devices[d].full_ms(g);
  while (keep.size() > 2) {
    size_t slowest = 1;
    for (size_t i = 2; i < keep.size(); ++i)
      if (full_ms[keep[i]] >= full_ms[keep[slowest]]) slowest = i;
    keep.erase(keep.begin() + long(slowest));
    Cluster sub = c;
    sub.devices.clear();
    for (size_t d : keep) sub.devices.push_back(c.devices[d]);
    const Plan p = plan_all_devices(g, sub, s, batch);
    if (p.devices == 1) break;
    Plan q = embed_plan(g, c, p, keep);
    if (q.predicted_ms >= best.predicted_ms) break;
    best = std::move(q);
  }
  return best;
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

Json slices_to_json(const std::vector<RowRange>& slices) {
  std::vector<std::vector<RowRange>> z;
  for (const RowRange& r : slices) z.push_back(r.empty() ? std::vector<RowRange>{} : std::vector<RowRange>{r});
  return zones_to_json(z);
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
  return j;
}

}  // namespace eb::dist
