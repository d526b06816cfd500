// Wire protocol between a host and its workers. Every message is one frame, little-endian:
//    0 u32 magic "EBND"     4 u16 version (6)     6 u16 type
//    8 u64 request id      16 u32 JSON length    20 u32 flags (bit 0: sealed)
//   24 u64 data length     32 u64 checksum (hash64 of bytes 0..31, then JSON, then data;
//                                 0 in a sealed frame, whose tags cover everything)
//   40 JSON (UTF-8, <= 1 MiB), then data (<= 512 MiB): the rows of a band, fp32 (raw, with
//      its zeros elided, dist/runtime/sparse_wire.h, or the input's as palettes,
//      dist/runtime/palette_wire.h) or fp16; in a ping, probe bytes the worker
//      ignores (HostRuntime::measure_links).
// A sealed frame (after the handshake, dist/runtime/handshake.h) carries the JSON encrypted and
// its 16-byte tag, then the data encrypted and its tag: two messages of the direction's
// FrameCipher, each binding the 40-byte header (type, id, lengths) as additional data.
// Anything else - wrong magic or version, unknown type or flags, lengths over the receiver's
// limits, bad checksum or tag, malformed JSON, rows outside the model - is a ProtocolError; the
// peer drops the connection.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/graph.h"
#include "kernels/half.h"
#include "dist/runtime/crypto.h"
#include "dist/plan/planner.h"

namespace eb::dist {

struct ProtocolError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class MsgType : uint16_t {
  hello = 1,
  hello_ok = 2,
  error = 3,
  plan = 4,
  rows = 5,
  bye = 6,
  challenge = 7,
  auth = 8,
  ping = 9,
  pong = 10  // a host checks, wakes and measures its workers between calls
};
constexpr uint16_t kMaxMsgType = 10;
const char* msg_name(MsgType t);

constexpr uint32_t kFrameMagic = 0x444E4245;  // "EBND"
constexpr uint16_t kProtocolVersion = 7;  // 4: the libsodium handshake and sealed frames, 5: image plans, 6: palette rows
// 7: 6-row Winograd tiles on large maps (an older peer would need other halo rows)
constexpr size_t kHeaderBytes = 40;
constexpr size_t kTagBytes = 16;
constexpr uint32_t kFlagSealed = 1;
constexpr uint32_t kMaxJson = 1u << 20;
constexpr uint64_t kMaxData = 512ull << 20;

struct FrameHeader {
  MsgType type;
  uint64_t request_id;
  uint32_t json_len;
  uint64_t data_len;
  uint64_t checksum;
  uint32_t flags;
};

// Encodes a header for the given JSON and data (the checksum is left 0 with kFlagSealed).
std::vector<uint8_t> encode_header(MsgType t, uint64_t id, const std::string& json,
                                   const void* data, size_t data_len, uint32_t flags = 0);
// Validates magic, version, type and size caps; throws ProtocolError.
FrameHeader decode_header(const uint8_t* bytes);
// Verifies the checksum of a received unsealed frame; throws ProtocolError.
void verify_frame(const uint8_t* header, const std::string& json, const void* data, size_t data_len);

// A plan as the workers need it (blocks, zones, transfers) and back, validated against the
// model on the receiving side.
Json plan_to_wire(const Plan& p);
Plan plan_from_wire(const Json& j, const Graph& g);

}  // namespace eb::dist
