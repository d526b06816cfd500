#include "dist/runtime/peer.h"

#include <poll.h>
#include <pthread.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "dist/runtime/tcp.h"

namespace eb::dist {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count();
}

void Inbox::push(Message m) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    q_.push_back(std::move(m));
  }
  cv_.notify_all();
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

void Peer::enable_mac(const Digest256& key, bool host_side) {
  std::lock_guard<std::mutex> lk_send(send_mu_);
  std::lock_guard<std::mutex> lk(cfg_mu_);
  mac_on_ = true;
  sign_on_ = false;
  mac_key_ = key;
  send_dir_ = host_side ? 'H' : 'W';
  recv_dir_ = host_side ? 'W' : 'H';
  send_seq_ = recv_seq_ = 0;
}

void Peer::sign_sends() {
  std::lock_guard<std::mutex> lk_send(send_mu_);
  std::lock_guard<std::mutex> lk(cfg_mu_);
  if (!mac_on_) throw std::logic_error("sign_sends before enable_mac");
  sign_on_ = true;
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
  asio::error_code ec;
  sock_->s.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
}

void Peer::pace(size_t bytes) {
  const Shaping sh = shaping();
  if (!sh.enabled) return;
  // Token bucket with an empty bucket: the link is busy until link_free_.
  const auto now = Clock::now();
  if (link_free_ < now) link_free_ = now;
  link_free_ += std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(double(bytes) * 8.0 / sh.bits_per_s(now)));
  // Interruptible: close() must not wait for a slow emulated link to drain.
  std::unique_lock<std::mutex> lk(q_mu_);
  q_cv_.wait_until(lk, link_free_, [&] { return closed_.load(); });
}

void Peer::send(MsgType t, uint64_t id, const Json& json, const void* data, size_t len) {
  const std::string text = json.dump();
  {
    std::unique_lock<std::mutex> lk(q_mu_);
    q_cv_.wait(lk, [&] { return (q_.empty() && !busy_) || closed_ || broken_; });
  }
  write_frame(t, id, text, data, len);
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
      write_frame(p.type, p.id, p.text, p.data, p.len);
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

void Peer::write_frame(MsgType t, uint64_t id, const std::string& text, const void* data,
                       size_t len) {
  std::lock_guard<std::mutex> lk(send_mu_);
  if (closed_ || broken_) throw std::runtime_error("connection to " + name_ + " is closed");
  bool mac_on;
  Digest256 key;
  uint8_t dir;
  {
    std::lock_guard<std::mutex> lk_cfg(cfg_mu_);
    mac_on = sign_on_, key = mac_key_, dir = send_dir_;
  }
  const std::vector<uint8_t> header = encode_header(t, id, text, data, len, mac_on ? kFlagMac : 0);
  Tag128 tag{};
  if (mac_on) tag = frame_mac(key, dir, send_seq_++, header.data(), text, data, len);
  const size_t total = header.size() + text.size() + len + (mac_on ? kMacBytes : 0);
  pace(total);
  std::array<asio::const_buffer, 4> bufs{asio::buffer(header), asio::buffer(text),
                                         asio::buffer(data, len),
                                         asio::buffer(tag.data(), mac_on ? kMacBytes : 0)};
  asio::error_code ec;
  asio::write(sock_->s, bufs, ec);
  if (ec) throw std::runtime_error("send to " + name_ + " failed: " + ec.message());
  sent_ += total;
}

void Peer::read_loop() {
  Message fail;
  fail.peer = index_;
  try {
    while (true) {
      uint8_t hb[kHeaderBytes];
      asio::error_code ec;
      asio::read(sock_->s, asio::buffer(hb), ec);
      if (ec)
        throw std::runtime_error(ec == asio::error::eof ? "connection closed by peer"
                                                        : ec.message());
      const FrameHeader h = decode_header(hb);
      FrameLimits lim;
      bool mac_on;
      {
        std::lock_guard<std::mutex> lk(cfg_mu_);
        lim = limits_, mac_on = mac_on_;
      }
      if (h.json_len > lim.max_json || h.data_len > lim.max_data)
        throw ProtocolError("frame of " + std::to_string(h.json_len + h.data_len) +
                            " bytes exceeds this connection's limit");
      if (bool(h.flags & kFlagMac) != mac_on)
        throw ProtocolError(mac_on ? "frame without a MAC on an authenticated connection"
                                   : "MAC on a frame before the handshake");
      std::string text(h.json_len, '\0');
      Message m;
      asio::read(sock_->s, asio::buffer(text), ec);
      if (ec) throw ProtocolError("truncated frame: " + ec.message());
      // The data grows as it arrives: a peer must send bytes to make us hold them.
      constexpr size_t kFirstChunk = 1u << 20;
      const size_t n = size_t(h.data_len);
      m.data.resize(std::min(n, kFirstChunk));
      asio::read(sock_->s, asio::buffer(m.data), ec);
      if (!ec && n > kFirstChunk) {
        m.data.resize(n);
        asio::read(sock_->s, asio::buffer(m.data.data() + kFirstChunk, n - kFirstChunk), ec);
      }
      Tag128 tag{};
      if (!ec && mac_on) asio::read(sock_->s, asio::buffer(tag), ec);
      if (ec) throw ProtocolError("truncated frame: " + ec.message());
      verify_frame(hb, text, m.data.data(), m.data.size());
      if (mac_on) {
        Digest256 key;
        uint8_t dir;
        uint64_t seq;
        {
          std::lock_guard<std::mutex> lk(cfg_mu_);
          key = mac_key_, dir = recv_dir_, seq = recv_seq_++;
        }
        const Tag128 want = frame_mac(key, dir, seq, hb, text, m.data.data(), m.data.size());
        if (!equal_constant_time(want.data(), tag.data(), kMacBytes))
          throw ProtocolError("frame MAC mismatch (forged, altered or replayed frame)");
        m.authenticated = true;
      }
      received_ += kHeaderBytes + text.size() + m.data.size() + (mac_on ? kMacBytes : 0);
      m.peer = index_;
      m.type = h.type;
      m.id = h.request_id;
      try {
        m.json = Json::parse(text);
      } catch (const std::exception& e) {
        throw ProtocolError(std::string("bad JSON in frame: ") + e.what());
      }
      m.text = std::move(text);
      m.deliver_at = Clock::now();
      const Shaping sh = shaping();
      if (sh.enabled)
        m.deliver_at += std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(sh.link.latency_s));
      inbox_->push(std::move(m));
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
