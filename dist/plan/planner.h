// Band planner: which device computes which output rows of which fused block, what travels
// between them, and how long it should take.
//
// Topology: a star. Device 0 is the host (it holds the image and runs the host-only tail);
// secondaries talk only to the host, so rows one secondary needs from another are relayed.
// Schemes:
//   local  - the host alone.
//   modnn  - MoDNN: one block per layer, outputs gathered at the host and re-scattered
//            (with halos) after every layer.
//   dpfp   - fused blocks chosen by dynamic programming; between blocks only halo rows travel.
//   halp   - host-assisted (the whole schedule: dist/plan/halp.cpp): segments ordered S1, H, S2, H, ..., Sk so the host computes the zones
//            between secondaries; every halo a secondary needs comes from the host in one hop,
//            optionally (Cluster::edge_first) rows others need are computed first so transfers
//            overlap compute, and the host share is optimised. Blocks by the same DP.
#pragma once
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "core/graph.h"
#include "dist/plan/link.h"
#include "dist/plan/profile.h"

namespace eb::dist {

enum class Scheme { local, modnn, dpfp, halp };
const char* scheme_name(Scheme s);
Scheme parse_scheme(const std::string& s);  // throws std::invalid_argument

// The most devices a plan spans, the host included: the simulator keeps one bit per device for
// each row (dist/plan/simulate.cpp). The command line refuses more before any work.
inline constexpr size_t kMaxPlanDevices = 64;

struct Cluster {
  std::vector<DeviceProfile> devices;  // [0] is the host
  LinkModel link;
  // Per device d >= 1: its own link to the host (a star: every transfer has the host at one end).
  // Empty: every device has `link`. Boards on one LAN differ (a Pi on Wi-Fi beside one on
  // Ethernet); a plan for the slowest link would starve the fast ones.
  std::vector<LinkModel> links;
  const LinkModel& link_to(int d) const { return links.empty() ? link : links[size_t(d)]; }
  // The link a transfer crosses.
  const LinkModel& link_of(int src, int dst) const { return link_to(src == 0 ? dst : src); }
  // One link per worker (devices 1..n, in order), or one for all; `link` becomes the slowest
  // rate with the longest delay (what a single-link estimate assumes). Throws
  // std::invalid_argument on another count.
  void set_worker_links(const std::vector<LinkModel>& per_worker, size_t workers);
  // The per-worker links set above (devices 1..n), or empty: `link` for all.
  std::vector<LinkModel> worker_links() const {
    return links.empty() ? std::vector<LinkModel>() : std::vector<LinkModel>(links.begin() + 1, links.end());
  }
  // Each board's memory (DeviceProfile::memory_mb) from "SIZE" for all or "S0,S1,..." one per
  // device, host first (parse_memory_mb; 0: no limit). Throws std::invalid_argument.
  void set_memory(const std::string& spec);
  int bytes_per_value = 4;  // 4: fp32 on the wire, 2: fp16
  // The most distinct values per channel in the images to plan for, where at most 256 (an 8-bit
  // image at the model's size: the runtime sends its rows as palettes, a byte per value, a
  // quarter of fp32's link time); 0: more, or not known: plain fp32.
  int input_levels = 0;
  bool encrypted = false;   // frames sealed (AEAD) rather than checksummed: DataPathCost
  // HALP only: compute the rows others need first and send them while the interior computes.
  // Off by default: a thin piece pushed through a fused block recomputes a wide receptive field
  // (widened further by Winograd tile alignment), which measured slower than it saved here.
  bool edge_first = false;
  // Zone boundaries at the start of a plan snapped to whole Winograd tiles (6, 4 or 2 rows at fixed
  // positions, so that outputs equal the local run's): a boundary inside a tile makes both of
  // its devices compute all of it. The planner tries both (planner.cpp, plan_scheme).
  bool tile_aligned_zones = false;
};

// Half-open range of output channels [begin, end) of a split tail layer: the part one device
// computes. Not a RowRange: rows and channels never mix.
struct ChannelSlice {
  int begin = 0;
  int end = 0;
  int size() const { return end > begin ? end - begin : 0; }
  bool empty() const { return end <= begin; }
  bool operator==(const ChannelSlice& o) const { return begin == o.begin && end == o.end; }
};

struct BlockPlan {
  int first = 0, last = 0;                   // nodes [first, last)
  std::vector<std::vector<RowRange>> zones;  // per device: output rows of node last-1
  // HALP: every device first computes the rows of its zones it can from the rows it already
  // holds, while the halos from its neighbours are in flight, and the rest once they are here.
  // Set per block where the extra pieces (each pays a layer's fixed cost again) cost less than
  // the waiting they hide.
  bool overlap = false;
};

// The largest part of `want` (output rows of block [first, last)) whose block input rows all
// pass have(); where trimmed, its ends move to the last layer's row granule so that computing
// the rest later recomputes no Winograd tile. Empty when nothing can be computed yet.
RowRange computable_rows(const Graph& g, int first, int last, RowRange want,
                         const std::function<bool(RowRange)>& have);

// One step of a plan's execution, in order: stage b < blocks.size() is block b; stage
// blocks.size() + j is tail layer j (its input is gathered to the host and, for a split tail
// layer, sent on to the secondaries; not where the finishing_worker keeps it). A type of
// its own, so that a stage is never taken for a block or a tail layer index: Plan converts
// between them.
struct Stage {
  int index = 0;
  bool operator==(Stage o) const { return index == o.index; }
  bool operator!=(Stage o) const { return index != o.index; }
  bool operator<=(Stage o) const { return index <= o.index; }
  Stage next() const { return {index + 1}; }
};

// Rows of one tensor moving over one link. node: producer of the rows (-1: the input image).
struct Transfer {
  Stage stage;  // the stage that consumes the rows
  int src, dst;
  int node;
  RowRange rows;
  uint64_t bytes;
};

struct Event {
  int device, image, block;
  std::string what;  // "compute", "send", "recv"
  int peer;          // other end of a transfer, -1 for compute
  double start_ms, end_ms;
  uint64_t bytes = 0;  // send and recv
};

struct Plan {
  Scheme scheme = Scheme::local;
  int devices = 1, batch = 1;
  bool gather_every_block = false;  // MoDNN
  bool edge_first = false;          // HALP with Cluster::edge_first
  double host_share = 1.0;
  std::vector<BlockPlan> blocks;  // cover [0, tail_first)
  int tail_first = 0;
  // The first split_tail tail layers (fully connected) run on every device, each computing
  // its slice of output channels tail_slices[j][d]; the host gathers the slices and sends the
  // whole vector on. A large first FC layer (VGG-16's fc6: 400 MB of weights) would otherwise
  // be the host's alone. The rest of the tail runs on the host.
  int split_tail = 0;
  std::vector<std::vector<ChannelSlice>> tail_slices;  // [tail layer][device]
  std::vector<Transfer> transfers;  // for one image, in order
  std::vector<Event> timeline;      // all images
  double predicted_ms = 0;          // until the last image's result
  uint64_t bytes = 0;               // per image, over all links
  std::vector<uint64_t> link_bytes; // per image, per device link (index 0 unused); both the
                                    // mean over a batch's image plans
  // A batch may run some of its images whole, each on one device: no halos and no recomputed
  // rows, so once a batch has an image per device that is the fastest use of them, and the
  // images left over are split (or one is pipelined: pipelined_image_plan). image_plans[i] is
  // image i's plan (the same blocks as this one; its own zones, tail split, slices and
  // transfers; no image_plans of its own); empty: every image runs this plan. This plan's own
  // zones are those a split (or the pipelined) image gets.
  std::vector<Plan> image_plans;
  const Plan& for_image(size_t i) const {
    return image_plans.empty() ? *this : image_plans[i % image_plans.size()];
  }
  // The device that computes every block of this plan alone (a whole image's plan), or -1.
  int sole_device() const;
  // The worker (device >= 1) that computes this plan's image whole, or 0: none (the image is
  // split, or the host's own). Such a worker sends nothing until its result.
  int whole_image_worker() const { return std::max(sole_device(), 0); }
  // Whether every image plan has this plan's devices and blocks and no image plans of its own
  // (what the host and the wire parser both require).
  bool image_plans_match() const;
  // How long the host may predictably hear nothing while it waits for image i: a worker
  // computing the image whole sends only its result, perhaps after whole images of its own
  // before it, and a batch's split image waits at each worker behind its whole images; so
  // within the batch's predicted span. 0 where devices exchange rows block by block (no image
  // runs whole), and for the host's own whole image.
  double whole_image_silence_ms(size_t i) const;
  Json to_json(const Graph& g) const;

  // Stages the devices run together; the rest of the tail is the host's alone.
  int stages() const { return int(blocks.size()) + split_tail; }
  bool is_tail(Stage s) const { return s.index >= int(blocks.size()); }
  int tail_layer(Stage s) const { return s.index - int(blocks.size()); }
  Stage tail_stage(int j) const { return {int(blocks.size()) + j}; }
  // The node whose rows stage s consumes (-1: the input image).
  int input_node(Stage s) const {
    const int nb = int(blocks.size());
    return s.index == 0 ? -1 : s.index <= nb ? blocks[size_t(s.index - 1)].last - 1 : tail_first + tail_layer(s) - 1;
  }
};

// Whole images per device at most in a batch plan (Plan::image_plans).
constexpr int kMaxWholeImages = 8;

// Plan p with every block's rows and every split tail slice given to device d: one image run
// whole on d (its input sent there, its tail gathered back), not yet simulated.
Plan whole_image_plan(const Graph& g, const Plan& p, int d);

// Each device's share of the rows the plan's blocks compute, averaged over the blocks (0 for an
// idle device): what a heterogeneous cluster's slow boards and slow links were given.
std::vector<double> row_shares(const Graph& g, const Plan& p);

// Whether device d computes all of split tail layer j's channels: it then keeps the layer's
// output and computes layer j + 1 from it, with nothing sent to it (a whole image's worker).
bool holds_whole_slice(const Graph& g, const Plan& p, int j, int d);

// The worker (device >= 1) that finishes the image: it computes the image whole, or every row
// of the last block and all of the first split FC layer (a pipelined image's deep worker); 0
// otherwise. The host gets only its result, after its other work, so the host finishes such an
// image last in its pass.
int finishing_worker(const Graph& g, const Plan& p);
// Whether the image is split among devices and finished by the host (no finishing_worker): a
// batch's split image, whose rows leave one image ahead rather than at the start of a pass.
bool host_finishes_split(const Graph& g, const Plan& p);

// A batch's leftover image pipelined (Plan::image_plans): blocks [0, cut) split among every
// device but `deep`, as a plan for those devices alone (`early`, embedded) zones them; blocks
// [cut, end) and the FC layers whole on `deep` (models with split FC layers only). The early
// devices compute it before their whole images, `deep` after its own: no device waits for
// another's halo late in the batch, and the deep layers' thin bands are not split at all.
Plan pipelined_image_plan(const Graph& g, const Plan& early, int cut, int deep);

// Whether the host gathers the last block's output (to compute the tail, or to send it on to
// the devices with a slice of the first split layer): not where one secondary computed every
// row and computes that whole layer too (finishing_worker), which needs nothing from it.
bool host_gathers_tail_input(const Graph& g, const Plan& p);

// Per-device zones as JSON: [[[begin, end], ...], ...] (CLI output and the wire format).
Json zones_to_json(const std::vector<std::vector<RowRange>>& zones);
// Per-device channel slices of one split tail layer in the same form: [] or [[c0, c1]] each.
Json slices_to_json(const std::vector<ChannelSlice>& slices);

// Splits rows [0, h) into consecutive ranges proportional to weights (zero weights: empty).
std::vector<RowRange> split_rows(int h, const std::vector<double>& weights);

// Builds the best plan of a scheme for this cluster (devices.size() devices).
Plan make_plan(const Graph& g, const Cluster& c, Scheme s, int batch = 1);
// Builds a plan of a scheme with given block cuts (cut positions strictly inside (0, tail)).
Plan plan_with_cuts(const Graph& g, const Cluster& c, Scheme s, const std::vector<int>& cuts,
                    double host_share, int batch = 1);
// The dynamic program's plan at one host share: the block cuts minimising staged_cost (no
// overlap blocks, no split tail). make_plan starts from these.
Plan best_blocks(const Graph& g, const Cluster& c, Scheme s, double host_share, int batch = 1);
// Fills transfers, timeline, predicted_ms and bytes from blocks and zones.
void simulate(const Graph& g, const Cluster& c, Plan& p);
// Cost used by the DP: blocks run one after another (each starts when the previous has ended
// everywhere), plus the final gather and tail. DP optimality is checked against brute force.
double staged_cost(const Graph& g, const Cluster& c, const Plan& p);
// The same per stage: one entry per block, then the gather + tail.
std::vector<double> stage_costs(const Graph& g, const Cluster& c, const Plan& p);
// Stage b's alone (b == blocks.size(): the gather and the tail): the DP asks for one or two
// stages of each candidate, and the others cost as much to compute again.
double stage_cost(const Graph& g, const Cluster& c, const Plan& p, size_t b);

// A plan for the devices `keep` of c (keep[0] == 0: the host; `sub` was planned for those,
// in that order) as a plan for all of c's devices: the others get no rows and no FC slices,
// so nothing is sent to them. make_plan uses it to leave devices idle.
Plan embed_plan(const Graph& g, const Cluster& c, Plan sub, const std::vector<size_t>& keep);

// Valid cut positions of the spatial part (block boundaries): 0 < c < spatial_end, is_cut(c).
std::vector<int> candidate_cuts(const Graph& g);
// How many leading tail layers could be split by channels (consecutive fully connected layers).
int splittable_tail(const Graph& g);
// Splits the first k tail layers across the plan's devices (slices by device speed) and
// re-simulates; k = 0 undoes it.
void split_tail(const Graph& g, const Cluster& c, Plan& p, int k);

}  // namespace eb::dist
