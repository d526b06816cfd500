#include "dist/runtime/peer.h"

#include <poll.h>
#include <pthread.h>

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/compute_hook.h"
#include "dist/runtime/tcp.h"

namespace eb::dist {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count();
}

void Inbox::push(Message m, const std::atomic<bool>* abort) {
  {
    std::unique_lock<std::mutex> lk(mu_);
    Held& h = held_[m.peer];
    if (m.failure.empty())
      space_.wait(lk, [&] {
        return h.frames == 0 ||
               (h.frames < kMaxFrames && h.bytes + m.data.size() <= kMaxBytes) ||
               (abort && abort->load());
      });
    ++h.frames;
    h.bytes += m.data.size();
    q_.push_back(std::move(m));
  }
  cv_.notify_all();
}

void Inbox::wake() {
  std::lock_guard<std::mutex> lk(mu_);  // a pusher between its check and its wait sees it
  space_.notify_all();
}

size_t Inbox::queued(int peer) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = held_.find(peer);
  return it == held_.end() ? 0 : it->second.frames;
}

std::optional<Message> Inbox::pop(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    if (!q_.empty()) {
      // Frames of one connection arrive in order; release the head when its delay has passed.
      auto it = q_.begin();
      for (auto j = q_.begin(); j != q_.end(); ++j)
        if (j->deliver_at < it->deliver_at) it = j;
      if (it->deliver_at <= Clock::now()) {
        Message m = std::move(*it);
        q_.erase(it);
        Held& h = held_[m.peer];
        --h.frames;
        h.bytes -= m.data.size();
        space_.notify_all();
        return m;
      }
      if (Clock::now() >= deadline) return std::nullopt;
      cv_.wait_until(lk, std::min(deadline, it->deliver_at));
      continue;
    }
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && q_.empty()) return std::nullopt;
  }
}

Peer::Peer(std::unique_ptr<TcpSocket> sock, std::shared_ptr<Inbox> inbox, int index, std::string name)
    : sock_(std::move(sock)), inbox_(std::move(inbox)), index_(index), name_(std::move(name)) {
  if (!sock_ || !inbox_) throw std::invalid_argument("Peer needs a socket and an inbox");
  asio::error_code ec;
  sock_->s.set_option(asio::ip::tcp::no_delay(true), ec);
}

Peer::~Peer() {
  close();
  if (reader_.joinable()) reader_.join();
  if (sender_.joinable()) sender_.join();
}

double Shaping::bits_per_s(Clock::time_point now) const {
  if (!channel) return link.bits_per_s;
  return channel->rate_mbit_at(std::chrono::duration<double>(now - epoch).count()) * 1e6;
}

void Peer::set_shaping(const Shaping& s) {
  std::lock_guard<std::mutex> lk(cfg_mu_);
  shaping_ = s;
}

Shaping Peer::shaping() const {
  std::lock_guard<std::mutex> lk(cfg_mu_);
  return shaping_;
}

void Peer::set_limits(const FrameLimits& l) {
  std::lock_guard<std::mutex> lk(cfg_mu_);
  limits_ = l;
}

void Peer::set_send_timeout(std::chrono::milliseconds t) {
  send_timeout_ms_ = t.count();
  timeval tv{long(t.count() / 1000), long((t.count() % 1000) * 1000)};
  ::setsockopt(sock_->s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void Peer::expect_sealed(const Key32& key) {
  std::lock_guard<std::mutex> lk(cfg_mu_);
  recv_ = FrameCipher(key);
}

void Peer::seal_sends(const Key32& key) {
  std::lock_guard<std::mutex> lk(send_mu_);
  send_ = FrameCipher(key);
}

void Peer::start_reader() {
  reader_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "eb-reader");  // names for top -H, perf, gdb
    read_loop();
  });
}

void Peer::close() {
  if (closed_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lk(q_mu_);
    q_.clear();  // frames not yet written are dropped: close() must not wait on a stalled peer
  }
  q_cv_.notify_all();
  inbox_->wake();  // a reader blocked on a full inbox gives up
  asio::error_code ec;
  sock_->s.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
}

void Peer::pace(size_t bytes) {
  const Shaping sh = shaping();
  if (!sh.enabled) return;
  // Token bucket with an empty bucket: the link (or the device's port) is busy until `free`.
  // (A frame booked on a shared port and then dropped by close() keeps its booking: the
  // emulation then charges the other connections for it, once.)
  const auto now = Clock::now();
  const auto wire = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(double(bytes) * 8.0 / sh.bits_per_s(now)));
  Clock::time_point until;
  {
    std::unique_lock<std::mutex> port_lk;
    if (sh.port) port_lk = std::unique_lock<std::mutex>(sh.port->mu);
    Clock::time_point& free = sh.port ? sh.port->up_free : link_free_;
    free = std::max(free, now) + wire;
    until = free;
  }
  // Interruptible: close() must not wait for a slow emulated link to drain.
  std::unique_lock<std::mutex> lk(q_mu_);
  q_cv_.wait_until(lk, until, [&] { return closed_.load(); });
}

// Under q_mu_: every queued frame written and counted, or none ever will be.
bool Peer::sends_settled() const { return (q_.empty() && !busy_) || closed_ || broken_; }

void Peer::send(MsgType t, uint64_t id, const Json& json, const void* data, size_t len) {
  std::string text = json.dump();
  {
    std::unique_lock<std::mutex> lk(q_mu_);
    q_cv_.wait(lk, [&] { return sends_settled(); });
  }
  write_frame(t, id, std::move(text), data, len);
}

void Peer::wait_sends_done(Clock::time_point deadline) {
  std::unique_lock<std::mutex> lk(q_mu_);
  q_cv_.wait_until(lk, deadline, [&] { return sends_settled(); });
}

void Peer::send_async(MsgType t, uint64_t id, const Json& json, std::shared_ptr<const void> keep,
                      const void* data, size_t len, SentFn on_sent) {
  Pending p{t, id, json.dump(), std::move(keep), data, len, std::move(on_sent)};
  std::lock_guard<std::mutex> lk(q_mu_);
  if (closed_ || broken_) return;  // the reader reports the broken connection
  if (!sender_.joinable())
    sender_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "eb-sender");
      send_loop();
    });
  q_.push_back(std::move(p));
  q_cv_.notify_all();
}

void Peer::send_loop() {
  while (true) {
    Pending p;
    {
      std::unique_lock<std::mutex> lk(q_mu_);
      q_cv_.wait(lk, [&] { return !q_.empty() || closed_; });
      if (closed_) return;
      p = std::move(q_.front());
      q_.pop_front();
      busy_ = true;
    }
    const int64_t t0 = now_us();
    try {
      write_frame(p.type, p.id, std::move(p.text), p.data, p.len);
    } catch (const std::exception& e) {
      {
        std::lock_guard<std::mutex> lk(cfg_mu_);
        send_error_ = e.what();
      }
      broken_ = true;
      asio::error_code ec;
      sock_->s.shutdown(asio::ip::tcp::socket::shutdown_both, ec);  // the reader reports it
    }
    if (p.on_sent && !broken_)
      p.on_sent(t0, now_us());
    p = Pending{};  // release the data before waking a sync sender
    {
      std::lock_guard<std::mutex> lk(q_mu_);
      busy_ = false;
      if (broken_) q_.clear();
    }
    q_cv_.notify_all();
    if (broken_) return;
  }
}

// Writes every part, or throws: a broken connection, or no progress for the send timeout
// (SO_SNDTIMEO: sendmsg returns EAGAIN) because the other end stopped reading.
void Peer::write_all(const void* const* parts, const size_t* lens, size_t n) {
  std::array<iovec, 8> iov;
  size_t k = 0;
  for (size_t i = 0; i < n && k < iov.size(); ++i)
    if (lens[i]) iov[k++] = {const_cast<void*>(parts[i]), lens[i]};
  iovec* at = iov.data();
  size_t total = 0;
  for (size_t i = 0; i < k; ++i) total += iov[i].iov_len;
  const int64_t limit_ms = send_timeout_ms_.load();
  const auto deadline = Clock::now() + std::chrono::milliseconds(limit_ms) + std::chrono::microseconds(total);
  while (k > 0) {
    if (limit_ms > 0 && Clock::now() > deadline)
      throw std::runtime_error("send to " + name_ + " timed out (it reads too slowly)");
    msghdr mh{};
    mh.msg_iov = at;
    mh.msg_iovlen = k;
    const ssize_t r = ::sendmsg(sock_->s.native_handle(), &mh, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        throw std::runtime_error("send to " + name_ + " timed out (it stopped reading)");
      throw std::runtime_error("send to " + name_ + " failed: " + std::strerror(errno));
    }
    size_t done = size_t(r);
    while (k > 0 && done >= at->iov_len) done -= at->iov_len, ++at, --k;
    if (k > 0) at->iov_base = static_cast<uint8_t*>(at->iov_base) + done, at->iov_len -= done;
  }
}

// Seals the JSON (our own copy, in place) and the data (the caller's, often the feature
// store's rows, still needed: into one buffer reused frame after frame); returns the sealed data.
const void* Peer::seal_frame(const std::vector<uint8_t>& header, std::string& text, const void* data,
                             size_t len, uint8_t (&tags)[2][kTagBytes]) {
  auto* json = reinterpret_cast<uint8_t*>(text.data());
  send_.seal(json, json, text.size(), header.data(), header.size(), tags[0]);
  if (sealed_buf_.size() < len) sealed_buf_.resize(len);
  send_.seal(static_cast<const uint8_t*>(data), sealed_buf_.data(), len, header.data(),
             header.size(), tags[1]);
  return sealed_buf_.data();
}

void Peer::write_frame(MsgType t, uint64_t id, std::string text, const void* data, size_t len) {
  std::lock_guard<std::mutex> lk(send_mu_);
  if (closed_ || broken_) throw std::runtime_error("connection to " + name_ + " is closed");
  const bool seal = send_.on();
  std::vector<uint8_t> header;
  uint8_t tags[2][kTagBytes];
  {
    const ComputeScope section(section_of(Work::seal));  // the checksum, or the encryption
    header = encode_header(t, id, text, data, len, seal ? kFlagSealed : 0);
    if (seal) data = seal_frame(header, text, data, len, tags);
  }
  const size_t total = header.size() + text.size() + len + (seal ? 2 * kTagBytes : 0);
  pace(total);
  const void* parts[] = {header.data(), text.data(), tags[0], data, tags[1]};
  const size_t lens[] = {header.size(), text.size(), seal ? kTagBytes : 0, len,
                         seal ? kTagBytes : 0};
  write_all(parts, lens, 5);
  if (sealed_buf_.size() > (4u << 20) && len < sealed_buf_.size() / 4)
    std::vector<uint8_t>().swap(sealed_buf_);  // one large frame does not pin its size for ever
  sent_ += total;
}

void Peer::read_exact(void* p, size_t n) {
  asio::error_code ec;
  asio::read(sock_->s, asio::buffer(p, n), ec);
  if (ec) throw ProtocolError("truncated frame: " + ec.message());
}

// The data grows as it arrives (64 KiB, then doubling): a peer must send bytes to make us hold
// them, whatever length its header claims.
void Peer::read_data(std::vector<uint8_t>& data, size_t n) {
  size_t have = 0;
  while (have < n) {
    const size_t next = std::min(n, std::max<size_t>(64u << 10, 2 * have));
    data.resize(next);
    read_exact(data.data() + have, next - have);
    have = next;
  }
}

Message Peer::read_frame() {
  uint8_t hb[kHeaderBytes];
  asio::error_code ec;
  asio::read(sock_->s, asio::buffer(hb), ec);
  if (ec)
    throw std::runtime_error(ec == asio::error::eof ? "connection closed by peer" : ec.message());
  const FrameHeader h = decode_header(hb);
  FrameLimits lim;
  bool sealed;
  {
    std::lock_guard<std::mutex> lk(cfg_mu_);
    lim = limits_, sealed = recv_.on();
  }
  if (h.json_len > lim.max_json || h.data_len > lim.max_data)
    throw ProtocolError("frame of " + std::to_string(h.json_len + h.data_len) +
                        " bytes exceeds this connection's limit");
  if (bool(h.flags & kFlagSealed) != sealed)
    throw ProtocolError(sealed ? "unsealed frame on an encrypted connection"
                               : "sealed frame before the handshake");
  Message m;
  std::string text(h.json_len, '\0');
  uint8_t tags[2][kTagBytes];
  read_exact(text.data(), text.size());
  if (sealed) read_exact(tags[0], kTagBytes);
  read_data(m.data, size_t(h.data_len));
  if (sealed) read_exact(tags[1], kTagBytes);
  const ComputeScope section(section_of(Work::open));  // decryption (or checksum), JSON parsing
  if (sealed) {
    std::lock_guard<std::mutex> lk(cfg_mu_);
    const bool ok = recv_.open(reinterpret_cast<uint8_t*>(text.data()), text.size(), hb,
                               kHeaderBytes, tags[0]) &&
                    recv_.open(m.data.data(), m.data.size(), hb, kHeaderBytes, tags[1]);
    if (!ok) throw ProtocolError("frame does not open (forged, altered, replayed or reordered)");
    m.authenticated = true;
  } else {
    verify_frame(hb, text, m.data.data(), m.data.size());
  }
  received_ += kHeaderBytes + text.size() + m.data.size() + (sealed ? 2 * kTagBytes : 0);
  m.peer = index_;
  m.type = h.type;
  m.id = h.request_id;
  try {
    m.json = Json::parse(text);
  } catch (const std::exception& e) {
    throw ProtocolError(std::string("bad JSON in frame: ") + e.what());
  }
  m.text = std::move(text);
  return m;
}

void Peer::read_loop() {
  Message fail;
  fail.peer = index_;
  try {
    while (true) {
      Message m = read_frame();
      m.deliver_at = Clock::now();
      const Shaping sh = shaping();
      if (sh.enabled) {
        if (sh.port) {  // the frame holds the port's downlink for its wire time
          const auto wire = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
              double(m.data.size() + m.text.size() + kHeaderBytes) * 8.0 / sh.bits_per_s(m.deliver_at)));
          std::lock_guard<std::mutex> port_lk(sh.port->mu);
          m.deliver_at = sh.port->down_free = std::max(m.deliver_at, sh.port->down_free + wire);
        }
        m.deliver_at += std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(sh.link.latency_s));
      }
      inbox_->push(std::move(m), &closed_);
      if (closed_) throw std::runtime_error("closed");
    }
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lk(cfg_mu_);
    fail.failure = closed_ ? "closed" : !send_error_.empty() ? send_error_ : e.what();
  }
  fail.deliver_at = Clock::now();
  inbox_->push(std::move(fail));
}

asio::ip::tcp::endpoint parse_endpoint(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw std::invalid_argument("address '" + s + "' is not HOST:PORT");
  std::string host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  const std::string port = s.substr(colon + 1);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end || p < 0 || p > 65535)
    throw std::invalid_argument("bad port in '" + s + "'");
  asio::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec)
    throw std::invalid_argument("'" + host +
                                "' is not a numeric IP address (name lookup is not supported)");
  return {addr, uint16_t(p)};
}

asio::ip::tcp::socket connect_to(asio::io_context& io, const std::string& a,
                                 std::chrono::milliseconds timeout) {
  const auto ep = parse_endpoint(a);
  asio::ip::tcp::socket s(io);
  s.open(ep.protocol());
  s.non_blocking(true);
  asio::error_code ec;
  s.connect(ep, ec);
  if (ec == asio::error::would_block || ec == asio::error::in_progress) {
    pollfd pfd{s.native_handle(), POLLOUT, 0};
    const int r = ::poll(&pfd, 1, int(timeout.count()));
    if (r <= 0) throw std::runtime_error("connect to " + a + " timed out");
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(s.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) throw std::runtime_error("connect to " + a + " failed: " + std::strerror(err));
  } else if (ec) {
    throw std::runtime_error("connect to " + a + " failed: " + ec.message());
  }
  s.non_blocking(false);
  return s;
}

}  // namespace eb::dist
