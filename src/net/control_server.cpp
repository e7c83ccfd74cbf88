#include "net/control_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <list>
#include <random>

namespace carsync::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using boost::system::error_code;
using unix_socket = asio::local::stream_protocol;

ControlResponse error_response(unsigned status, std::string_view code, std::string_view message,
                               std::string_view field) {
  ControlResponse r;
  r.status = status;
  r.body = json::serialize(json::object{
      {"error", json::object{{"code", code}, {"field", field}, {"message", message}}}});
  return r;
}

struct ControlServer::Impl : std::enable_shared_from_this<Impl> {
  asio::any_io_executor ex;
  Handler handler;
  Spawn spawn;
  ControlServerLimits limits;
  std::filesystem::path unix_path;
  std::unique_ptr<unix_socket::acceptor> unix_acceptor;
  std::vector<std::pair<std::unique_ptr<asio::ip::tcp::acceptor>, bool>> tcp_acceptors;  // (acceptor, read_only)
  std::list<std::function<void()>> live;  // closes each live connection's socket
  bool closed = false;

  Impl(asio::any_io_executor e, Handler h, Spawn s, ControlServerLimits l)
      : ex(std::move(e)), handler(std::move(h)), spawn(std::move(s)), limits(l) {}

  template <class Acceptor>
  Task<void> accept_loop(Acceptor& acceptor, bool read_only) {
    auto self = shared_from_this();
    for (;;) {
      error_code ec;
      auto socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (closed || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        // EMFILE and friends: keep serving the connections we have; try again shortly.
        spdlog::warn("control API: accept failed: {}", ec.message());
        asio::steady_timer pause(ex, std::chrono::milliseconds(100));
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (live.size() >= limits.max_connections + 16) continue;  // far over: the socket just closes
      spawn(serve(std::move(socket), read_only));
    }
  }

  template <class Socket>
  Task<void> serve(Socket socket, bool read_only) {
    auto self = shared_from_this();
    using Protocol = typename Socket::protocol_type;
    beast::basic_stream<Protocol> stream(std::move(socket));
    auto closer = live.insert(live.end(), [&stream] {
      error_code ignored;
      stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
      stream.socket().close(ignored);
    });
    const bool over_limit = live.size() > limits.max_connections;
    if (over_limit) {
      co_await send(stream, error_response(503, "unavailable", "too many connections to the control API"), false);
    } else {
      co_await exchange(stream, read_only);
    }
    live.erase(closer);
    error_code ignored;
    stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
  }

  // Requests on one connection until the peer closes, an error, or a streamed answer.
  template <class Stream>
  Task<void> exchange(Stream& stream, bool read_only) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(limits.max_header_bytes);
      parser.body_limit(limits.max_body_bytes);
      error_code ec;
      stream.expires_after(limits.idle_timeout);
      co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_await refuse(stream, ec);
        co_return;
      }
      if (parser.get().chunked()) {
        co_await send(stream, error_response(411, "length_required", "chunked request bodies are not accepted: send Content-Length"), false);
        co_return;
      }
      if (parser.get()[http::field::expect] == "100-continue") {
        http::response<http::empty_body> go_on{http::status::continue_, 11};
        stream.expires_after(limits.write_timeout);
        co_await http::async_write(stream, go_on, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
      }
      stream.expires_after(limits.idle_timeout);
      co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_await refuse(stream, ec);
        co_return;
      }
      auto& req = parser.get();
      const bool keep_alive = req.keep_alive();
      ControlRequest request{.method = std::string(req.method_string()),
                             .target = std::string(req.target()),
                             .body = std::move(req.body()),
                             .read_only = read_only};
      ControlResponse response;
      try {
        response = co_await handler(std::move(request));
      } catch (const std::exception& e) {
        spdlog::error("control API: {} {} failed: {}", req.method_string(), req.target(), e.what());
        response = error_response(500, "internal", e.what());
      }
      if (response.stream) {
        co_await send_stream(stream, std::move(response));
        co_return;
      }
      if (!co_await send(stream, std::move(response), keep_alive) || !keep_alive) co_return;
    }
  }

  // Answers what the parser refused; a peer that left or timed out gets nothing.
  template <class Stream>
  Task<void> refuse(Stream& stream, const error_code& ec) {
    if (ec == http::error::header_limit || ec == http::error::body_limit) {
      co_await send(stream, error_response(413, "too_large", ec == http::error::header_limit
                                                                 ? "request headers exceed the control API's limit"
                                                                 : "request body exceeds the control API's limit"),
                    false);
    } else if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      co_await send(stream, error_response(400, "bad_request", "malformed HTTP request: " + ec.message()), false);
    }
  }

  template <class Body>
  static void fill(http::response<Body>& h, const ControlResponse& r, bool keep_alive) {
    h.result(r.status);
    h.version(11);
    h.set(http::field::server, "carsyncd");
    h.set(http::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) h.set(k, v);
    h.keep_alive(keep_alive);
  }

  // Whether the answer went out.
  template <class Stream>
  Task<bool> send(Stream& stream, ControlResponse r, bool keep_alive) {
    http::response<http::string_body> res;
    fill(res, r, keep_alive);
    res.body() = std::move(r.body);
    res.prepare_payload();
    error_code ec;
    stream.expires_after(limits.write_timeout);
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  template <class Stream>
  class Writer final : public StreamWriter {
   public:
    Writer(Stream& s, std::chrono::steady_clock::duration timeout) : stream_(s), timeout_(timeout) {}
    Task<Result<void>> write(std::string bytes) override {
      error_code ec;
      stream_.expires_after(timeout_);
      co_await asio::async_write(stream_, asio::buffer(bytes), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return make_error(errc::io_failure, "control API stream: " + ec.message());
      co_return Result<void>{};
    }

   private:
    Stream& stream_;
    std::chrono::steady_clock::duration timeout_;
  };

  // A streamed body ends with the connection (no Content-Length, Connection: close).
  template <class Stream>
  Task<void> send_stream(Stream& stream, ControlResponse r) {
    http::response<http::empty_body> res;
    fill(res, r, false);
    http::response_serializer<http::empty_body> sr(res);
    error_code ec;
    stream.expires_after(limits.write_timeout);
    co_await http::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    Writer<Stream> writer(stream, limits.write_timeout);
    co_await r.stream(writer);
  }
};

ControlServer::ControlServer(asio::any_io_executor ex, Handler handler, Spawn spawn, ControlServerLimits limits)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(handler), std::move(spawn), limits)) {}

ControlServer::~ControlServer() { close(); }

namespace {

Error listen_error(std::string_view what, const std::string& where, const error_code& ec) {
  return make_error(errc::bad_config, std::string(what) + " " + where + ": " + ec.message());
}

std::string random_suffix() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

}  // namespace

Result<void> ControlServer::listen_unix(const std::filesystem::path& path) {
  auto& impl = *impl_;
  const std::string shown = path.string();
  if (path.empty() || !path.is_absolute())
    return make_error(errc::bad_config, "control_socket must be an absolute path, not \"" + shown + "\"", "control_socket");
  std::error_code fec;
  std::filesystem::create_directories(path.parent_path(), fec);
  if (fec) return make_error(errc::bad_config, "control socket directory " + path.parent_path().string() + ": " + fec.message(), "control_socket");

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return make_error(errc::bad_config, "control socket " + shown + " exists and is not a socket: not replaced", "control_socket");
    unix_socket::socket probe(impl.ex);
    error_code ec;
    probe.connect(unix_socket::endpoint(shown), ec);
    if (!ec)
      return make_error(errc::bad_config, "control socket " + shown + " is in use by another process", "control_socket");
  }
  // Bound under a private name, made 0600, then renamed into place: the socket is never
  // reachable at its public path with the umask's mode.
  const auto temp = path.parent_path() / ("." + path.filename().string() + "." + random_suffix());
  auto acceptor = std::make_unique<unix_socket::acceptor>(impl.ex);
  error_code ec;
  acceptor->open(unix_socket(), ec);
  if (!ec) acceptor->bind(unix_socket::endpoint(temp.string()), ec);
  if (ec) return listen_error("cannot bind control socket", temp.string(), ec);
  if (::chmod(temp.c_str(), 0600) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return listen_error("cannot install control socket", shown, error_code(err, boost::system::system_category()));
  }
  acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return listen_error("cannot listen on control socket", shown, ec);
  impl.unix_acceptor = std::move(acceptor);
  impl.unix_path = path;
  return {};
}

Result<std::uint16_t> ControlServer::listen_tcp(std::string_view address, bool read_only) {
  auto& impl = *impl_;
  const std::string shown(address);
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos)
    return make_error(errc::bad_config, "listen address \"" + shown + "\" has no port (ADDRESS:PORT)");
  std::string_view host = address.substr(0, colon), port_text = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  const auto [end, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (perr != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
    return make_error(errc::bad_config, "listen address \"" + shown + "\": bad port");
  error_code ec;
  const auto ip = asio::ip::make_address(std::string(host), ec);
  if (ec) return make_error(errc::bad_config, "listen address \"" + shown + "\": not an IP address");
  asio::ip::tcp::endpoint ep(ip, static_cast<std::uint16_t>(port));
  auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(impl.ex);
  acceptor->open(ep.protocol(), ec);
  if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(ep, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return listen_error("cannot listen on", shown, ec);
  const auto bound = acceptor->local_endpoint(ec).port();
  impl.tcp_acceptors.emplace_back(std::move(acceptor), read_only);
  return bound;
}

void ControlServer::start() {
  auto& impl = *impl_;
  // Each accept loop is a task of the owner's group, like the connections it spawns.
  if (impl.unix_acceptor) impl.spawn(impl.accept_loop(*impl.unix_acceptor, false));
  for (auto& entry : impl.tcp_acceptors) impl.spawn(impl.accept_loop(*entry.first, entry.second));
}

void ControlServer::close() {
  auto& impl = *impl_;
  if (impl.closed) return;
  impl.closed = true;
  error_code ignored;
  if (impl.unix_acceptor) {
    impl.unix_acceptor->close(ignored);
    ::unlink(impl.unix_path.c_str());
  }
  for (auto& entry : impl.tcp_acceptors) entry.first->close(ignored);
  for (auto& close_one : impl.live) close_one();
}

std::size_t ControlServer::connections() const noexcept { return impl_->live.size(); }

}  // namespace carsync::net
