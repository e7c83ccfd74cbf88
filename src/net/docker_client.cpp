#include "net/docker_client.hpp"

#include "io/unique_fd.hpp"
#include "net/docker_reply.hpp"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <vector>

namespace carsync::net {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;
// basic_stream closes the socket when an operation outlives expires_after(): that is the
// per-operation deadline, and it works whether or not the awaiting coroutine is cancelled.
using Stream = beast::basic_stream<asio::local::stream_protocol>;

// The newest Engine API whose behaviour carsync relies on; newer engines are asked to speak it.
constexpr int kNewestApiMajor = 1;
constexpr int kNewestApiMinor = 45;
constexpr std::size_t kChunk = 64 * 1024;
constexpr std::size_t kErrorBodyCap = 4 * 1024;

std::string seconds_text(Clock::duration d) {
  return fmt::format("{:g} s", std::chrono::duration<double>(d).count());
}

// Percent-encodes everything but RFC 3986 unreserved characters (and '/' in query values).
std::string escape(std::string_view s, bool keep_slash) {
  std::string out;
  for (unsigned char c : s) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
    if (plain) out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string container_url(std::string_view container, std::string_view rest) {
  return "/containers/" + escape(container, false) + std::string(rest);
}

http::verb to_verb(Method m) {
  switch (m) {
    case Method::get: return http::verb::get;
    case Method::post: return http::verb::post;
    case Method::del: return http::verb::delete_;
  }
  return http::verb::get;
}

Error transport_error(const beast::error_code& ec, std::string_view what, Clock::duration limit) {
  if (ec == beast::error::timeout)
    return make_error(errc::timeout, fmt::format("docker {} timed out after {}", what, seconds_text(limit)));
  if (ec == asio::error::operation_aborted)
    return make_error(errc::cancelled, fmt::format("docker {} cancelled", what));
  return make_error(errc::runtime_unavailable, fmt::format("docker {}: {}", what, ec.message()));
}

// One request on a fresh connection (the engine closes it after the reply: keep_alive false).
struct Exchange {
  Stream stream;
  beast::flat_buffer buffer{kChunk};
  std::string what;  // "GET /v1.41/containers/x/json", for error texts

  explicit Exchange(const asio::any_io_executor& ex) : stream(ex) {}

  asio::awaitable<Result<void>> send(const std::string& socket, Method method, const std::string& target,
                                     const std::string& json_body, Clock::duration io_timeout) {
    what = fmt::format("{} {}", std::string_view(http::to_string(to_verb(method))), target);
    if (socket.size() >= sizeof(sockaddr_un::sun_path))
      co_return make_error(errc::bad_config, "docker socket path too long: " + socket);
    http::request<http::string_body> req{to_verb(method), target, 11};
    req.set(http::field::host, "docker");
    req.set(http::field::user_agent, "carsync");
    req.keep_alive(false);
    if (!json_body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = json_body;
    }
    req.prepare_payload();

    beast::error_code ec;
    const asio::local::stream_protocol::endpoint endpoint(socket);
    stream.expires_after(io_timeout);
    co_await stream.async_connect(endpoint, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return transport_error(ec, "connect to " + socket, io_timeout);
    stream.expires_after(io_timeout);
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return transport_error(ec, what, io_timeout);
    co_return Result<void>{};
  }

  asio::awaitable<Result<DockerReply>> read_reply(std::uint64_t body_cap, Clock::duration read_timeout) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(body_cap);
    beast::error_code ec;
    stream.expires_after(read_timeout);
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::body_limit)
      co_return make_error(errc::limit_exceeded, fmt::format("docker {}: reply exceeds {} bytes", what, body_cap));
    if (ec) co_return transport_error(ec, what, read_timeout);
    DockerReply reply{parser.get().result_int(), std::move(parser.get().body())};
    co_return reply;
  }
};

asio::awaitable<Result<DockerReply>> exchange(const std::string& socket, Method method,
                                              const std::string& target, const std::string& json_body,
                                              Clock::duration io_timeout, Clock::duration read_timeout,
                                              std::uint64_t body_cap) {
  Exchange x(co_await asio::this_coro::executor);
  if (auto sent = co_await x.send(socket, method, target, json_body, io_timeout); !sent)
    co_return sent.error();
  co_return co_await x.read_reply(body_cap, read_timeout);
}

Result<std::string> socket_from(std::string_view value, std::string_view origin) {
  std::string_view path = value;
  if (path.starts_with("unix://")) path.remove_prefix(7);
  else if (path.find("://") != std::string_view::npos)
    return make_error(errc::bad_config,
                      fmt::format("{}: only unix:// Docker endpoints are supported, got {}", origin, value));
  if (path.empty() || path.front() != '/')
    return make_error(errc::bad_config, fmt::format("{}: not an absolute socket path: {}", origin, value));
  return std::string(path);
}

Result<void> write_all(int fd, const char* data, std::size_t n, const std::filesystem::path& out) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return os_error(errno, "write " + out.string());
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

}  // namespace

Result<std::string> docker_socket_path(const std::optional<std::string>& configured) {
  if (configured && !configured->empty()) return socket_from(*configured, "docker socket");
  if (const char* env = std::getenv("DOCKER_HOST"); env && *env) return socket_from(env, "DOCKER_HOST");
  return std::string("/var/run/docker.sock");
}

DockerClient::DockerClient(std::string socket_path, DockerLimits limits)
    : socket_(std::move(socket_path)), limits_(limits) {}

asio::awaitable<Result<std::string>> DockerClient::api_version() {
  if (version_) co_return *version_;
  const std::string target = "/version", no_body;
  auto reply = co_await exchange(socket_, Method::get, target, no_body, limits_.io_timeout,
                                 limits_.io_timeout, limits_.max_reply_bytes);
  if (!reply) co_return reply.error();
  if (reply->status != 200)
    co_return make_error(errc::runtime_unavailable,
                         "docker GET /version: " + engine_reason(reply->status, reply->body));
  auto server = version_reply_api(reply->body);
  if (!server) co_return make_error(errc::runtime_unavailable, "docker GET /version: no usable ApiVersion");
  auto use = std::min(*server, std::pair{kNewestApiMajor, kNewestApiMinor});
  version_ = fmt::format("{}.{}", use.first, use.second);
  co_return *version_;
}

asio::awaitable<Result<DockerReply>> DockerClient::call(Method method, std::string target, std::string json_body,
                                                        Clock::duration read_timeout) {
  auto version = co_await api_version();
  if (!version) co_return version.error();
  const std::string versioned = "/v" + *version + target;
  co_return co_await exchange(socket_, method, versioned, json_body, limits_.io_timeout, read_timeout,
                              limits_.max_reply_bytes);
}

asio::awaitable<Result<bool>> DockerClient::is_running(std::string container) {
  const std::string target = container_url(container, "/json"), no_body;
  auto reply = co_await call(Method::get, target, no_body, limits_.io_timeout);
  if (!reply) co_return reply.error();
  if (reply->status == 404)
    co_return make_error(errc::not_found, fmt::format("docker: no such container {}", container));
  if (reply->status != 200)
    co_return make_error(errc::runtime_unavailable,
                         fmt::format("docker inspect {}: {}", container, engine_reason(reply->status, reply->body)));
  auto running = inspect_reply_running(reply->body);
  if (!running)
    co_return make_error(errc::runtime_unavailable,
                         fmt::format("docker inspect {}: reply has no State.Running", container));
  co_return *running;
}

asio::awaitable<Result<void>> DockerClient::stop(std::string container) {
  const std::string no_body;
  // The engine answers only once the container has stopped: allow the grace period on top.
  const std::string stop_target = container_url(container, fmt::format("/stop?t={}", limits_.stop_grace.count()));
  auto stopped = co_await call(Method::post, stop_target, no_body, limits_.io_timeout + limits_.stop_grace);
  if (!stopped) co_return stopped.error();
  if (stopped->status != 204 && stopped->status != 304)  // 304: it was not running
    co_return make_error(errc::runtime_stop_failed,
                         fmt::format("docker stop {}: {}", container, engine_reason(stopped->status, stopped->body)));

  // A 204 means the engine saw the process exit; wait for its state to settle before the
  // volumes are touched, then check it rather than trusting either answer.
  const std::string wait_target = container_url(container, "/wait?condition=not-running");
  auto waited = co_await call(Method::post, wait_target, no_body, limits_.wait_timeout);
  if (!waited) co_return waited.error();
  if (waited->status != 200)
    co_return make_error(errc::runtime_stop_failed,
                         fmt::format("docker wait {}: {}", container, engine_reason(waited->status, waited->body)));
  auto running = co_await is_running(container);
  if (!running) co_return make_error(errc::runtime_stop_failed, running.error().message);
  if (*running)
    co_return make_error(errc::runtime_stop_failed, fmt::format("docker: container {} still running after stop", container));
  co_return Result<void>{};
}

asio::awaitable<Result<void>> DockerClient::start(std::string container) {
  const std::string target = container_url(container, "/start"), no_body;
  auto reply = co_await call(Method::post, target, no_body, limits_.io_timeout);
  if (!reply) co_return reply.error();
  if (reply->status != 204 && reply->status != 304)  // 304: already running
    co_return make_error(errc::runtime_unavailable,
                         fmt::format("docker start {}: {}", container, engine_reason(reply->status, reply->body)));
  co_return Result<void>{};
}

asio::awaitable<Result<void>> DockerClient::export_path(std::string container, std::string container_path,
                                                        std::filesystem::path out) {
  auto version = co_await api_version();
  if (!version) co_return version.error();
  const std::string target =
      "/v" + *version + container_url(container, "/archive?path=" + escape(container_path, true));
  const std::string no_body;
  const auto io_timeout = limits_.io_timeout;

  Exchange x(co_await asio::this_coro::executor);
  if (auto sent = co_await x.send(socket_, Method::get, target, no_body, io_timeout); !sent)
    co_return sent.error();

  http::response_parser<http::buffer_body> parser;
  parser.body_limit(limits_.max_archive_bytes);
  beast::error_code ec;
  x.stream.expires_after(io_timeout);
  co_await http::async_read_header(x.stream, x.buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return transport_error(ec, x.what, io_timeout);

  // The body is read in chunks into this buffer; each chunk gets its own deadline, so a large
  // archive that keeps flowing is never cut off (the caller's step deadline bounds the total).
  std::vector<char> chunk(kChunk);
  auto read_chunk = [&]() -> asio::awaitable<Result<std::size_t>> {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    x.stream.expires_after(io_timeout);
    co_await http::async_read(x.stream, x.buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec == http::error::body_limit)
      co_return make_error(errc::limit_exceeded, fmt::format("docker archive of {} exceeds {} bytes", container_path,
                                                             limits_.max_archive_bytes));
    if (ec) co_return transport_error(ec, x.what, io_timeout);
    co_return chunk.size() - parser.get().body().size;
  };

  const unsigned status = parser.get().result_int();
  if (status != 200) {
    std::string body;
    while (!parser.is_done() && body.size() < kErrorBodyCap) {
      auto n = co_await read_chunk();
      if (!n) break;  // the status alone is reason enough
      body.append(chunk.data(), *n);
    }
    auto reason = fmt::format("cannot export {} from container {}: {}", container_path, container,
                              engine_reason(status, body));
    co_return make_error(status == 404 ? errc::not_found : errc::runtime_unavailable, std::move(reason));
  }

  io::unique_fd fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) co_return os_error(errno, "open " + out.string());
  auto fail = [&](Error e) {
    fd.reset();
    std::error_code ignored;
    std::filesystem::remove(out, ignored);
    return e;
  };
  while (!parser.is_done()) {
    auto n = co_await read_chunk();
    if (!n) co_return fail(n.error());
    // Plain write(2) on the event-loop thread: at most one chunk into the page cache of a
    // host-private scratch file, and online capture is the rare, opt-in mode.
    if (auto w = write_all(fd.get(), chunk.data(), *n, out); !w) co_return fail(w.error());
  }
  if (::fsync(fd.get()) != 0) co_return fail(os_error(errno, "fsync " + out.string()));
  co_return Result<void>{};
}

asio::awaitable<Result<std::string>> DockerClient::create_container(std::string name, boost::json::object spec) {
  const std::string target = "/containers/create?name=" + escape(name, false);
  const std::string body = boost::json::serialize(spec);
  auto reply = co_await call(Method::post, target, body, limits_.io_timeout);
  if (!reply) co_return reply.error();
  if (reply->status != 201)
    co_return make_error(errc::runtime_unavailable,
                         fmt::format("docker create {}: {}", name, engine_reason(reply->status, reply->body)));
  if (auto id = create_reply_id(reply->body)) co_return std::move(*id);
  co_return make_error(errc::runtime_unavailable, fmt::format("docker create {}: reply has no Id", name));
}

asio::awaitable<Result<void>> DockerClient::remove_container(std::string container) {
  const std::string target = container_url(container, "?force=true"), no_body;
  auto reply = co_await call(Method::del, target, no_body, limits_.io_timeout + limits_.stop_grace);
  if (!reply) co_return reply.error();
  if (reply->status != 204 && reply->status != 404)
    co_return make_error(errc::runtime_unavailable,
                         fmt::format("docker rm {}: {}", container, engine_reason(reply->status, reply->body)));
  co_return Result<void>{};
}

DockerRuntime::DockerRuntime(std::string container, std::string socket_path, DockerLimits limits)
    : container_(std::move(container)), client_(std::move(socket_path), limits) {}

asio::awaitable<Result<void>> DockerRuntime::stop() {
  auto r = co_await client_.stop(container_);
  if (!r && r.error().code != errc::timeout && r.error().code != errc::cancelled)
    co_return make_error(errc::runtime_stop_failed, r.error().message);
  co_return r;
}

asio::awaitable<Result<void>> DockerRuntime::start() { co_return co_await client_.start(container_); }

asio::awaitable<Result<void>> DockerRuntime::export_path(std::string container_path, std::filesystem::path out) {
  co_return co_await client_.export_path(container_, std::move(container_path), std::move(out));
}

}  // namespace carsync::net
