// The only header that includes asio: the socket types behind Peer, HostRuntime and
// WorkerServer. Everything else sees them as opaque pointers, so that the rest of the code
// (and the CLI) does not compile asio's headers, about 2 s per translation unit.
#pragma once
#include <asio.hpp>
#include <chrono>
#include <memory>
#include <string>

namespace eb::dist {

struct TcpSocket {
  explicit TcpSocket(asio::ip::tcp::socket sock) : s(std::move(sock)) {}
  asio::ip::tcp::socket s;
};

struct IoContext {
  asio::io_context io;
};

// "host:port" -> endpoint (numeric IPv4/IPv6 only: no resolver in a static binary).
asio::ip::tcp::endpoint parse_endpoint(const std::string& s);
// Connects with a timeout; throws std::runtime_error naming the address.
asio::ip::tcp::socket connect_to(asio::io_context& io, const std::string& addr,
                                 std::chrono::milliseconds timeout);

}  // namespace eb::dist
