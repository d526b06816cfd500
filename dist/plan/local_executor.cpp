#include "dist/plan/local_executor.h"

#include <cstring>
#include <stdexcept>

namespace eb::dist {

namespace {
// One device's copy of one feature map: full height, with a flag per row it actually holds.
struct Held {
  Tensor t;
  std::vector<bool> has;
  void put(RowRange r, const float* src) {
    std::memcpy(t.row(r.begin), src, size_t(r.size()) * t.shape().row_size() * sizeof(float));
    for (int y = r.begin; y < r.end; ++y) has[size_t(y)] = true;
  }
  bool holds(RowRange r) const {
    for (int y = r.begin; y < r.end; ++y)
      if (!has[size_t(y)]) return false;
    return true;
  }
};
}  // namespace

Tensor execute_locally(const Graph& g, const Plan& p, const Tensor& input) {
  const size_t n = size_t(p.devices);
  std::vector<Held> cur(n);
  for (size_t d = 0; d < n; ++d) cur[d] = {Tensor(input.shape()), std::vector<bool>(size_t(input.h()), false)};
  cur[0].put({0, input.h()}, input.data());
  for (size_t b = 0; b <= p.blocks.size(); ++b) {
    for (const Transfer& t : p.transfers) {
      if (t.stage != Stage{int(b)}) continue;
      if (t.rows.empty()) throw std::logic_error("plan sends a band of zero rows");
      if (!cur[size_t(t.src)].holds(t.rows))
        throw std::logic_error("device " + std::to_string(t.src) + " sends rows it does not hold");
      cur[size_t(t.dst)].put(t.rows, cur[size_t(t.src)].t.row(t.rows.begin));
    }
    if (b == p.blocks.size()) break;
    const BlockPlan& bp = p.blocks[b];
    const Shape os = g.shape_of(bp.last - 1);
    std::vector<Held> next(n);
    for (size_t d = 0; d < n; ++d) {
      next[d] = {Tensor(os), std::vector<bool>(size_t(os.h), false)};
      for (const RowRange& z : bp.zones[d]) {
        const RowRange need = g.block_input_rows(bp.first, bp.last, z);
        if (!cur[d].holds(need))
          throw std::logic_error("device " + std::to_string(d) + " lacks input rows for block " + std::to_string(b));
        const Band in{cur[d].t.rows(need), need.begin};
        const Band out = g.run_block(bp.first, bp.last, in, z);
        next[d].put(z, out.t.data());
      }
    }
    cur = std::move(next);
  }
  // The host gathers the tail's input, unless one worker computes the image whole and keeps it.
  const size_t keeper = host_gathers_tail_input(g, p) ? 0 : size_t(finishing_worker(g, p));
  if (!cur[keeper].holds({0, cur[keeper].t.h()})) throw std::logic_error("no device holds the rows for the tail");
  Tensor x = cur[keeper].t;
  for (int j = 0; j < p.split_tail; ++j) {  // every device its channel slice of the whole input
    const int node = p.tail_first + j;
    Tensor y(g.shape_of(node));
    int next = 0;
    for (const ChannelSlice& sl : p.tail_slices.at(size_t(j))) {
      if (sl.empty()) continue;
      if (sl.begin != next) throw std::logic_error("tail slices do not tile the layer");
      if (!g.node(node).layer->forward_channels(Band{x, 0}, sl.begin, sl.end, y.data() + sl.begin))
        throw std::logic_error("tail layer cannot be split by channels");
      next = sl.end;
    }
    if (next != y.shape().c) throw std::logic_error("tail slices do not cover the layer");
    x = y;
  }
  const int first = p.tail_first + p.split_tail;
  if (first >= g.size()) return x;
  return g.run_block(first, g.size(), Band{x, 0}, {0, 1}).t;
}

}  // namespace eb::dist
