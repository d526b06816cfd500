#include "dist/runtime/executor.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "core/compute_hook.h"
#include "kernels/microkernels.h"
#include "dist/runtime/palette_wire.h"
#include "dist/runtime/sparse_wire.h"

namespace eb::dist {

FeatureStore::Held& FeatureStore::get(uint64_t image, int node) {
  auto key = std::make_pair(image, node);
  auto it = maps_.find(key);
  if (it != maps_.end()) return it->second;
  const Shape s = g_.shape_of(node);
  Held h;
  // A spare still viewed elsewhere (a raw fp32 frame in flight) is not written.
  std::vector<Tensor>& spare = spares_.by_node[node];
  const auto free = std::find_if(spare.begin(), spare.end(),
                                 [&](const Tensor& t) { return t.shape() == s && t.sole_owner(); });
  if (free != spare.end()) {
    h.t = std::move(*free);  // its rows are stale: `has` says none is held
    spare.erase(free);
  } else {
    h.t = Tensor::sparse(s);
    ++mapped_;
  }
  h.has.assign(size_t(s.h), false);
  return maps_[key] = std::move(h);
}

void FeatureStore::put(uint64_t image, int node, RowRange r, const float* src) {
  Held& h = get(image, node);
  if (r.empty()) return;
  std::memcpy(h.t.row(r.begin), src, size_t(r.size()) * h.t.shape().row_size() * sizeof(float));
  for (int y = r.begin; y < r.end; ++y) h.has[size_t(y)] = true;
}

void FeatureStore::put_channels(uint64_t image, int node, ChannelSlice channels, const float* src) {
  Held& h = get(image, node);
  const int row = int(h.t.shape().row_size());
  const int c0 = channels.begin, c1 = channels.end;
  if (h.t.h() != 1 || c0 < 0 || c1 > row || c0 >= c1) throw ProtocolError("channel slice out of range");
  if (h.chan.empty()) h.chan.assign(size_t(row), false);
  for (int c = c0; c < c1; ++c)
    if (h.chan[size_t(c)]) throw ProtocolError("overlapping channel slices");
  std::memcpy(h.t.data() + c0, src, size_t(channels.size()) * sizeof(float));
  for (int c = c0; c < c1; ++c) h.chan[size_t(c)] = true;
  h.chans += channels.size();
  if (h.chans == row) h.has[0] = true;
}

void FeatureStore::put_wire(uint64_t image, const Json& meta, const std::vector<uint8_t>& data) {
  long node, row0, rows, c0 = -1, c1 = -1;
  std::string wire;
  try {
    node = meta.at("node").integer("node");
    row0 = meta.at("row0").integer("row0");
    rows = meta.at("rows").integer("rows");
    wire = meta.at("wire").string("wire");
    if (meta.has("c0")) c0 = meta.at("c0").integer("c0"), c1 = meta.at("c1").integer("c1");
  } catch (const std::exception& e) {
    throw ProtocolError(std::string("malformed rows header: ") + e.what());
  }
  if (node < -1 || node >= g_.size()) throw ProtocolError("rows for an unknown node");
  const Shape s = g_.shape_of(int(node));
  if (row0 < 0 || rows <= 0 || row0 + rows > s.h) throw ProtocolError("rows outside the feature map");
  if (wire != "fp32" && wire != "fp32z" && wire != "fp32p" && wire != "fp16")
    throw ProtocolError("unknown wire format");
  const bool slice = c0 != -1 || c1 != -1;
  if (slice && (node < 0 || s.h != 1 || c0 < 0 || c0 >= c1 || c1 > long(s.row_size())))
    throw ProtocolError("channel slice out of range");
  const size_t n = slice ? size_t(c1 - c0) : size_t(rows) * s.row_size();
  const bool sparse = wire == "fp32z", palette = wire == "fp32p";
  if (palette && (slice || node != -1)) throw ProtocolError("palette rows other than the input's");
  const size_t bpv = wire == "fp16" ? 2 : 4;
  if (!sparse && !palette && data.size() != n * bpv)
    throw ProtocolError("rows frame has the wrong number of bytes");
  // fp32 is copied, fp32z expanded, fp32p looked up, fp16 widened, straight into the store (a
  // slice: into a small buffer first, as put_channels checks it against the slices already here).
  auto decode = [&](float* dst) {
    const ComputeScope section(section_of(Work::decode));
    if (sparse) {
      sparse_decode(data.data(), data.size(), dst, n);  // checks the size before writing
      return;
    }
    if (palette) {
      palette_decode(data.data(), data.size(), dst, n, s.c);  // checks everything before writing
      return;
    }
    if (bpv == 4) {
      std::memcpy(dst, data.data(), n * sizeof(float));
      return;
    }
    // The payload starts a heap buffer: aligned for uint16_t.
    kernels::active().f16_to_f32(reinterpret_cast<const uint16_t*>(data.data()), dst, n);
  };
  if (slice) {
    std::vector<float> values(n);
    decode(values.data());
    put_channels(image, int(node), {int(c0), int(c1)}, values.data());
    return;
  }
  Held& h = get(image, int(node));
  decode(h.t.row(int(row0)));
  for (long y = row0; y < row0 + rows; ++y) h.has[size_t(y)] = true;
}

bool FeatureStore::holds(uint64_t image, int node, RowRange r) const {
  if (r.empty()) return true;
  auto it = maps_.find({image, node});
  if (it == maps_.end()) return false;
  for (int y = r.begin; y < r.end; ++y)
    if (!it->second.has[size_t(y)]) return false;
  return true;
}

bool FeatureStore::holds_channels(uint64_t image, int node, ChannelSlice channels) const {
  if (channels.empty() || holds(image, node, {0, 1})) return true;
  auto it = maps_.find({image, node});
  if (it == maps_.end() || it->second.chan.empty()) return false;
  for (int c = channels.begin; c < channels.end; ++c)
    if (!it->second.chan[size_t(c)]) return false;
  return true;
}

const float* FeatureStore::row(uint64_t image, int node, int y) const {
  return maps_.at({image, node}).t.row(y);
}

Band FeatureStore::band(uint64_t image, int node, RowRange r) const {
  return Band{maps_.at({image, node}).t.rows(r), r.begin};
}

void FeatureStore::drop(uint64_t image) {
  spares_.most_images = std::max(spares_.most_images, images());
  for (auto it = maps_.begin(); it != maps_.end();) {
    if (it->first.first != image) {
      ++it;
      continue;
    }
    std::vector<Tensor>& spare = spares_.by_node[it->first.second];
    if (spare.size() < spares_.most_images) spare.push_back(std::move(it->second.t));
    it = maps_.erase(it);
  }
}

void FeatureStore::drop_all() {
  while (!maps_.empty()) drop(maps_.begin()->first.first);
}

size_t FeatureStore::images() const {
  size_t n = 0;
  uint64_t last = ~0ull;
  for (const auto& kv : maps_)
    if (kv.first.first != last) {
      ++n;
      last = kv.first.first;
    }
  return n;
}

namespace {
// The order in which a device computes its zones: one piece per zone, or with edge-first the
// rows others need (each zone cut at their boundaries) before the rest.
std::vector<RowRange> pieces(const Graph& g, const Plan& p, int d, int b) {
  const std::vector<RowRange>& zones = p.blocks[size_t(b)].zones[size_t(d)];
  if (!p.edge_first) return zones;
  std::vector<RowRange> edges, rest;
  // Pieces widened to the last layer's row granule, so no Winograd tile is computed twice.
  const int gr = g.node(p.blocks[size_t(b)].last - 1).layer->row_granule();
  for (const RowRange& z : zones) {
    std::vector<int> cuts{z.begin, z.end};
    std::vector<RowRange> wanted;
    for (const Transfer& t : p.transfers) {
      if (t.stage != Stage{b + 1} || t.src != d) continue;
      const RowRange x{std::max(z.begin, t.rows.begin / gr * gr),
                       std::min(z.end, (t.rows.end + gr - 1) / gr * gr)};
      if (x.empty()) continue;
      cuts.push_back(x.begin);
      cuts.push_back(x.end);
      wanted.push_back(x);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      const RowRange piece{cuts[i], cuts[i + 1]};
      bool needed = false;
      for (const RowRange& w : wanted) needed = needed || w.contains(piece);
      (needed ? edges : rest).push_back(piece);
    }
  }
  edges.insert(edges.end(), rest.begin(), rest.end());
  return edges;
}
}  // namespace

bool compute_zones(const Graph& g, const Plan& p, int d, int b, uint64_t image, FeatureStore& s,
                   ComputeSpan* span, const std::function<void()>& on_piece) {
  const BlockPlan& bp = p.blocks[size_t(b)];
  const int in_node = bp.first - 1, out_node = bp.last - 1;
  auto compute = [&](RowRange rows) {
    const RowRange need = g.block_input_rows(bp.first, bp.last, rows);
    const Band out = g.run_block(bp.first, bp.last, s.band(image, in_node, need), rows);
    s.put(image, out_node, out.rows(), out.t.data());
    if (on_piece) on_piece();
  };
  const std::vector<RowRange> order = pieces(g, p, d, b);
  if (bp.overlap) {
    // Whatever part of the zones the rows here allow, now; the rest on a later call.
    auto have = [&](RowRange r) { return s.holds(image, in_node, r); };
    const int64_t t0 = now_us();
    bool computed = false, progress = true;
    while (progress) {
      progress = false;
      for (const RowRange& piece : order) {
        for (int y = piece.begin; y < piece.end && !progress;) {
          if (s.holds(image, out_node, {y, y + 1})) {
            ++y;
            continue;
          }
          int e = y + 1;
          while (e < piece.end && !s.holds(image, out_node, {e, e + 1})) ++e;
          const RowRange q = computable_rows(g, bp.first, bp.last, {y, e}, have);
          if (!q.empty()) {
            compute(q);
            progress = computed = true;
          }
          y = e;
        }
        if (progress) break;  // the store changed: scan again from the first piece
      }
    }
    if (span && computed) *span = {d, b, image, t0, now_us()};
    for (const RowRange& z : bp.zones[size_t(d)])
      if (!s.holds(image, out_node, z)) return false;
    return true;
  }
  for (const RowRange& z : bp.zones[size_t(d)])
    if (!s.holds(image, in_node, g.block_input_rows(bp.first, bp.last, z))) return false;
  const int64_t t0 = now_us();
  for (const RowRange& piece : order) compute(piece);
  if (span) *span = {d, b, image, t0, now_us()};
  return true;
}

namespace {
// Per node, what device d computes in plan p: all of it, or channels of a split FC layer.
struct NodeShare {
  bool whole = false;
  RowRange channels;
  bool operator==(const NodeShare& o) const { return whole == o.whole && channels == o.channels; }
};

std::vector<NodeShare> share_of(const Graph& g, const Plan& p, int d) {
  std::vector<NodeShare> s(size_t(g.size()));
  if (!p.image_plans.empty()) {  // what any image's plan gives it (a whole image: everything)
    for (const Plan& ip : p.image_plans) {
      const std::vector<NodeShare> one = share_of(g, ip, d);
      for (size_t n = 0; n < s.size(); ++n) {
        s[n].whole = s[n].whole || one[n].whole;
        if (!one[n].channels.empty())
          s[n].channels = s[n].channels.empty() ? one[n].channels : s[n].channels.unite(one[n].channels);
      }
    }
    return s;
  }
  for (const BlockPlan& b : p.blocks)
    if (!b.zones.at(size_t(d)).empty())
      for (int n = b.first; n < b.last; ++n) s[size_t(n)].whole = true;
  for (int j = 0; j < p.split_tail; ++j) {
    const ChannelSlice sl = p.tail_slices.at(size_t(j)).at(size_t(d));
    if (!sl.empty()) s[size_t(p.tail_first + j)].channels = {sl.begin, sl.end};
  }
  if (d == 0)
    for (int n = std::max(0, p.tail_first + p.split_tail); n < g.size(); ++n) s[size_t(n)].whole = true;
  return s;
}
}  // namespace

void load_for_plan(const Graph& g, const Plan& p, int d) {
  const std::vector<NodeShare> s = share_of(g, p, d);
  std::vector<int> todo;
  for (int n = 0; n < g.size(); ++n)
    if ((s[size_t(n)].whole || !s[size_t(n)].channels.empty()) && !g.holds(n, s[size_t(n)].channels))
      todo.push_back(n);
  // The profile and the whole-model local runs streamed every layer through the heap; what
  // they freed would stay resident beside the share (a MobileNet-V1 host: 16 MB more).
  // Each layer's source weights, freed once packed, would stay too.
  if (todo.empty()) return;
  release_free_memory();
  for (int n : todo) g.load(n, s[size_t(n)].channels);
  release_free_heap();
}

void release_outside_plan(const Graph& g, const Plan& before, const Plan& now, int d) {
  const std::vector<NodeShare> a = share_of(g, before, d), b = share_of(g, now, d);
  for (int n = 0; n < g.size(); ++n)
    if (!(a[size_t(n)] == b[size_t(n)])) g.unload(n);
}

bool compute_tail_slice(const Graph& g, const Plan& p, int d, int j, uint64_t image,
                        const FeatureStore& s, std::vector<float>* out) {
  const int node = p.tail_first + j;
  const ChannelSlice sl = p.tail_slices.at(size_t(j)).at(size_t(d));
  const RowRange all{0, g.shape_of(node - 1).h};
  out->clear();
  if (sl.empty()) return true;  // nothing to compute, and no input is sent to it
  if (!s.holds(image, node - 1, all)) return false;
  out->resize(size_t(sl.size()));
  ComputeScope section({g.node(node).layer.get(), ComputeSection::Axis::channels, sl.begin, sl.end});
  if (!sl.empty() &&
      !g.node(node).layer->forward_channels(s.band(image, node - 1, all), sl.begin, sl.end, out->data()))
    throw std::logic_error("tail layer cannot be split by channels");
  return true;
}

namespace {
// Queues n values as a ROWS frame: fp16, or exact fp32 either as palettes
// (dist/runtime/palette_wire.h: the input's rows, `channels` 1-4; 0: not the input) or with its zeros
// elided (dist/runtime/sparse_wire.h) where that saves at least an eighth of the bytes, or
// straight from `src` (kept alive by `keep`).
void send_values(Peer& to, uint64_t image, Json meta, std::shared_ptr<const void> keep,
                 const float* src, size_t n, int channels, bool fp16, Peer::SentFn on_sent) {
  meta["image"] = static_cast<unsigned long>(image);
  std::optional<ComputeScope> section(std::in_place, section_of(Work::encode));
  // Every form leaves the same way: `hold` keeps `data` alive until the frame is written.
  auto send_frame = [&](const char* wire, std::shared_ptr<const void> hold, const void* data, size_t bytes) {
    meta["wire"] = wire;
    section.reset();
    to.send_async(MsgType::rows, image, meta, std::move(hold), data, bytes, std::move(on_sent));
  };
  if (!fp16 && channels >= 1 && channels <= kPaletteMaxChannels) {
    auto p = palette_encode(src, n, channels);
    if (p && compact_form_pays(p->size(), n * sizeof(float))) {
      auto z = std::make_shared<std::vector<uint8_t>>(std::move(*p));
      return send_frame("fp32p", z, z->data(), z->size());
    }
  }
  if (!fp16) {
    if (std::shared_ptr<SparseFrame> z = SparseFrame::encode_if_smaller(src, n))
      return send_frame("fp32z", z, z->data(), z->size());
    return send_frame("fp32", std::move(keep), src, n * sizeof(float));
  }
  auto half = std::make_shared<std::vector<uint16_t>>(n);
  kernels::active().f32_to_f16(src, half->data(), n);
  send_frame("fp16", half, half->data(), n * 2);
}
}  // namespace

void send_rows(Peer& to, uint64_t image, const Transfer& t, const FeatureStore& s, bool fp16,
               const Json& extra, Peer::SentFn on_sent) {
  Json meta = extra.is_object() ? extra : Json::object();
  meta["node"] = t.node;
  meta["row0"] = t.rows.begin;
  meta["rows"] = t.rows.size();
  const Band band = s.band(image, t.node, t.rows);
  send_values(to, image, std::move(meta), band.t.storage(), band.t.data(), band.t.size(),
              t.node == -1 ? band.t.c() : 0,
              fp16, std::move(on_sent));
}

void send_slice(Peer& to, uint64_t image, int node, ChannelSlice channels,
                std::shared_ptr<const std::vector<float>> values, bool fp16, const Json& extra) {
  Json meta = extra.is_object() ? extra : Json::object();
  meta["node"] = node;
  meta["row0"] = 0;
  meta["rows"] = 1;
  meta["c0"] = channels.begin;
  meta["c1"] = channels.end;
  const float* src = values->data();
  const size_t n = values->size();
  send_values(to, image, std::move(meta), std::move(values), src, n, 0, fp16, {});
}

}  // namespace eb::dist
