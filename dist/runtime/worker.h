// `edgeband worker`: serves any number of hosts, one connection (and thread) each. A host runs
// the handshake (dist/runtime/handshake.h: model, link shaping, wire format), sends a PLAN naming
// this worker's device index, then ROWS; the worker computes its zones as soon as their input
// rows are present and sends the rows the plan routes onwards. Malformed or hostile frames end
// that connection only.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/graph.h"
#include "dist/runtime/handshake.h"

namespace eb::dist {

struct TcpSocket;  // dist/runtime/tcp.h

struct WorkerOptions {
  std::string listen = "127.0.0.1:0";
  std::string weights;                 // serve this file's model only (else built-in models)
  int threads = 0;                     // OpenMP threads per session (0: the OpenMP default)
  // Limits (docs/SECURITY.md): hosts served at once (counted from a completed handshake);
  // connections still in their handshake, in a pool of their own (when it is full, the oldest
  // is dropped for the newest, so strangers cannot keep a real host out); the largest frame
  // accepted after the handshake (before it: no data, 1 MiB of JSON); the time a new connection
  // has to complete the handshake; the silence after which a connection is dropped; and the
  // time a send may make no progress before the host is deemed to have stopped reading.
  int max_connections = 16;
  int max_pending = 8;
  uint64_t max_frame_bytes = 256ull << 20;
  int handshake_timeout_ms = 5000;
  int idle_timeout_ms = 300000;
  int send_timeout_ms = 10000;
  Credentials creds;  // a PSK or key pair: hosts must authenticate, and frames are encrypted
  // Without credentials the worker listens on loopback addresses only, unless this is set.
  bool insecure = false;
  std::function<void(const std::string&)> log = nullptr;  // default: stderr
};

class WorkerServer {
 public:
  // At most this many models by name: each host's HELLO may name one, and a worker keeps what
  // it built (the deadline selector's candidates are ~5), so a host naming model after model
  // cannot grow the worker's memory without bound.
  static constexpr size_t kMaxModels = 8;
  explicit WorkerServer(WorkerOptions o);
  ~WorkerServer();
  uint16_t port() const { return port_; }
  void run();             // accept loop; returns after stop()
  void start_background();  // run() on a thread
  void stop();
  int sessions_served() const { return served_; }
  size_t session_threads();  // threads not yet reaped (finished ones go at the next accept)

 private:
  struct Model {
    std::shared_ptr<const Graph> graph;
    uint64_t hash;
  };
  struct Conn;
  class Session;
  Model model_for(const std::string& name);
  void spawn(std::unique_ptr<TcpSocket> sock, const std::string& who);
  void reap_and_evict();  // joins finished sessions; makes room in the pending pool
  bool take_slot();       // a host slot, at a completed handshake
  void release_slot();
  void log(const std::string& s);

  WorkerOptions opt_;
  struct Listener;  // the io_context and the acceptor (worker.cpp)
  std::unique_ptr<Listener> net_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;          // for stop(): shutdown wakes a blocked accept()
  std::mutex acceptor_mu_;      // orders that shutdown against run()'s close of the acceptor
  bool acceptor_closed_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<int> hosts_{0}, served_{0};
  std::mutex models_mu_;
  std::vector<std::pair<std::string, Model>> models_;  // built by name, kept for later hosts
  std::thread bg_;
  std::mutex threads_mu_;
  std::vector<std::shared_ptr<Conn>> conns_;  // in accept order; finished ones are joined at the next accept
};

}  // namespace eb::dist
