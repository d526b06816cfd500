#include "dist/runtime/protocol.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/weights_io.h"

namespace eb::dist {

const char* msg_name(MsgType t) {
  switch (t) {
    case MsgType::hello: return "hello";
    case MsgType::hello_ok: return "hello_ok";
    case MsgType::error: return "error";
    case MsgType::plan: return "plan";
    case MsgType::rows: return "rows";
    case MsgType::bye: return "bye";
    case MsgType::challenge: return "challenge";
    case MsgType::auth: return "auth";
    case MsgType::ping:
      return "ping";
    case MsgType::pong:
      return "pong";
  }
  return "?";
}

namespace {
template <class T>
void put(uint8_t* b, size_t at, T v) {
  std::memcpy(b + at, &v, sizeof(T));  // the supported targets are little-endian (x86-64, aarch64)
}
template <class T>
T get(const uint8_t* b, size_t at) {
  T v;
  std::memcpy(&v, b + at, sizeof(T));
  return v;
}
uint64_t frame_hash(const uint8_t* header, const std::string& json, const void* data, size_t n) {
  uint64_t h = hash64(header, 32);
  h = hash64(json.data(), json.size(), h);
  return hash64(data, n, h);
}
}  // namespace

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire format is little-endian");

std::vector<uint8_t> encode_header(MsgType t, uint64_t id, const std::string& json,
                                   const void* data, size_t data_len, uint32_t flags) {
  if (json.size() > kMaxJson || data_len > kMaxData) throw ProtocolError("message too large to send");
  std::vector<uint8_t> h(kHeaderBytes, 0);
  put<uint32_t>(h.data(), 0, kFrameMagic);
  put<uint16_t>(h.data(), 4, kProtocolVersion);
  put<uint16_t>(h.data(), 6, uint16_t(t));
  put<uint64_t>(h.data(), 8, id);
  put<uint32_t>(h.data(), 16, uint32_t(json.size()));
  put<uint32_t>(h.data(), 20, flags);
  put<uint64_t>(h.data(), 24, data_len);
  if (!(flags & kFlagSealed)) put<uint64_t>(h.data(), 32, frame_hash(h.data(), json, data, data_len));
  return h;
}

FrameHeader decode_header(const uint8_t* b) {
  if (get<uint32_t>(b, 0) != kFrameMagic) throw ProtocolError("bad frame magic");
  const uint16_t v = get<uint16_t>(b, 4);
  if (v != kProtocolVersion)
    throw ProtocolError("protocol version " + std::to_string(v) + " not supported (this is " +
                        std::to_string(kProtocolVersion) + ")");
  const uint16_t t = get<uint16_t>(b, 6);
  if (t < 1 || t > kMaxMsgType) throw ProtocolError("unknown message type " + std::to_string(t));
  FrameHeader h{MsgType(t), get<uint64_t>(b, 8), get<uint32_t>(b, 16), get<uint64_t>(b, 24),
                get<uint64_t>(b, 32), get<uint32_t>(b, 20)};
  if (h.flags & ~kFlagSealed) throw ProtocolError("unknown frame flags");
  if (h.json_len > kMaxJson) throw ProtocolError("JSON part exceeds the 1 MiB cap");
  if (h.data_len > kMaxData) throw ProtocolError("data part exceeds the 512 MiB cap");
  return h;
}

void verify_frame(const uint8_t* header, const std::string& json, const void* data, size_t n) {
  if (frame_hash(header, json, data, n) != get<uint64_t>(header, 32))
    throw ProtocolError("frame checksum mismatch");
}

Json plan_to_wire(const Plan& p) {
  Json j = Json::object();
  j["scheme"] = scheme_name(p.scheme);
  j["devices"] = p.devices;
  j["tail_first"] = p.tail_first;
  j["edge_first"] = p.edge_first;
  Json bl = Json::array();
  for (const BlockPlan& b : p.blocks) {
    Json jb = Json::object();
    jb["first"] = b.first;
    jb["last"] = b.last;
    jb["zones"] = zones_to_json(b.zones);
    if (b.overlap) jb["overlap"] = true;
    bl.push_back(jb);
  }
  j["blocks"] = bl;
  j["split_tail"] = p.split_tail;
  Json sl = Json::array();
  for (const std::vector<ChannelSlice>& per : p.tail_slices) sl.push_back(slices_to_json(per));
  j["tail_slices"] = sl;
  Json ts = Json::array();
  for (const Transfer& t : p.transfers)
    ts.push_back(Json(Json::Array{t.stage.index, t.src, t.dst, t.node, t.rows.begin, t.rows.end}));
  j["transfers"] = ts;
  if (!p.image_plans.empty()) {
    Json per = Json::array();
    for (const Plan& ip : p.image_plans) per.push_back(plan_to_wire(ip));
    j["image_plans"] = per;
  }
  return j;
}

namespace {
// The blocks: consecutive from layer 0 to the tail, cut where the model may be cut, one zone
// list per device with rows inside the block's output.
void blocks_from_wire(const Json& j, const Graph& g, Plan& p) {
  int expect_first = 0;
  for (const Json& jb : j.at("blocks").items("blocks")) {
    BlockPlan b;
    b.first = int(jb.at("first").integer("first"));
    b.last = int(jb.at("last").integer("last"));
    if (b.first != expect_first || b.last <= b.first || b.last > p.tail_first || !g.is_cut(b.first))
      throw ProtocolError("invalid block boundaries");
    expect_first = b.last;
    b.overlap = jb.has("overlap") && jb.at("overlap").boolean("overlap");
    const int h = g.shape_of(b.last - 1).h;
    const Json::Array& zs = jb.at("zones").items("zones");
    if (int(zs.size()) != p.devices) throw ProtocolError("zones do not match the device count");
    for (const Json& jd : zs) {
      std::vector<RowRange> z;
      for (const Json& r : jd.items("zone")) {
        const long a = r[0].integer("row"), e = r[1].integer("row");
        if (a < 0 || e > h || a >= e) throw ProtocolError("zone rows out of range");
        z.push_back({int(a), int(e)});
      }
      b.zones.push_back(z);
    }
    p.blocks.push_back(b);
  }
  if (expect_first != p.tail_first || p.blocks.size() > 4096) throw ProtocolError("blocks do not cover the model");
}

// The split tail (optional: plans without one may omit it): per layer, channel slices that
// tile the layer's outputs in device order (a device may have none).
void tail_from_wire(const Json& j, const Graph& g, Plan& p) {
  if (!j.has("split_tail")) return;
  p.split_tail = int(j.at("split_tail").integer("split_tail"));
  if (p.split_tail < 0 || p.split_tail > splittable_tail(g)) throw ProtocolError("tail split out of range");
  const Json::Array& ls = j.at("tail_slices").items("tail_slices");
  if (int(ls.size()) != p.split_tail) throw ProtocolError("tail slices do not match the split");
  for (size_t k = 0; k < ls.size(); ++k) {
    const Json::Array& per = ls[k].items("tail slice");
    if (int(per.size()) != p.devices) throw ProtocolError("tail slices do not match the device count");
    const int out = g.shape_of(p.tail_first + int(k)).c;
    std::vector<ChannelSlice> sl;
    int next = 0;
    for (const Json& jd : per) {
      const Json::Array& rs = jd.items("slice");
      if (rs.size() > 1) throw ProtocolError("one channel slice per device");
      ChannelSlice r{next, next};
      if (rs.size() == 1) {
        r = {int(rs[0][0].integer("channel")), int(rs[0][1].integer("channel"))};
        if (r.begin != next || r.end <= r.begin || r.end > out) throw ProtocolError("tail slices out of range");
      }
      next = r.end;
      sl.push_back(r);
    }
    if (next != out) throw ProtocolError("tail slices do not cover the layer");
    p.tail_slices.push_back(sl);
  }
}

// Transfers: between two different devices, of rows of the node that feeds their block.
void transfers_from_wire(const Json& j, const Graph& g, Plan& p) {
  const int nb = int(p.blocks.size());
  for (const Json& jt : j.at("transfers").items("transfers")) {
    if (jt.size() != 6) throw ProtocolError("malformed transfer");
    Transfer t{{int(jt[0].integer())}, int(jt[1].integer()), int(jt[2].integer()), int(jt[3].integer()),
               {int(jt[4].integer()), int(jt[5].integer())}, 0};
    if (t.stage.index < 0 || t.stage.index > nb + std::max(0, p.split_tail - 1) || t.src < 0 ||
        t.src >= p.devices || t.dst < 0 || t.dst >= p.devices || t.src == t.dst)
      throw ProtocolError("transfer endpoints out of range");
    if (t.node != p.input_node(t.stage) || t.rows.begin < 0 || t.rows.end > g.shape_of(t.node).h || t.rows.empty())
      throw ProtocolError("transfer rows out of range");
    p.transfers.push_back(t);
  }
}
}  // namespace

namespace {
// A batch's per-image plans (Plan::image_plans): the same devices and blocks as the plan (the
// tail may be split further), none of their own.
void image_plans_from_wire(const Json& j, const Graph& g, Plan& p) {
  const Json::Array& per = j.items("image_plans");
  if (per.empty() || per.size() > 1024) throw ProtocolError("image plans out of range");
  for (const Json& jp : per) {
    if (jp.has("image_plans")) throw ProtocolError("nested image plans");  // also bounds the recursion
    p.image_plans.push_back(plan_from_wire(jp, g));
  }
  if (!p.image_plans_match()) throw ProtocolError("an image plan does not match the plan's blocks");
}
}  // namespace

Plan plan_from_wire(const Json& j, const Graph& g) {
  Plan p;
  try {
    p.scheme = parse_scheme(j.at("scheme").string("scheme"));
    p.devices = int(j.at("devices").integer("devices"));
    if (p.devices < 1 || p.devices > 256) throw ProtocolError("device count out of range");
    p.tail_first = int(j.at("tail_first").integer("tail_first"));
    p.edge_first = j.at("edge_first").boolean("edge_first");
    if (p.tail_first != g.spatial_end()) throw ProtocolError("plan does not match the model's layers");
    blocks_from_wire(j, g, p);
    tail_from_wire(j, g, p);
    transfers_from_wire(j, g, p);
    if (j.has("image_plans")) image_plans_from_wire(j.at("image_plans"), g, p);
  } catch (const ProtocolError&) {
    throw;
  } catch (const std::exception& e) {
    throw ProtocolError(std::string("malformed plan: ") + e.what());
  }
  return p;
}

}  // namespace eb::dist
