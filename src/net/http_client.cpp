#include "net/http_client.hpp"

#include "core/json_text.hpp"

#include "io/secure_fs.hpp"
#include "io/unique_fd.hpp"
#include "net/store_reply.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <fcntl.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <random>

namespace carsync::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace urls = boost::urls;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;

namespace {

constexpr auto tok = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kChunk = 64 * 1024;

Error failure(const std::string& what, std::string_view detail) {
  return make_error(errc::store_failure, what + ": " + std::string(detail));
}

bool is_timeout(const boost::system::error_code& ec) { return ec == beast::error::timeout; }

std::string duration_text(std::chrono::steady_clock::duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

Error transport_error(const std::string& what, std::string_view step, const boost::system::error_code& ec,
                      std::chrono::steady_clock::duration limit) {
  if (is_timeout(ec))
    return make_error(errc::timeout, what + ": " + std::string(step) + " timed out after " + duration_text(limit));
  return failure(what, std::string(step) + ": " + ec.message());
}

// The peer closed an idle keep-alive connection before we used it.
bool is_disconnect(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::eof;
}

bool is_json_type(std::string_view content_type) {
  std::string lower(content_type);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower.find("application/json") != std::string::npos;
}

std::string one_line(std::string_view s, std::size_t max) {
  std::string out;
  for (char c : s.substr(0, max)) out.push_back(c == '\n' || c == '\r' || c == '\t' ? ' ' : c);
  return out;
}

std::string random_boundary() {
  static constexpr char digits[] = "0123456789abcdef";
  std::random_device rd;
  std::string b = "----------------------------carsync";
  for (int i = 0; i < 24; ++i) b.push_back(digits[rd() % 16]);
  return b;
}

// A filename inside a quoted Content-Disposition parameter.
std::string quoted_safe(std::string_view name) {
  std::string out;
  for (char c : name) out.push_back(c == '"' || c == '\\' || c == '\r' || c == '\n' ? '_' : c);
  return out.empty() ? "file" : out;
}

}  // namespace

Result<Endpoint> parse_base_url(std::string_view text) {
  std::string with_scheme(text);
  if (with_scheme.find("://") == std::string::npos) with_scheme = "http://" + with_scheme;
  auto u = urls::parse_absolute_uri(with_scheme);
  if (!u) return make_error(errc::bad_config, "invalid API URL \"" + std::string(text) + "\": " + u.error().message());
  if (u->scheme_id() != urls::scheme::http)
    return make_error(errc::bad_config, "unsupported API URL \"" + std::string(text) + "\": only http:// is supported");
  if (u->host().empty()) return make_error(errc::bad_config, "API URL \"" + std::string(text) + "\" has no host");
  if (u->has_query() || u->has_fragment())
    return make_error(errc::bad_config, "API URL \"" + std::string(text) + "\" must not have a query or fragment");
  Endpoint ep;
  // An IPv6 literal keeps no brackets: the resolver wants the bare address.
  ep.host = u->host_type() == urls::host_type::ipv6 ? std::string(u->encoded_host_address())
                                                     : std::string(u->host());
  ep.port = u->has_port() ? std::string(u->port()) : "80";
  ep.base_path = std::string(u->encoded_path());
  while (!ep.base_path.empty() && ep.base_path.back() == '/') ep.base_path.pop_back();
  return ep;
}

std::string form_query(std::initializer_list<std::pair<std::string_view, std::string_view>> params) {
  urls::encoding_opts opt;
  opt.space_as_plus = true;
  std::string out;
  for (const auto& [k, v] : params) {
    out += out.empty() ? '?' : '&';
    out += urls::encode(k, urls::unreserved_chars, opt);
    out += '=';
    out += urls::encode(v, urls::unreserved_chars, opt);
  }
  return out;
}

struct HttpClient::Connection {
  // Beast reads min(capacity - size, 64 KiB) per recv (beast::read_size): left to grow on its
  // own, the capacity stays one response head's worth and a download arrives ~1 KB per recv
  // (2 GiB from devnode took 9.5 s, curl 2.1-2.8 s). The argument is a limit, not a capacity.
  explicit Connection(const asio::any_io_executor& ex) : stream(ex) { buffer.reserve(kChunk); }
  // A generic stream socket: TCP for the node's APIs, a unix socket for the control API.
  beast::basic_stream<asio::generic::stream_protocol> stream;
  beast::flat_buffer buffer{1024 * 1024};  // leftover bytes between keep-alive requests
};

struct HttpClient::Request {
  http::verb verb = http::verb::get;
  std::string route;
  std::string what;
  std::string content_type;
  std::string body;            // a small body sent whole, or:
  fs::path file;               // a file sent between preamble and epilogue
  std::string preamble, epilogue;
  bool any_status = false;     // call()/stream(): every status is a value
  std::function<bool(std::string_view)> on_body;  // stream(): where a 2xx body goes
};

HttpClient::HttpClient(asio::any_io_executor ex, Endpoint endpoint, HttpOptions options)
    : ex_(std::move(ex)), endpoint_(std::move(endpoint)), options_(options) {}

HttpClient::~HttpClient() = default;

Task<Result<HttpResponse>> HttpClient::get(std::string route, std::string what) {
  Request req;
  req.route = std::move(route);
  req.what = std::move(what);
  co_return co_await send(req, true, nullptr);
}

Task<Result<HttpResponse>> HttpClient::post_json(std::string route, std::string json_body, bool idempotent,
                                                 std::string what) {
  Request req;
  req.verb = http::verb::post;
  req.route = std::move(route);
  req.what = std::move(what);
  req.content_type = "application/json";
  req.body = std::move(json_body);
  co_return co_await send(req, idempotent, nullptr);
}

Task<Result<HttpResponse>> HttpClient::post_file(std::string route, fs::path file, std::string filename,
                                                 std::string what) {
  Request req;
  req.verb = http::verb::post;
  req.route = std::move(route);
  req.what = std::move(what);
  auto boundary = random_boundary();
  req.content_type = "multipart/form-data; boundary=" + boundary;
  req.file = std::move(file);
  req.preamble = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" +
                 quoted_safe(filename) + "\"\r\nContent-Type: application/octet-stream\r\n\r\n";
  req.epilogue = "\r\n--" + boundary + "--\r\n";
  co_return co_await send(req, false, nullptr);
}

Task<Result<HttpResponse>> HttpClient::download(std::string route, const DownloadTarget& target, std::string what) {
  Request req;
  req.route = std::move(route);
  req.what = std::move(what);
  co_return co_await send(req, true, &target);
}

Task<Result<HttpResponse>> HttpClient::call(Verb verb, std::string route, std::string json_body, bool idempotent,
                                            std::string what) {
  Request req;
  req.verb = verb == Verb::post ? http::verb::post
             : verb == Verb::put ? http::verb::put
             : verb == Verb::del ? http::verb::delete_
                                 : http::verb::get;
  req.route = std::move(route);
  req.what = std::move(what);
  if (!json_body.empty()) req.content_type = "application/json";
  req.body = std::move(json_body);
  req.any_status = true;
  co_return co_await send(req, idempotent, nullptr);
}

Task<Result<HttpResponse>> HttpClient::stream(std::string route, std::function<bool(std::string_view)> on_body,
                                              std::string what) {
  Request req;
  req.route = std::move(route);
  req.what = std::move(what);
  req.any_status = true;
  req.on_body = std::move(on_body);
  co_return co_await send(req, false, nullptr);
}

Task<Result<HttpResponse>> HttpClient::send(const Request& req, bool idempotent, const DownloadTarget* target) {
  const unsigned attempts = idempotent ? std::max(1u, options_.attempts) : 1u;
  auto delay = options_.backoff;
  bool stale_retry_used = false;
  for (unsigned n = 1;;) {
    bool stale = false;
    auto r = co_await attempt(req, target, stale);
    if (r && (r->status / 100 == 2 || req.any_status)) co_return r;
    if (!r && stale && !stale_retry_used) {  // the server had closed our idle connection
      stale_retry_used = true;
      continue;
    }
    // Transport failures and 5xx may pass; 4xx and local failures (caps, files) will not.
    bool transient = r ? r->status >= 500 : (r.error().code == errc::timeout ||
                                             r.error().code == errc::store_failure);
    Error err = r ? failure(req.what, "HTTP " + std::to_string(r->status) +
                                          (r->body.empty() ? "" : ": " + one_line(r->body, 200)))
                  : r.error();
    if (!transient || n >= attempts) co_return err;
    ++n;
    asio::steady_timer timer(ex_, delay);
    co_await timer.async_wait(tok);
    delay *= 2;
  }
}

std::unique_ptr<HttpClient::Connection> HttpClient::take_idle() {
  std::lock_guard lock(mu_);
  if (idle_.empty()) return nullptr;
  auto c = std::move(idle_.back());
  idle_.pop_back();
  return c;
}

void HttpClient::give_back(std::unique_ptr<Connection> c) {
  std::lock_guard lock(mu_);
  if (idle_.size() < options_.max_idle_connections) idle_.push_back(std::move(c));
}

Task<Result<std::unique_ptr<HttpClient::Connection>>> HttpClient::connect(const std::string& what) {
  auto conn = std::make_unique<Connection>(ex_);
  conn->stream.expires_after(options_.io_timeout);
  if (!endpoint_.unix_socket.empty()) {
    if (endpoint_.unix_socket.size() >= sizeof(sockaddr_un::sun_path))
      co_return make_error(errc::bad_config, what + ": socket path too long: " + endpoint_.unix_socket);
    const asio::generic::stream_protocol::endpoint ep{asio::local::stream_protocol::endpoint(endpoint_.unix_socket)};
    auto [ec] = co_await conn->stream.async_connect(ep, tok);
    if (ec) co_return transport_error(what, "connect to " + endpoint_.text(), ec, options_.io_timeout);
    co_return conn;
  }
  tcp::resolver resolver(ex_);
  auto [rec, results] = co_await resolver.async_resolve(endpoint_.host, endpoint_.port, tok);
  if (rec) co_return failure(what, "resolve " + endpoint_.host + ": " + rec.message());
  // Each resolved address in turn, as a range connect would (the stream is protocol-generic).
  boost::system::error_code ec = asio::error::host_not_found;
  for (const auto& entry : results) {
    boost::system::error_code ignored;
    conn->stream.socket().close(ignored);
    auto [cec] = co_await conn->stream.async_connect(asio::generic::stream_protocol::endpoint(entry.endpoint()), tok);
    ec = cec;
    if (!ec || is_timeout(ec)) break;
  }
  if (ec) co_return transport_error(what, "connect to " + endpoint_.text(), ec, options_.io_timeout);
  boost::system::error_code ignored;
  conn->stream.socket().set_option(tcp::no_delay(true), ignored);
  co_return conn;
}

Task<Result<HttpResponse>> HttpClient::attempt(const Request& req, const DownloadTarget* target, bool& stale) {
  const auto& what = req.what;
  const auto limit = options_.io_timeout;

  // The upload's size is needed for Content-Length before anything is sent.
  io::unique_fd file;
  std::uint64_t file_size = 0;
  if (!req.file.empty()) {
    file.reset(::open(req.file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!file) co_return os_error(errno, what + ": open " + req.file.string());
    struct stat st {};
    if (::fstat(file.get(), &st) != 0) co_return os_error(errno, what + ": stat " + req.file.string());
    if (!S_ISREG(st.st_mode)) co_return make_error(errc::io_failure, what + ": not a regular file: " + req.file.string());
    file_size = static_cast<std::uint64_t>(st.st_size);
  }

  std::unique_ptr<Connection> conn = take_idle();
  const bool reused = conn != nullptr;
  if (!conn) {
    auto c = co_await connect(what);
    if (!c) co_return c.error();
    conn = std::move(*c);
  }
  auto& stream = conn->stream;

  http::request<http::empty_body> head{req.verb, endpoint_.base_path + req.route, 11};
  head.set(http::field::host, endpoint_.host + ":" + endpoint_.port);
  head.set(http::field::user_agent, "carsync");
  head.set(http::field::accept, "*/*");
  head.keep_alive(true);
  if (req.verb != http::verb::get) {
    if (!req.content_type.empty()) head.set(http::field::content_type, req.content_type);
    head.content_length(req.file.empty() ? req.body.size()
                                         : req.preamble.size() + file_size + req.epilogue.size());
  }

  // Header first, then the body as raw bytes: the upload is never in memory whole.
  http::request_serializer<http::empty_body> serializer{head};
  stream.expires_after(limit);
  auto [hec, hn] = co_await http::async_write_header(stream, serializer, tok);
  // A server may answer before it has read the request, then close: a 503 at its connection
  // limit, a 413. On a fresh connection a write the peer cut short (EPIPE, reset) still reads
  // what it said; only if there is no answer is the write's error the result. On a reused
  // connection the same error means the peer dropped it while idle: the caller retries.
  boost::system::error_code cut;
  auto cut_short = [&](const boost::system::error_code& ec) { return !reused && is_disconnect(ec); };
  if (hec && !cut_short(hec)) {
    stale = reused && is_disconnect(hec);
    co_return transport_error(what, "send request", hec, limit);
  }
  if (hec) cut = hec;
  auto write_raw = [&](std::string_view bytes) -> Task<boost::system::error_code> {
    stream.expires_after(limit);
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(bytes.data(), bytes.size()), tok);
    co_return ec;
  };
  boost::system::error_code wec;
  std::unique_ptr<char[]> chunk(new char[kChunk]);
  if (cut) {
  } else if (req.file.empty()) {
    if (!req.body.empty()) wec = co_await write_raw(req.body);
  } else {
    wec = co_await write_raw(req.preamble);
    // Regular-file reads of one chunk from the page cache: not worth a pool hop.
    for (std::uint64_t sent = 0; !wec && sent < file_size;) {
      ssize_t n = ::read(file.get(), chunk.get(), static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, file_size - sent)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) co_return os_error(errno, what + ": read " + req.file.string());
      if (n == 0) co_return make_error(errc::io_failure, what + ": " + req.file.string() + " shrank while uploading");
      sent += static_cast<std::uint64_t>(n);
      wec = co_await write_raw(std::string_view(chunk.get(), static_cast<std::size_t>(n)));
    }
    if (!wec) wec = co_await write_raw(req.epilogue);
  }
  if (wec && !cut_short(wec)) {
    stale = reused && is_disconnect(wec);
    co_return transport_error(what, "send request body", wec, limit);
  }
  if (wec) cut = wec;

  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);  // capped below, per destination
  stream.expires_after(limit);
  auto [rec, rn] = co_await http::async_read_header(stream, conn->buffer, parser, tok);
  if (rec && cut) co_return transport_error(what, "send request", cut, limit);
  if (rec) {
    stale = reused && is_disconnect(rec);
    co_return transport_error(what, "read response", rec, limit);
  }

  HttpResponse out;
  out.status = parser.get().result_int();
  out.content_type = std::string(parser.get()[http::field::content_type]);
  out.body_in_file = target && out.status / 100 == 2 && !is_json_type(out.content_type);
  const std::uint64_t cap = out.body_in_file ? target->max_bytes : options_.max_json_bytes;
  const bool streaming = req.on_body && out.status / 100 == 2;

  io::unique_fd sink;
  if (out.body_in_file) {
    sink.reset(::open(target->path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!sink) co_return os_error(errno, what + ": create " + target->path.string());
  }
  // Any failure from here on leaves no partial download behind.
  auto fail = [&](Error e) {
    if (sink) ::unlink(target->path.c_str());
    return e;
  };

  std::uint64_t total = 0;
  while (!parser.is_done()) {
    parser.get().body().data = chunk.get();
    parser.get().body().size = kChunk;
    stream.expires_after(limit);
    // A stream's reader wants each event as it arrives: read_some returns with what came;
    // read waits to fill the whole chunk buffer.
    boost::system::error_code ec;
    if (streaming) {
      auto [sec, sn] = co_await http::async_read_some(stream, conn->buffer, parser, tok);
      ec = sec;
    } else {
      auto [rec2, rn2] = co_await http::async_read(stream, conn->buffer, parser, tok);
      ec = rec2;
    }
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return fail(transport_error(what, "read response body", ec, limit));
    std::size_t got = kChunk - parser.get().body().size;
    if (streaming) {
      if (got > 0 && !req.on_body(std::string_view(chunk.get(), got))) co_return out;  // connection dropped
      continue;
    }
    const std::uint64_t offset = total;
    total += got;
    if (total > cap)
      co_return fail(make_error(errc::limit_exceeded, what + ": response body exceeds " + std::to_string(cap) + " bytes"));
    std::string_view bytes(chunk.get(), got);
    if (!out.body_in_file) {
      out.body.append(bytes);
      continue;
    }
    if (auto w = io::write_all(sink.get(), bytes); !w) co_return fail(Error{w.error().code, what + ": " + w.error().message});
    if (target->observe) target->observe(offset, bytes);
  }
  if (parser.keep_alive() && !cut) give_back(std::move(conn));
  co_return out;
}

Result<boost::json::value> envelope_result(const HttpResponse& response, const std::string& what) {
  return envelope_result_of(response.body, what);
}

}  // namespace carsync::net
