#pragma once
// The control API's HTTP/1.1 server (docs/control-api.md): a unix socket (mode 0600) and,
// optionally, a read-only TCP listener. It knows HTTP, limits and timeouts; what a request
// means is the handler's business (runtime/control_api).
//
// * Every read and write has a deadline (basic_stream::expires_after): a request must arrive
//   within idle_timeout of the connection's last activity, a write must progress within
//   write_timeout. A slow or silent peer is closed, never waited for.
// * Bounded: max_connections at once (one more is answered 503 and closed; beyond that,
//   closed at once), headers and bodies capped (413), no chunked request bodies (411).
// * Every coroutine has an owner: each connection is handed to the `spawn` the owner gives
//   (a runtime::TaskGroup), which cancels them at shutdown; close() also closes every live
//   socket so that nothing waits on a peer.
#include "core/error.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace carsync::net {

template <class T>
using Task = boost::asio::awaitable<T>;

struct ControlRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query as sent: "/v1/instances/a/history?limit=5"
  std::string body;
  bool read_only = false;  // arrived on the read-only listener
};

// The body of a streamed answer (Server-Sent Events), written piece by piece.
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  // Fails once the peer is gone or has not read for write_timeout.
  virtual Task<Result<void>> write(std::string bytes) = 0;
};

struct ControlResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra fields (Allow, ...)
  // A streamed answer: after the header (no Content-Length; the connection closes when
  // it returns), the server calls this with a writer for the body.
  std::function<Task<void>(StreamWriter&)> stream;
};

// {"error": {"code", "field", "message"}} with `status`.
ControlResponse error_response(unsigned status, std::string_view code, std::string_view message,
                               std::string_view field = {});

struct ControlServerLimits {
  std::size_t max_connections = 64;
  std::uint32_t max_header_bytes = 8 * 1024;
  std::uint64_t max_body_bytes = 4 * 1024 * 1024;
  std::chrono::steady_clock::duration idle_timeout = std::chrono::seconds(30);
  std::chrono::steady_clock::duration write_timeout = std::chrono::seconds(30);
};

class ControlServer {
 public:
  using Handler = std::function<Task<ControlResponse>(ControlRequest)>;
  using Spawn = std::function<void(Task<void>)>;

  ControlServer(boost::asio::any_io_executor ex, Handler handler, Spawn spawn, ControlServerLimits limits = {});
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Listens on a unix socket at `path`, mode 0600 (missing parents are created 0755). A
  // stale socket file is replaced; one a live server answers on, or anything that is not a
  // socket, is refused (errc::bad_config naming the path).
  Result<void> listen_unix(const std::filesystem::path& path);
  // Listens on "ADDRESS:PORT" (an IP literal; "[::1]:9464" for IPv6; port 0 picks one);
  // returns the bound port.
  Result<std::uint16_t> listen_tcp(std::string_view address, bool read_only);

  // Accepts on every listener until close(): the accept loops and each connection go to
  // `spawn`.
  void start();
  // Stops accepting, removes the unix socket file and closes every live connection.
  void close();
  std::size_t connections() const noexcept;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace carsync::net
