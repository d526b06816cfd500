// The timeline simulator and the DP's stage costs: transfers of a plan (who sends which rows of
// which tensor to whom), and when every compute and transfer happens on a star of devices whose
// links each carry one transfer at a time per direction.
// The planner's local search simulates hundreds of thousands of trial plans (VGG-16, 3 devices:
// 552,000 for one HALP plan), so the simulator fills reused buffers instead of returning fresh
// vectors: allocations were a fifth of its instructions, and most of its time under ASan.
#include <algorithm>
#include <tuple>

#include "dist/plan/schedule.h"

namespace eb::dist {

namespace detail {
void owners(const Plan& p, const Graph& g, int b, std::vector<int>& own) {
  const int node = b < 0 ? -1 : p.blocks[size_t(b)].last - 1;
  own.assign(size_t(g.shape_of(node).h), 0);
  if (b < 0) return;
  for (size_t d = 0; d < p.blocks[size_t(b)].zones.size(); ++d)
    for (const RowRange& r : p.blocks[size_t(b)].zones[d])
      for (int y = r.begin; y < r.end; ++y) own[size_t(y)] = int(d);
}

double zone_compute_ms(const Graph& g, const DeviceProfile& prof, const BlockPlan& bp,
                       const std::vector<RowRange>& zones) {
  double t = 0;
  thread_local std::vector<RowRange> need;
  for (const RowRange& z : zones) {
    g.block_needs(bp.first, bp.last, z, need);
    for (int n = bp.first; n < bp.last; ++n)
      t += prof.band_ms(g, n, need[size_t(n - bp.first + 1)]);
  }
  return t;
}

Plan trial_of(Plan& p) {
  std::vector<Transfer> transfers = std::move(p.transfers);
  std::vector<Event> timeline = std::move(p.timeline);
  auto put_back = [&] {
    p.transfers = std::move(transfers);
    p.timeline = std::move(timeline);
  };
  try {
    Plan trial = p;
    put_back();
    return trial;
  } catch (...) {  // bad_alloc: p keeps what it had
    put_back();
    throw;
  }
}

}  // namespace detail

using detail::owners;
using detail::zone_compute_ms;

namespace {

// Bytes on the wire for `values` values of node `node`'s output, as the runtime encodes them
// (dist/runtime/executor.cpp): fp16, or fp32 with its zeros elided (a bitmap plus the non-zero
// values) where that saves an eighth, at the share of non-zero values the host's profile
// measured for the node. After ReLU about half the values are zeros: counting them all made
// MoDNN, which gathers whole feature maps, predict 2x its time at 100 Mbit/s.
uint64_t wire_bytes(const Cluster& c, int node, uint64_t values) {
  if (c.bytes_per_value != 4) return values * uint64_t(c.bytes_per_value);
  const double nonzero = node < 0 || c.devices.empty() ? 1.0 : c.devices[0].layers.at(size_t(node)).nonzero;
  const uint64_t dense = values * 4, sparse = (values + 63) / 64 * 8 + uint64_t(nonzero * double(dense));
  return compact_form_pays(sparse, dense) ? sparse : dense;
}
}  // namespace

// Input rows go as palettes (runtime/palette_wire.h) where the images to plan for have at most
// 256 values per channel (Cluster::input_levels), else as plain fp32: a photo resized to the
// model (bilinear: blends of pixels) has more.
uint64_t detail::rows_bytes(const Graph& g, const Cluster& c, int node, int rows) {
  const Shape s = g.shape_of(node);
  const uint64_t values = uint64_t(rows) * s.row_size();
  if (node == -1 && c.bytes_per_value == 4 && c.input_levels > 0 && s.c <= kPaletteMaxChannels) {
    // A band of m pixels has at most m values per channel.
    const uint64_t levels = std::min(uint64_t(c.input_levels), values / uint64_t(s.c));
    const uint64_t palette = palette_bytes(values, s.c, levels);
    if (compact_form_pays(palette, values * 4)) return palette;
  }
  return wire_bytes(c, node, values);
}

using detail::rows_bytes;

namespace {

// Per row of the block input, the devices that need it: bit d for device d (kMaxPlanDevices).
// One word per row, not a vector<bool> per device: the planner's local search simulates
// thousands of plans, and this ran in every one.
using DeviceSet = uint64_t;
static_assert(kMaxPlanDevices <= 64, "one bit per device");
DeviceSet device_bit(size_t d) { return DeviceSet{1} << d; }

void block_input_needs(const Graph& g, const BlockPlan& bp, int h_in,
                       std::vector<DeviceSet>& need) {
  need.assign(size_t(h_in), 0);
  for (size_t d = 0; d < bp.zones.size(); ++d)
    for (const RowRange& z : bp.zones[d]) {
      const RowRange r = g.block_input_rows(bp.first, bp.last, z);
      for (int y = r.begin; y < r.end; ++y) need[size_t(y)] |= device_bit(d);
    }
}

// Calls fn for each maximal range of rows where pred(y) holds (split where owner[y] changes, if
// given: the host sends the rows it computed without waiting for rows it relays).
template <class Pred, class Fn>
void for_each_run(int h, Pred pred, const std::vector<int>* owner, Fn fn) {
  for (int y = 0; y < h;) {
    if (!pred(y)) {
      ++y;
      continue;
    }
    int e = y;
    while (e < h && pred(e) && (!owner || (*owner)[size_t(e)] == (*owner)[size_t(y)])) ++e;
    fn(RowRange{y, e});
    y = e;
  }
}

// Appends to `out` the transfers feeding block b (b == blocks.size(): the gather for the tail).
void append_transfers_for(const Graph& g, const Cluster& c, const Plan& p, int b,
                          std::vector<Transfer>& out) {
  const int node = b == 0 ? -1 : p.blocks[size_t(b - 1)].last - 1;
  const int h = g.shape_of(node).h;
  thread_local std::vector<int> own;
  thread_local std::vector<DeviceSet> need;
  owners(p, g, b - 1, own);
  const size_t n = size_t(p.devices);
  if (n > kMaxPlanDevices)
    throw std::invalid_argument("a plan for more than " + std::to_string(kMaxPlanDevices) + " devices");
  if (b == int(p.blocks.size())) {
    need.assign(size_t(h), host_gathers_tail_input(g, p) ? device_bit(0) : 0);
  } else {
    block_input_needs(g, p.blocks[size_t(b)], h, need);
    if (p.gather_every_block && b > 0)  // MoDNN gathers it all
      for (DeviceSet& m : need) m |= device_bit(0);
  }
  // One transfer from src to dst per run of rows.
  auto send = [&](int src, int dst) {
    return [&, src, dst](RowRange r) {
      out.push_back({Stage{b}, src, dst, node, r, rows_bytes(g, c, node, r.size())});
    };
  };
  // Secondary -> host: rows the host needs itself or relays to another secondary.
  for (size_t s = 1; s < n; ++s) {
    auto to_host = [&](int y) {
      return own[size_t(y)] == int(s) && (need[size_t(y)] & ~device_bit(s)) != 0;
    };
    for_each_run(h, to_host, nullptr, send(int(s), 0));
  }
  // Host -> secondary: every row the secondary needs and does not own.
  for (size_t d = 1; d < n; ++d) {
    auto from_host = [&](int y) {
      return (need[size_t(y)] & device_bit(d)) && own[size_t(y)] != int(d);
    };
    for_each_run(h, from_host, &own, send(0, int(d)));
  }
}

// The part of the tail the host runs alone.
double tail_ms(const Graph& g, const Plan& p, const Cluster& c) {
  double t = 0;
  for (int n = p.tail_first + p.split_tail; n < g.size(); ++n)
    t += c.devices[0].band_ms(g, n, {0, g.shape_of(n).h});
  return t;
}

// Split tail layer j: the host sends each secondary the layer's input rows it lacks (after the
// first split layer, all of them unless it computed the whole previous layer itself: a
// secondary keeps only a whole layer, as a whole image's worker has). Appended to `out`.
void append_tail_transfers(const Graph& g, const Cluster& c, const Plan& p, int j,
                           std::vector<Transfer>& out) {
  const int node = p.tail_first + j - 1, h = g.shape_of(node).h;
  const int nb = int(p.blocks.size());
  thread_local std::vector<int> own;
  owners(p, g, nb - 1, own);
  for (int d = 1; d < p.devices; ++d) {
    if (p.tail_slices.at(size_t(j)).at(size_t(d)).empty()) continue;  // computes no slice
    if (j > 0 && holds_whole_slice(g, p, j - 1, d)) continue;
    auto lacks = [&](int y) { return j > 0 || own[size_t(y)] != d; };
    for_each_run(h, lacks, j == 0 ? &own : nullptr, [&](RowRange r) {
      out.push_back({p.tail_stage(j), 0, d, node, r, rows_bytes(g, c, node, r.size())});
    });
  }
}

// A frame's CPU outside the layers (DataPathCost), in ms, at each end.
struct FrameCpu {
  double encode, seal, open, decode;
  double total() const { return encode + seal + open + decode; }
};
FrameCpu frame_cpu(const Cluster& c, const Transfer& t) {
  const DataPathCost &from = c.devices[size_t(t.src)].data_path, &to = c.devices[size_t(t.dst)].data_path;
  const double mb = double(t.bytes) * 1e-6;  // ns per byte x MB = ms
  return {mb * from.encode_ns, mb * (c.encrypted ? from.aead_ns : from.checksum_ns),
          mb * (c.encrypted ? to.aead_ns : to.checksum_ns), mb * to.decode_ns};
}

// The timeline of a plan: every device's compute and both ends of every transfer, image after
// image, each on the first free slot of the device's CPU, uplink and downlink.
struct Sim {
  const Graph& g;
  const Cluster& c;
  Plan& p;  // the timeline goes here
  std::vector<double> cpu, up, down;  // per device: compute, uplink, downlink free times (ms)
  // A batch plan's images are simulated one after another, not in time order: a pipelined
  // image's early halos are simulated after a whole image's result that leaves much later.
  // With image plans a link's busy intervals are kept, and a frame takes the first gap that fits
  // it (frames leave in the order they are ready, as the runtime sends them). Plans without
  // image plans keep the free times alone (the planner's search simulates hundreds of
  // thousands of them): exact for one image, and for a batch of them pessimistic where a later
  // image's frame could have gone earlier.
  using Intervals = std::vector<std::pair<double, double>>;
  std::vector<Intervals> up_busy = {}, down_busy = {};

  // The first start at or after `t` at which [start, start + dur) overlaps no busy interval.
  static double first_gap(double t, double dur, const Intervals& a, const Intervals& b) {
    for (bool moved = true; moved;) {
      moved = false;
      for (const Intervals* list : {&a, &b})
        for (const auto& [s, e] : *list)
          if (s < t + dur && e > t) t = e, moved = true;
    }
    return t;
  }
  int img = 0;
  // Per device, of the block before the current one: its compute's start and end, and its rows.
  std::vector<double> start_prev = {}, end_prev = {}, zone_rows_prev = {};
  // Per row of the current block's input: when it reached the host (rows the host relays).
  std::vector<double> relay_ready = {};
  const Plan* v = &p;  // the current image's plan (Plan::for_image): its zones, slices, transfers
  // Per image, when each device has its block 0 input where the host sent it at the start (an
  // image a worker runs whole, or a pass's first split image: send_inputs_first); else empty.
  std::vector<std::vector<double>> inputs_first = {};

  // Schedules a transfer ready at `ready`; returns when the receiver has decoded it. The data
  // path (DataPathCost) runs in line with the frame: encode, then the checksum or encryption as
  // the wire starts (the connection's thread), the same on receipt, then decode.
  double send(const Transfer& t, double ready) {
    const LinkModel& link = c.link_of(t.src, t.dst);
    const FrameCpu f = frame_cpu(c, t);
    const double dur = link.transfer_s(double(t.bytes)) * 1e3 + f.seal;
    double start = 0;
    if (up_busy.empty()) {
      start = std::max({ready + f.encode, up[size_t(t.src)], down[size_t(t.dst)]});
    } else {
      start = first_gap(ready + f.encode, dur, up_busy[size_t(t.src)], down_busy[size_t(t.dst)]);
      up_busy[size_t(t.src)].push_back({start, start + dur});
      down_busy[size_t(t.dst)].push_back({start, start + dur});
    }
    const double end = start + dur;
    up[size_t(t.src)] = down[size_t(t.dst)] = end;
    const double arrive = end + link.latency_s * 1e3 + f.open + f.decode;
    p.timeline.push_back({t.src, img, t.stage.index, "send", t.dst, start, end, t.bytes});
    p.timeline.push_back(
        {t.dst, img, t.stage.index, "recv", t.src, start + link.latency_s * 1e3, arrive, t.bytes});
    return arrive;
  }

  // Sends the rows block b needs (b == blocks.size(): the gather for the tail); fills `arrive`
  // with when each device has all of its input. Frames leave a port in the order their rows
  // are ready, as the runtime sends them, not in plan order: a relay waiting for one
  // secondary's rows must not hold back another's rows that are here (MoDNN at 100 Mbit/s was
  // predicted 18% slow).
  // Rows bound for the host go first: what the host relays waits for them.
  void send_block_inputs(size_t b, std::vector<double>& arrive) {
    const size_t n = size_t(p.devices), nb = v->blocks.size();
    arrive.assign(n, 0);
    relay_ready.assign(size_t(g.shape_of(b == 0 ? -1 : v->blocks[b - 1].last - 1).h), 0);
    using Ready = std::pair<double, const Transfer*>;  // when a frame can leave; which
    thread_local std::vector<Ready> direct, relayed;
    direct.clear();
    relayed.clear();
    for (const Transfer& t : v->transfers) {
      if (t.stage != Stage{int(b)}) continue;
      // At the tail the host's sends are the first split layer's broadcast (it shares the
      // gather's block number): run_tail sends them, once.
      if (b == nb && t.src == 0) continue;
      const size_t src = size_t(t.src);
      double ready = b == 0 ? 0 : end_prev[src];
      if (p.edge_first && b > 0 && zone_rows_prev[src] > 0)
        ready = detail::edge_first_ready(t, start_prev[src], end_prev[src], zone_rows_prev[src]);
      (t.src == 0 && t.dst != 0 ? relayed : direct).push_back({ready, &t});
    }
    // Ties in plan order: the pointers run through v->transfers in order (a stable sort without
    // stable_sort's scratch buffer).
    auto send_in_ready_order = [&](std::vector<Ready>& list) {
      std::sort(list.begin(), list.end());
      for (const auto& [ready, t] : list) {
        const double a = send(*t, ready);
        if (t->dst == 0)
          for (int y = t->rows.begin; y < t->rows.end; ++y) relay_ready[size_t(y)] = a;
        arrive[size_t(t->dst)] = std::max(arrive[size_t(t->dst)], a);
      }
    };
    send_in_ready_order(direct);
    // Rows the host relays wait for their arrival from the owning secondary.
    relays_ready = 0;
    for (auto& [ready, t] : relayed) {
      for (int y = t->rows.begin; y < t->rows.end; ++y) ready = std::max(ready, relay_ready[size_t(y)]);
      relays_ready = std::max(relays_ready, ready);
    }
    send_in_ready_order(relayed);
  }
  // When the last row the host relays into the current block is here: the host's compute
  // thread relays, so it starts its share of the block (or moves on) after that. Charged for
  // batch plans with image plans, where it holds back the host's next image (a pipelined
  // image's relays to its deep worker); not yet for single-image plans, whose planner tuning
  // predates it.
  double relays_ready = 0;
  double host_free(double t) const { return p.image_plans.empty() ? t : std::max(t, relays_ready); }

  // Every device computes block b once its input is here.
  void compute_block(size_t b, const std::vector<double>& arrive) {
    const BlockPlan& bp = v->blocks[b];
    thread_local std::vector<int> own;
    if (bp.overlap) detail::owners(*v, g, int(b) - 1, own);
    for (size_t d = 0; d < size_t(p.devices); ++d) {
      if (d == 0) cpu[0] = host_free(cpu[0]);
      if (bp.zones[d].empty()) {
        start_prev[d] = end_prev[d] = cpu[d];
        zone_rows_prev[d] = 0;
        continue;
      }
      double st = std::max(cpu[d], arrive[d]), en = 0;
      if (!bp.overlap)
        en = st + detail::zone_compute_ms(g, c.devices[d], bp, bp.zones[d]);
      else
        std::tie(st, en) = detail::overlap_compute(g, c.devices[d], bp, int(d), own, cpu[d], arrive[d]);
      cpu[d] = en;
      start_prev[d] = st;
      end_prev[d] = en;
      double rows = 0;
      for (const RowRange& z : bp.zones[d]) rows += z.size();
      zone_rows_prev[d] = rows;
      p.timeline.push_back({int(d), img, int(b), "compute", -1, st, en});
    }
  }

  // Split tail layer j from `st`: broadcast the layer's input, every device computes its slice,
  // slices come back. Returns when the host has them all.
  double split_tail_layer(int j, double st) {
    const size_t n = size_t(p.devices), nb = v->blocks.size();
    const int node = v->tail_first + j;
    std::vector<double> in(n, st);
    // A device that ran the whole image holds the first layer's input once its blocks are done,
    // and one that computed a whole layer holds the next one's.
    if (const size_t w = size_t(finishing_worker(g, *v)); j == 0 && w) in[w] = end_prev[w];
    for (size_t d = 1; j > 0 && d < n; ++d)
      if (holds_whole_slice(g, *v, j - 1, int(d))) in[d] = cpu[d];
    for (const Transfer& t : v->transfers) {
      if (t.stage != v->tail_stage(j) || t.src != 0) continue;
      // The first layer's input leaves in pieces: the host's own rows once computed, relayed
      // rows once they are here.
      double ready = std::max(st, cpu[0]);  // the host's thread sends, once done with its own work
      if (j == 0) {
        ready = end_prev[0];
        for (int y = t.rows.begin; y < t.rows.end; ++y) ready = std::max(ready, relay_ready[size_t(y)]);
      }
      in[size_t(t.dst)] = std::max(in[size_t(t.dst)], send(t, ready));
    }
    double done = 0;
    for (size_t d = 0; d < n; ++d) {
      const ChannelSlice sl = v->tail_slices[size_t(j)][d];
      if (sl.empty()) continue;
      const double frac = double(sl.size()) / double(g.shape_of(node).c);
      const double cs = std::max(cpu[d], in[d]);
      const double ce = cs + frac * c.devices[d].layer_ms(node, 1);
      cpu[d] = ce;
      p.timeline.push_back({int(d), img, int(nb) + j, "compute", -1, cs, ce});
      const Transfer back{v->tail_stage(j + 1), int(d), 0, node, {0, 1},
                          wire_bytes(c, node, uint64_t(sl.size()))};
      done = std::max(done, d == 0 ? ce : send(back, ce));
    }
    return done;
  }

  // The tail once the gather is here: split layers, then the host's part. Returns its end.
  // The host finishes an image whose last block a worker computes last in its pass
  // (HostRuntime's host_order): its part of the tail waits in `deferred` for run_deferred, and
  // it is free for the images it finishes itself.
  double run_tail(const std::vector<double>& arrive) {
    const bool defer = !p.image_plans.empty() && finishing_worker(g, *v) != 0;
    double st = defer ? arrive[0] : std::max(cpu[0], arrive[0]);
    for (int j = 0; j < v->split_tail; ++j) st = split_tail_layer(j, st);
    if (defer) {
      deferred.push_back({img, st, tail_ms(g, *v, c)});
      return st;
    }
    return host_compute(img, st, tail_ms(g, *v, c));
  }
  double host_compute(int image, double ready, double ms) {
    const double st = std::max(cpu[0], ready), en = st + ms;
    cpu[0] = en;
    p.timeline.push_back({0, image, v->stages(), "compute", -1, st, en});  // after the split stages
    return en;
  }
  struct HostPart {
    int image;
    double ready, ms;
  };
  std::vector<HostPart> deferred = {};
  // The host's parts of the workers' whole images of a pass, in order; returns the last end.
  double run_deferred() {
    double end = 0;
    for (const HostPart& h : deferred) end = std::max(end, host_compute(h.image, h.ready, h.ms));
    deferred.clear();
    return end;
  }

  // A batch plan with image plans: the host sends the input of every image whose last block a
  // worker computes (whole images, pipelined ones) in a pass through them at once and in order,
  // so that those devices start together, then the first split image's rows, which wait at each
  // worker behind its whole images (HostRuntime's Call::run, images_leaving_at).
  void send_inputs_first() {
    inputs_first.resize(size_t(p.batch));
    const int pass = int(p.image_plans.size());
    for (int split = 0; split < 2; ++split)
      for (int start = 0; start < p.batch; start += pass)
        for (int i = start; i < std::min(p.batch, start + pass); ++i) {
          img = i;
          v = &p.for_image(size_t(i));
          if (split ? !host_finishes_split(g, *v) : finishing_worker(g, *v) == 0) continue;
          send_block_inputs(0, inputs_first[size_t(i)]);
          if (split) break;  // the pass's first split image only
        }
  }

  // One image through every block and the tail; returns when its result is ready.
  double run_image(int image) {
    const size_t n = size_t(p.devices);
    img = image;
    v = &p.for_image(size_t(image));
    start_prev.assign(n, 0);
    end_prev.assign(n, 0);
    zone_rows_prev.assign(n, 1);
    thread_local std::vector<double> arrive;
    for (size_t b = 0;; ++b) {
      if (b == 0 && !inputs_first.empty() && !inputs_first[size_t(image)].empty())
        arrive = inputs_first[size_t(image)];
      else
        send_block_inputs(b, arrive);
      if (b == v->blocks.size()) return run_tail(arrive);
      compute_block(b, arrive);
    }
  }
};

// Every transfer of one image, in order, and the bytes over each link (per image plan, and
// their mean over the batch).
void collect_transfers(const Graph& g, const Cluster& c, Plan& p) {
  if (!p.image_plans.empty()) {
    std::vector<Plan> per = std::move(p.image_plans);
    collect_transfers(g, c, p);  // the split images' own
    p.bytes = 0;
    p.link_bytes.assign(size_t(p.devices), 0);
    for (Plan& ip : per) {
      collect_transfers(g, c, ip);
      p.bytes += ip.bytes / per.size();
      for (size_t d = 0; d < p.link_bytes.size(); ++d) p.link_bytes[d] += ip.link_bytes.at(d) / per.size();
    }
    p.image_plans = std::move(per);
    return;
  }
  const size_t n = size_t(p.devices), nb = p.blocks.size();
  p.transfers.clear();
  for (size_t b = 0; b <= nb; ++b) append_transfers_for(g, c, p, int(b), p.transfers);
  for (int j = 0; j < p.split_tail; ++j) append_tail_transfers(g, c, p, j, p.transfers);
  p.bytes = 0;
  p.link_bytes.assign(n, 0);
  for (const Transfer& t : p.transfers) {
    p.bytes += t.bytes;
    p.link_bytes[size_t(std::max(t.src, t.dst))] += t.bytes;
  }
  // Slices coming back to the host (not rows of a node: they are not Transfers).
  for (int j = 0; j < p.split_tail; ++j)
    for (size_t d = 1; d < n; ++d) {
      const uint64_t b = wire_bytes(c, p.tail_first + j, uint64_t(p.tail_slices[size_t(j)][d].size()));
      p.bytes += b;
      p.link_bytes[d] += b;
    }
}

}  // namespace

void simulate(const Graph& g, const Cluster& c, Plan& p) {
  const size_t n = size_t(p.devices);
  collect_transfers(g, c, p);
  p.timeline.clear();
  // Per image: a compute per device per block and per split tail layer, two events a transfer
  // (the image plans of a batch have about as many as the split ones).
  p.timeline.reserve(size_t(p.batch) * (n * (p.blocks.size() + 2 + size_t(p.split_tail)) +
                                        2 * (p.transfers.size() + n * size_t(p.split_tail))));
  Sim s{g, c, p, std::vector<double>(n, 0), std::vector<double>(n, 0), std::vector<double>(n, 0)};
  double finish = 0;
  if (!p.image_plans.empty()) {
    s.up_busy.resize(n);
    s.down_busy.resize(n);
    s.send_inputs_first();
  }
  const int pass = std::max(1, int(p.image_plans.size()));
  for (int start = 0; start < p.batch; start += pass) {
    // In pass order, as their frames reach each device (whole and pipelined images leave first,
    // in this order; the planner lists them so); the host's parts of those come last (run_tail).
    for (int img = start; img < std::min(p.batch, start + pass); ++img)
      finish = std::max(finish, s.run_image(img));
    finish = std::max(finish, s.run_deferred());
  }
  p.predicted_ms = finish;
}

double stage_cost(const Graph& g, const Cluster& c, const Plan& p, size_t b) {
  // Transfers of this stage: the host's uplink and downlink are the bottleneck of a star.
  thread_local std::vector<double> in_ms;
  thread_local std::vector<Transfer> transfers;
  in_ms.assign(size_t(p.devices), 0);
  transfers.clear();
  append_transfers_for(g, c, p, int(b), transfers);
  double host_up = 0, host_down = 0;
  for (const Transfer& t : transfers) {
    const LinkModel& link = c.link_of(t.src, t.dst);
    const double ms = link.transfer_s(double(t.bytes)) * 1e3 + frame_cpu(c, t).total();
    const double lat = link.latency_s * 1e3;
    if (t.src == 0) {
      host_up += ms;
      in_ms[size_t(t.dst)] = std::max(in_ms[size_t(t.dst)], host_down + host_up + lat);
    } else {
      host_down += ms;
      in_ms[0] = std::max(in_ms[0], host_down + lat);
    }
  }
  if (b == p.blocks.size()) return in_ms[0] + tail_ms(g, p, c);
  double stage = 0;
  for (size_t d = 0; d < size_t(p.devices); ++d)
    if (!p.blocks[b].zones[d].empty())
      stage = std::max(stage, in_ms[d] + zone_compute_ms(g, c.devices[d], p.blocks[b], p.blocks[b].zones[d]));
  return stage;
}

std::vector<double> stage_costs(const Graph& g, const Cluster& c, const Plan& p) {
  std::vector<double> out;
  for (size_t b = 0; b <= p.blocks.size(); ++b) out.push_back(stage_cost(g, c, p, b));
  return out;
}

double staged_cost(const Graph& g, const Cluster& c, const Plan& p) {
  double total = 0;
  for (double v : stage_costs(g, c, p)) total += v;
  return total;
}

}  // namespace eb::dist
