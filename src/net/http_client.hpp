#pragma once
// A small keep-alive HTTP/1.1 client for the node-local Ratio1 APIs (docs: r1-http-api.md).
//
// * Every step (resolve+connect, each header/body read, each body write) has its own
//   deadline (tcp_stream::expires_after), so a stalled peer fails the call while a large
//   transfer that keeps moving does not. Callers put an overall deadline on top.
// * Idempotent calls are retried with exponential backoff on transport errors and 5xx;
//   other calls are sent once. Independently, a request that fails on a *reused* idle
//   connection before any response byte arrived is re-sent once on a fresh connection:
//   that is the server having closed the idle connection, not a failed request.
// * Bodies are never held whole in memory beyond a cap: uploads stream from the file,
//   downloads stream to the file, JSON bodies are capped.
// * Every failure is a carsync::Error whose text starts with what failed, e.g.
//   "r1fs add_file: HTTP 500 Internal Server Error: <start of body>".
#include "core/error.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace carsync::net {

template <class T>
using Task = boost::asio::awaitable<T>;

// A service base URL, e.g. "http://127.0.0.1:31234" or "node:31235/prefix".
struct Endpoint {
  std::string host;
  std::string port;
  std::string base_path;  // prefix of every route, without a trailing '/'; may be empty
  // When set, connections go to this unix socket instead (host and port then only fill the
  // Host header): the daemon's control API.
  std::string unix_socket;

  std::string text() const {
    return unix_socket.empty() ? "http://" + host + ":" + port + base_path : "unix:" + unix_socket + base_path;
  }
};

// Like the SDK: a URL without a scheme gets "http://". https is refused (no TLS here: the
// APIs are node-local). Errors are errc::bad_config.
Result<Endpoint> parse_base_url(std::string_view url);

// A query string as the SDK (URLSearchParams) writes it: form-urlencoded UTF-8, space as
// '+'. Returns "?k=v&..." (or "" for no parameters).
std::string form_query(std::initializer_list<std::pair<std::string_view, std::string_view>> params);

struct HttpOptions {
  std::chrono::steady_clock::duration io_timeout = std::chrono::seconds(60);  // per step
  unsigned attempts = 3;                                      // idempotent calls only
  std::chrono::milliseconds backoff{200};                     // doubles per retry
  std::uint64_t max_json_bytes = 16 * 1024 * 1024;            // JSON / error bodies
  std::size_t max_idle_connections = 4;
};

struct HttpResponse {
  unsigned status = 0;
  std::string content_type;
  std::string body;         // JSON bodies only; empty when the body went to a file
  bool body_in_file = false;
};

// Where a download's bytes go: a non-JSON 2xx body is written to `path` (created
// exclusively; removed again on failure), passing every chunk and its offset to `observe`
// if set (offset 0 again means a retry started over). A JSON
// body (the server's error envelope) is returned in HttpResponse::body instead.
struct DownloadTarget {
  std::filesystem::path path;
  std::uint64_t max_bytes = 0;
  std::function<void(std::uint64_t offset, std::string_view bytes)> observe;
};

class HttpClient {
 public:
  HttpClient(boost::asio::any_io_executor ex, Endpoint endpoint, HttpOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  const Endpoint& endpoint() const noexcept { return endpoint_; }

  // In every call `route` is "/name" plus an optional query; `what` names the call in
  // errors. Non-2xx statuses are errors (errc::store_failure).
  Task<Result<HttpResponse>> get(std::string route, std::string what);
  Task<Result<HttpResponse>> post_json(std::string route, std::string json_body, bool idempotent,
                                       std::string what);
  // multipart/form-data with one part `file` streamed from `file` (spec §6.2).
  Task<Result<HttpResponse>> post_file(std::string route, std::filesystem::path file,
                                       std::string filename, std::string what);
  // GET whose successful non-JSON body is streamed to target.path.
  Task<Result<HttpResponse>> download(std::string route, const DownloadTarget& target,
                                      std::string what);

  // For a client of an API with its own error envelope: any HTTP status is a value; only
  // transport failures (and the JSON cap) are errors. A non-empty body is sent as JSON.
  // Idempotent calls are retried on transport failures only.
  enum class Verb { get, post, put, del };
  Task<Result<HttpResponse>> call(Verb verb, std::string route, std::string json_body, bool idempotent,
                                  std::string what);
  // GET of an endless body (an event stream): a 2xx body is handed to `on_body` chunk by
  // chunk as it arrives, uncapped and never retried; on_body returns false to stop reading
  // (the connection is then dropped). A non-2xx answer is a value as with call(). Each read
  // still has io_timeout: a stream that promises keep-alives can set it above their period.
  Task<Result<HttpResponse>> stream(std::string route, std::function<bool(std::string_view)> on_body,
                                    std::string what);

  struct Request;  // one prepared request (private detail, public for the .cpp helpers)
  struct Connection;

 private:
  Task<Result<HttpResponse>> send(const Request& req, bool idempotent, const DownloadTarget* target);
  Task<Result<HttpResponse>> attempt(const Request& req, const DownloadTarget* target, bool& stale);
  Task<Result<std::unique_ptr<Connection>>> connect(const std::string& what);
  std::unique_ptr<Connection> take_idle();
  void give_back(std::unique_ptr<Connection> c);

  boost::asio::any_io_executor ex_;
  Endpoint endpoint_;
  HttpOptions options_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;
};

// The `result` of a JSON envelope (spec §3). A body that is not JSON, has no `result`, or
// whose `result` is an object with an "error" key is a failure naming `what` (§4).
Result<boost::json::value> envelope_result(const HttpResponse& response, const std::string& what);

}  // namespace carsync::net
