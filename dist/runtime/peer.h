// One TCP connection (standalone asio, blocking I/O) with a reader thread that decodes (and,
// after the handshake, opens) frames into a shared Inbox, and shaped sends: a token bucket paces the bytes at the link rate and the
// receiver delivers each frame one link delay after it arrived, emulating a slower network on
// loopback without netem.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "dist/plan/channel.h"
#include "dist/plan/link.h"
#include "dist/runtime/handshake.h"
#include "dist/runtime/protocol.h"

namespace eb::dist {

using Clock = std::chrono::steady_clock;
int64_t now_us();  // Clock in microseconds (traces, wire timings)

struct Message {
  int peer = 0;  // index of the connection it came from
  MsgType type = MsgType::error;
  uint64_t id = 0;
  Json json;
  std::string text;  // the JSON as received (the handshake transcript covers its exact bytes)
  std::vector<uint8_t> data;
  bool authenticated = false;  // arrived sealed under the session keys (and opened)
  Clock::time_point deliver_at;
  std::string failure;  // non-empty: the connection failed (closed, malformed frame, ...)
};

// Messages from any number of peers, each released at its deliver_at time. Each peer may have
// at most kMaxFrames messages or kMaxBytes of data waiting (one frame always fits): beyond
// that push() blocks its reader, which stops reading the socket, so a peer that sends faster
// than we consume is slowed by TCP itself instead of growing our memory.
class Inbox {
 public:
  static constexpr size_t kMaxFrames = 256;
  static constexpr size_t kMaxBytes = 64u << 20;
  // Blocks while the peer is over its bounds, unless `*abort` turns true (a closed peer).
  // Failure messages never wait.
  void push(Message m, const std::atomic<bool>* abort = nullptr);
  // Next deliverable message, or nullopt after `timeout`.
  std::optional<Message> pop(std::chrono::milliseconds timeout);
  void wake();  // re-checks the abort flags of blocked pushes
  size_t queued(int peer);  // messages waiting from that peer

 private:
  struct Held {
    size_t frames = 0, bytes = 0;
  };
  std::mutex mu_;
  std::condition_variable cv_, space_;
  std::deque<Message> q_;
  std::map<int, Held> held_;
};

// A device's switch port in the emulation: its connections share it, so its frames leave one
// after another at each connection's rate, and arrive one after another, as through a real
// switch. Without it a host sending to two workers had twice its link's rate (MoDNN's scatter
// at 100 Mbit/s ran 35% faster than the planner's switch model).
struct Port {
  std::mutex mu;
  Clock::time_point up_free, down_free;  // when the last frame leaves / has arrived on the wire
};

struct Shaping {
  bool enabled = false;
  LinkModel link;
  std::shared_ptr<Port> port;  // shared by the device's connections; null: each paces alone
  // Time-variant rate (replaces link.bits_per_s): trace time = seconds since `epoch`.
  std::shared_ptr<const BandwidthTrace> channel;
  Clock::time_point epoch;
  double bits_per_s(Clock::time_point now) const;
};

// What a receiver accepts in one frame. Before a worker has authenticated its host it accepts
// only small frames, so a stranger cannot make it allocate much.
struct FrameLimits {
  uint32_t max_json = kMaxJson;
  uint64_t max_data = kMaxData;
};

struct TcpSocket;  // dist/runtime/tcp.h

class Peer {
 public:
  Peer(std::unique_ptr<TcpSocket> sock, std::shared_ptr<Inbox> inbox, int index, std::string name);
  ~Peer();
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  void set_shaping(const Shaping& s);
  void set_limits(const FrameLimits& l);
  // A send that makes no progress for this long (the other end stopped reading), or a frame
  // that takes longer than this plus 1 s per MB (it reads a trickle, keeping every single
  // write just under the timeout), fails and breaks the connection. 0: wait for ever.
  void set_send_timeout(std::chrono::milliseconds t);
  // From now on every frame received must be sealed (dist/runtime/protocol.h) and open with
  // `key`; call before the other end may send sealed frames ...
  void expect_sealed(const Key32& key);
  // ... and every frame sent is sealed with `key`. Two steps, because the worker must expect
  // sealed frames before its CHALLENGE leaves, which itself goes in clear.
  void seal_sends(const Key32& key);
  void enable_encryption(const SessionKeys& keys) { expect_sealed(keys.recv), seal_sends(keys.send); }
  void start_reader();
  // Sends one frame; data is written straight from the caller's memory (scatter-gather).
  // Thread-safe; waits for frames queued by send_async to leave first, so frames keep their
  // order. Throws std::runtime_error on a broken connection.
  void send(MsgType t, uint64_t id, const Json& json, const void* data = nullptr, size_t len = 0);
  // Queues one frame and returns at once: a sender thread writes it (link pacing included)
  // while the caller computes. `keep` owns the memory `data` points into until it is written;
  // `on_sent(t0_us, t1_us)` runs on the sender thread when it has been. A failed write closes
  // the connection, which the reader then reports to the inbox like any broken connection.
  using SentFn = std::function<void(int64_t t0_us, int64_t t1_us)>;
  void send_async(MsgType t, uint64_t id, const Json& json, std::shared_ptr<const void> keep,
                  const void* data, size_t len, SentFn on_sent = {});
  // Waits until every frame queued by send_async has been written and counted in bytes_sent,
  // or the connection is closed or broken, or `deadline` passes.
  void wait_sends_done(Clock::time_point deadline);
  void close();  // unblocks the reader; idempotent
  bool closed() const { return closed_; }
  const std::string& name() const { return name_; }
  uint64_t bytes_sent() const { return sent_; }
  uint64_t bytes_received() const { return received_; }

 private:
  struct Pending {
    MsgType type = MsgType::error;
    uint64_t id = 0;
    std::string text;
    std::shared_ptr<const void> keep;
    const void* data = nullptr;
    size_t len = 0;
    SentFn on_sent;
  };
  void read_loop();
  void send_loop();
  bool sends_settled() const;  // under q_mu_: what send and wait_sends_done wait for
  void write_frame(MsgType t, uint64_t id, std::string text, const void* data, size_t len);
  const void* seal_frame(const std::vector<uint8_t>& header, std::string& text, const void* data,
                         size_t len, uint8_t (&tags)[2][kTagBytes]);
  void write_all(const void* const* parts, const size_t* lens, size_t n);
  Message read_frame();
  void read_exact(void* p, size_t n);
  void read_data(std::vector<uint8_t>& data, size_t n);
  void pace(size_t bytes);
  // The queue of send_async; busy_: the sender thread is writing a frame it took from it.
  std::mutex q_mu_;
  std::condition_variable q_cv_;
  std::deque<Pending> q_;
  bool busy_ = false;
  std::thread sender_;
  std::string send_error_;  // why the sender thread gave up (guarded by cfg_mu_)
  std::unique_ptr<TcpSocket> sock_;
  std::shared_ptr<Inbox> inbox_;
  int index_;
  std::string name_;
  std::mutex send_mu_;
  mutable std::mutex cfg_mu_;  // guards shaping_, limits_ and recv_: the reader reads them
  Shaping shaping_;
  FrameLimits limits_;
  FrameCipher send_, recv_;         // send_: under send_mu_
  std::vector<uint8_t> sealed_buf_;  // one reusable buffer for sealed data (under send_mu_)
  std::atomic<int64_t> send_timeout_ms_{0};
  Shaping shaping() const;
  Clock::time_point link_free_;
  std::thread reader_;
  std::atomic<bool> closed_{false}, broken_{false};
  std::atomic<uint64_t> sent_{0}, received_{0};
};

}  // namespace eb::dist
