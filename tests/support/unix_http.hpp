#pragma once
// A blocking HTTP/1.1 client for tests of the control API: one request per connection over
// a unix socket (or TCP), every read with a deadline (poll), the answer whole.
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace carsync::test {

struct HttpReply {
  unsigned status = 0;  // 0: no answer (connection refused, closed or timed out)
  std::string content_type;
  std::string body;
  std::string error;
  boost::json::value json() const { return boost::json::parse(body); }
};

// A blocking socket whose every read waits at most until a deadline (poll), as Beast's
// SyncReadStream/SyncWriteStream. (Asio's own blocking reads would wait forever.)
class DeadlineStream {
 public:
  DeadlineStream(int fd, std::chrono::milliseconds limit) : fd_(fd), deadline_(std::chrono::steady_clock::now() + limit) {}
  ~DeadlineStream() {
    if (fd_ >= 0) ::close(fd_);
  }
  DeadlineStream(const DeadlineStream&) = delete;
  DeadlineStream& operator=(const DeadlineStream&) = delete;
  void extend(std::chrono::milliseconds limit) { deadline_ = std::chrono::steady_clock::now() + limit; }
  int fd() const noexcept { return fd_; }

  template <class Buffers>
  std::size_t read_some(const Buffers& buffers, boost::system::error_code& ec) {
    ec = {};
    const auto b = *boost::asio::buffer_sequence_begin(buffers);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        ec = boost::asio::error::timed_out;
        return 0;
      }
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) continue;
      const ssize_t n = ::recv(fd_, b.data(), b.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ec = boost::system::error_code(errno, boost::system::system_category());
        return 0;
      }
      if (n == 0) ec = boost::asio::error::eof;
      return static_cast<std::size_t>(n);
    }
  }
  template <class Buffers>
  std::size_t read_some(const Buffers& buffers) {
    boost::system::error_code ec;
    auto n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class Buffers>
  std::size_t write_some(const Buffers& buffers, boost::system::error_code& ec) {
    ec = {};
    const auto b = *boost::asio::buffer_sequence_begin(buffers);
    const ssize_t n = ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL);
    if (n < 0) {
      ec = boost::system::error_code(errno, boost::system::system_category());
      return 0;
    }
    return static_cast<std::size_t>(n);
  }
  template <class Buffers>
  std::size_t write_some(const Buffers& buffers) {
    boost::system::error_code ec;
    auto n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  int fd_;
  std::chrono::steady_clock::time_point deadline_;
};

inline HttpReply failed(std::string why) {
  HttpReply r;
  r.error = std::move(why);
  return r;
}

// A connected unix-socket fd, or -1 with errno.
inline int connect_unix(const std::filesystem::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

inline int connect_tcp(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

// Sends one request on `stream` and reads the answer (until the deadline).
inline HttpReply exchange(DeadlineStream& stream, const std::string& method, const std::string& target,
                          const std::string& body, std::vector<std::pair<std::string, std::string>> headers = {},
                          bool keep_alive = false) {
  namespace http = boost::beast::http;
  HttpReply reply;
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "carsync");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  if (!body.empty() || method == "POST" || method == "PUT") req.prepare_payload();
  req.keep_alive(keep_alive);
  boost::system::error_code ec;
  http::write(stream, req, ec);
  // A server that refuses a connection (503 over its limit) may answer and close before the
  // request is written: the write fails (EPIPE) but its answer is still queued to be read.
  const bool write_failed = ec == boost::asio::error::broken_pipe || ec == boost::asio::error::connection_reset;
  if (ec && !write_failed) {
    reply.error = "write: " + ec.message();
    return reply;
  }
  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  http::read(stream, buffer, parser, ec);
  if (ec && ec != http::error::end_of_stream) {
    reply.error = (write_failed ? "write: broken pipe; read: " : "read: ") + ec.message();
    if (!parser.is_header_done()) return reply;
  }
  reply.status = parser.get().result_int();
  reply.content_type = std::string(parser.get()[http::field::content_type]);
  reply.body = parser.get().body();
  return reply;
}

inline HttpReply unix_request(const std::filesystem::path& socket_path, const std::string& method,
                              const std::string& target, const std::string& body = {},
                              std::vector<std::pair<std::string, std::string>> headers = {}) {
  const int fd = connect_unix(socket_path);
  if (fd < 0) return failed(std::string("connect: ") + std::strerror(errno));
  DeadlineStream stream(fd, std::chrono::seconds(60));
  return exchange(stream, method, target, body, std::move(headers));
}

inline HttpReply tcp_request(unsigned short port, const std::string& method, const std::string& target,
                             const std::string& body = {}) {
  const int fd = connect_tcp(port);
  if (fd < 0) return failed(std::string("connect: ") + std::strerror(errno));
  DeadlineStream stream(fd, std::chrono::seconds(60));
  return exchange(stream, method, target, body);
}

// An open /v1/events stream: reads Server-Sent Events one at a time with a deadline.
class EventReader {
 public:
  explicit EventReader(const std::filesystem::path& socket_path)
      : stream_(connect_unix(socket_path), std::chrono::seconds(10)) {
    const std::string req = "GET /v1/events HTTP/1.1\r\nHost: carsync\r\n\r\n";
    boost::system::error_code ec;
    if (stream_.fd() >= 0) stream_.write_some(boost::asio::buffer(req), ec);
    header_ = read_until("\r\n\r\n", std::chrono::seconds(10)).value_or("");
  }
  const std::string& header() const { return header_; }

  struct Event {
    std::string name;
    std::string data;
  };
  // The next event (comments skipped), or nullopt when none came within `limit`.
  std::optional<Event> next(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto block = read_until("\n\n", left);
      if (!block) return std::nullopt;
      Event e;
      std::size_t pos = 0;
      while (pos < block->size()) {
        auto end = block->find('\n', pos);
        if (end == std::string::npos) end = block->size();
        std::string line = block->substr(pos, end - pos);
        pos = end + 1;
        if (line.rfind("event: ", 0) == 0) e.name = line.substr(7);
        if (line.rfind("data: ", 0) == 0) e.data = line.substr(6);
      }
      if (!e.name.empty()) return e;
    }
  }

 private:
  std::optional<std::string> read_until(const std::string& delim, std::chrono::milliseconds limit) {
    stream_.extend(limit);
    for (;;) {
      if (auto at = buffered_.find(delim); at != std::string::npos) {
        std::string out = buffered_.substr(0, at + delim.size());
        buffered_.erase(0, at + delim.size());
        return out;
      }
      char chunk[4096];
      boost::system::error_code ec;
      const auto n = stream_.read_some(boost::asio::buffer(chunk), ec);
      if (ec) return std::nullopt;
      buffered_.append(chunk, n);
    }
  }

  DeadlineStream stream_;
  std::string buffered_, header_;
};

}  // namespace carsync::test
