// The rows of feature maps one device holds, per image and node, and the two things every
// device does with them: compute its zones of a block, and send planned rows to a peer.
// Shared by the host and the worker so both sides execute a plan identically.
#pragma once
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "dist/runtime/peer.h"
#include "dist/plan/planner.h"

namespace eb::dist {

// Feature maps of finished images, by node, that the next images of the same plan take instead
// of fresh mappings. A plan writes the same rows of a node for every image (a batch plan: rows
// its whole-image plan covers), so their pages are resident already: a fresh mapping had the
// kernel fault in and zero every page again per image, inside the decode and copies of each frame.
struct SpareMaps {
  std::map<int, std::vector<Tensor>> by_node;
  size_t most_images = 0;  // the most images held at once: no node keeps more spares than that
};

class FeatureStore {
 public:
  // `spares`: maps a store of the same plan left (take_spares), or none.
  explicit FeatureStore(const Graph& g, SpareMaps spares = {}) : g_(g), spares_(std::move(spares)) {}
  void put(uint64_t image, int node, RowRange r, const float* src);
  // Channels [c0, c1) of a one-row node (a split tail layer's slice); the row counts as held
  // once slices cover all its channels. Throws ProtocolError on overlapping slices.
  void put_channels(uint64_t image, int node, ChannelSlice channels, const float* src);
  // Stores rows (or, with "c0" and "c1", a channel slice) received in a ROWS frame, validating
  // node, rows and byte count.
  void put_wire(uint64_t image, const Json& meta, const std::vector<uint8_t>& data);
  bool holds(uint64_t image, int node, RowRange r) const;
  bool holds_channels(uint64_t image, int node, ChannelSlice channels) const;  // of row 0
  const float* row(uint64_t image, int node, int y) const;
  Band band(uint64_t image, int node, RowRange r) const;  // view of held rows
  void drop(uint64_t image);  // its maps become spares for the next images
  // Drops every image and spare (a new plan writes other rows: its pages would add up).
  void clear() {
    maps_.clear();
    spares_ = SpareMaps{};
  }
  void drop_all();  // every image, as drop() does
  SpareMaps take_spares() { return std::move(spares_); }
  size_t maps_mapped() const { return mapped_; }  // afresh, not a spare, since made
  size_t images() const;

 private:
  struct Held {
    Tensor t;
    std::vector<bool> has;
    std::vector<bool> chan;  // channel slices received of row 0 (split tail layers)
    int chans = 0;
  };
  Held& get(uint64_t image, int node);
  const Graph& g_;
  std::map<std::pair<uint64_t, int>, Held> maps_;
  SpareMaps spares_;
  size_t mapped_ = 0;
};

// Timing of one device's compute of one block (steady clock, microseconds).
struct ComputeSpan {
  int device, block;
  uint64_t image;
  int64_t t0_us, t1_us;
};

// Device d computes its zones of block b; false (and nothing done) if an input row is missing.
// With p.edge_first, the rows other devices need from these zones are computed first and
// on_piece() runs after each piece, so the caller can send them while the interior computes.
// An overlap block computes whatever part the rows held allow and returns false until the
// whole zone is done (span is set only when something was computed).
// Loads (Graph::load) what device d computes in plan p: every node of the blocks where it has
// rows, its slices of the split FC layers, and on the host (d 0) the rest of the tail. A
// worker never loads anything else; the host streams the rest when it must run it
// (Graph::forward).
void load_for_plan(const Graph& g, const Plan& p, int d);
// Frees what device d loaded for plan `before` that plan `now` does not give it the same way
// (another scheme's share, a share before a worker was dropped): a device that runs one call at
// a time (the host) then holds one plan's share, as predict_memory says, not their union.
void release_outside_plan(const Graph& g, const Plan& before, const Plan& now, int d);
bool compute_zones(const Graph& g, const Plan& p, int d, int b, uint64_t image, FeatureStore& s,
                   ComputeSpan* span, const std::function<void()>& on_piece = {});
// Device d computes its channel slice of split tail layer j of the plan (input: the whole
// previous node); false (nothing done) if that input is not all here. Output: the slice.
bool compute_tail_slice(const Graph& g, const Plan& p, int d, int j, uint64_t image,
                        const FeatureStore& s, std::vector<float>* out);
// Queues a channel slice of a one-row node (a split tail layer's output) for `to`.
void send_slice(Peer& to, uint64_t image, int node, ChannelSlice channels,
                std::shared_ptr<const std::vector<float>> values, bool fp16, const Json& extra = Json());
// Queues the rows of transfer t (held by this device) for `to` and returns at once: fp32
// straight from the store (the frame holds the store's buffer until written) or converted to
// fp16. `extra` is merged into the frame's JSON (timings for traces).
void send_rows(Peer& to, uint64_t image, const Transfer& t, const FeatureStore& s, bool fp16,
               const Json& extra = Json(), Peer::SentFn on_sent = {});

}  // namespace eb::dist
