#include "dist/plan/memory.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "core/buffer_cache.h"
#include "kernels/cache.h"

namespace eb::dist {
namespace {
constexpr double kMb = 1024.0 * 1024.0;
// Bands freed stay mapped for the next run (core/buffer_cache.h), up to this many times the
// largest set live at once: what a device maps for its activations.
constexpr double kCachedSets = double(kCachedWorkingSets);

double band_mb(const Graph& g, int node, RowRange r) {
  return double(r.size()) * double(g.shape_of(node).row_size()) * sizeof(float) / kMb;
}

// Graph::run_block frees each band after its last use: along a chain, a layer's input and
// output are what is live at once.
double block_peak_mb(const Graph& g, int first, int last, RowRange out) {
  const std::vector<RowRange> need = g.block_needs(first, last, out);
  double peak = 0;
  for (int n = first; n < last; ++n)
    peak = std::max(peak, band_mb(g, n - 1, need[size_t(n - first)]) + band_mb(g, n, need[size_t(n - first + 1)]));
  return peak;
}

RowRange span(const std::vector<RowRange>& zones) {
  RowRange r{0, 0};
  for (const RowRange& z : zones)
    if (!z.empty()) r = r.empty() ? z : r.unite(z);
  return r;
}

// The rows a device keeps in its FeatureStore for an image until it is done (a batch's images
// are all in flight at once): each block input it receives or holds (with halos) and each zone
// it computes; the host also the image and the gathered input of the tail. The store maps whole
// maps afresh (Tensor::sparse, not from the buffer cache), so only the rows written are resident;
// the next image of the plan reuses them, writing the same rows (a batch plan: rows its
// whole-image plan covers, planner.cpp), so what stays resident is within this.
double store_mb(const Graph& g, const Plan& p, int d) {
  std::map<int, RowRange> held;
  auto add = [&](int node, RowRange r) {
    if (r.empty()) return;
    RowRange& h = held[node];
    h = h.empty() ? r : h.unite(r);
  };
  for (const BlockPlan& b : p.blocks)
    for (const RowRange& z : b.zones.at(size_t(d)))
      if (!z.empty()) add(b.last - 1, z), add(b.first - 1, g.block_input_rows(b.first, b.last, z));
  if (d == 0) {
    add(-1, {0, g.input.h});
    if (p.tail_first > 0 && host_gathers_tail_input(g, p)) add(p.tail_first - 1, {0, g.shape_of(p.tail_first - 1).h});
  }
  double mb = 0;
  for (const auto& [node, rows] : held) mb += band_mb(g, node, rows);
  return mb;
}

// A worker loads layer after layer (Graph::load): while one is packed its untransformed
// weights exist too, so the peak is every packed layer plus the largest source.
DeviceMemory worker_memory(const Graph& g, const Plan& p, int d) {
  DeviceMemory m;
  double transient = 0;
  auto hold = [&](int n, RowRange channels) {
    m.weights_mb += double(g.node(n).layer->packed_bytes(channels)) / kMb;
    transient = std::max(transient, double(g.node(n).layer->source_bytes(channels)) / kMb);
  };
  for (const BlockPlan& b : p.blocks) {
    const RowRange zone = span(b.zones.at(size_t(d)));
    if (zone.empty()) continue;
    for (int n = b.first; n < b.last; ++n) hold(n, {});
    m.activations_mb = std::max(m.activations_mb, block_peak_mb(g, b.first, b.last, zone));
  }
  m.activations_mb += store_mb(g, p, d) * std::max(p.batch, 1);  // a block runs beside the store's images
  m.activations_mb *= kCachedSets;
  for (int j = 0; j < p.split_tail; ++j) {
    const ChannelSlice sl = p.tail_slices.at(size_t(j)).at(size_t(d));
    if (!sl.empty()) hold(p.tail_first + j, {sl.begin, sl.end});
  }
  m.activations_mb = std::max(m.activations_mb, transient);  // loading comes before running
  return m;
}

// The host holds its share like a worker, and the rest of the tail. When it runs the whole
// model (the local comparison, a dropped worker's work) it streams what it lacks through memory
// (Graph::forward): one such layer at a time, or one slice of an FC layer, with its source while
// it is packed, beside a whole image's bands.
DeviceMemory host_memory(const Graph& g, const Plan& p, double sweep_mb) {
  DeviceMemory m = worker_memory(g, p, 0);
  std::vector<bool> held(size_t(g.size()), false);
  for (const BlockPlan& b : p.blocks)
    if (!span(b.zones.at(0)).empty())
      for (int n = b.first; n < b.last; ++n) held[size_t(n)] = true;
  for (int n = std::max(0, p.tail_first + p.split_tail); n < g.size(); ++n) {
    m.weights_mb += double(g.node(n).layer->packed_bytes()) / kMb;
    held[size_t(n)] = true;
  }
  double stream = 0;
  for (int n = 0; n < g.size(); ++n) {
    const Layer& l = *g.node(n).layer;
    if (held[size_t(n)]) continue;
    RowRange part{};  // the whole layer, or one slice of it
    if (l.splits_channels()) {
      const size_t per = l.input_shapes().at(0).size() * sizeof(float);
      part = {0, int(std::max<size_t>(1, Graph::kStreamSliceBytes / per))};
    }
    stream = std::max(stream, double(l.packed_bytes(part) + l.source_bytes(part)) / kMb);
  }
  const int end = g.spatial_end();
  const double local = end > 0 ? block_peak_mb(g, 0, end, {0, g.shape_of(end - 1).h}) : 0;
  m.activations_mb = std::max(m.activations_mb, kCachedSets * local + stream);
  // The images, which its caller holds through every run.
  m.activations_mb += band_mb(g, -1, {0, g.input.h}) * std::max(p.batch, 1);
  // Its profile and its streamed local runs sweep the caches (kernels/cache.h) with a buffer
  // sized from its own caches.
  m.activations_mb += sweep_mb;
  return m;
}
}  // namespace

MemoryShortfall memory_shortfall(const Graph& g, const Cluster& c, const Plan& p) {
  const std::vector<DeviceMemory> m = predict_memory(g, c, p);
  for (size_t d = 0; d < m.size() && d < c.devices.size(); ++d) {
    const double have = c.devices[d].memory_mb;
    if (have > 0 && m[d].total_mb > have) return {int(d), m[d].total_mb, have};
  }
  return {};
}

std::string MemoryShortfall::message(const Cluster& c) const {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "device %d (%s) would need %.0f MB and has %.0f MB (%.0f MB short) in every plan "
                "tried; give it more memory (profile --memory), or leave it out",
                device, c.devices.at(size_t(device)).name.c_str(), need_mb, have_mb, need_mb - have_mb);
  return buf;
}

double host_sweep_mb(const Cluster& c) {
  if (!c.devices.empty() && c.devices[0].sweep_mb > 0) return c.devices[0].sweep_mb;
  return double(kernels::cache_sweep_bytes()) / kMb;
}

namespace {
std::vector<DeviceMemory> predict_for_sweep(const Graph& g, const Plan& p, double sweep_mb) {
  if (!p.image_plans.empty()) {
    // Per device, the most any image's plan needs: a whole image's share holds every layer a
    // split one does, and the store counts the batch's images in flight either way.
    std::vector<DeviceMemory> out(size_t(std::max(p.devices, 1)));
    for (const Plan& one : p.image_plans) {
      Plan ip = one;  // small: image plans hold no timeline
      ip.batch = p.batch;
      const std::vector<DeviceMemory> m = predict_for_sweep(g, ip, sweep_mb);
      for (size_t d = 0; d < out.size(); ++d) {
        out[d].weights_mb = std::max(out[d].weights_mb, m[d].weights_mb);
        out[d].activations_mb = std::max(out[d].activations_mb, m[d].activations_mb);
        out[d].total_mb = std::max(out[d].total_mb, m[d].total_mb);
      }
    }
    return out;
  }
  std::vector<DeviceMemory> out;
  for (int d = 0; d < std::max(p.devices, 1); ++d) {
    DeviceMemory m = d == 0 ? host_memory(g, p, sweep_mb) : worker_memory(g, p, d);
    m.total_mb = kBaseMb + (d == 0 ? kHostHeapMb : 0) + m.weights_mb + m.activations_mb;
    out.push_back(m);
  }
  return out;
}
}  // namespace

std::vector<DeviceMemory> predict_memory(const Graph& g, const Cluster& c, const Plan& p) {
  return predict_for_sweep(g, p, host_sweep_mb(c));
}

}  // namespace eb::dist
