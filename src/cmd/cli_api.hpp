#pragma once
// The CLI's side of the control API (docs/control-api.md): one synchronous call over the
// daemon's unix socket through net::HttpClient, and what an answer means for the exit code.
#include "core/error.hpp"
#include "net/http_client.hpp"

#include <boost/json/value.hpp>

#include <chrono>
#include <string>

namespace carsync::cmd {

// The exit codes of `carsync`, stable for scripts (also in --help and the README).
inline constexpr int kOk = 0;
inline constexpr int kFailed = 1;       // the operation failed (the daemon or the store said no)
inline constexpr int kUsage = 2;        // bad arguments or input (a file, a config, a 400 answer)
inline constexpr int kBusy = 3;         // a running carsyncd owns it: data_dir lock, 409 conflict
inline constexpr int kNotFound = 4;     // no such instance (404)
inline constexpr int kUnreachable = 5;  // no daemon answers on the control socket (or 503)

inline constexpr std::string_view kDefaultSocket = "/run/carsync.sock";

net::Endpoint control_endpoint(const std::string& socket);

struct ApiAnswer {
  unsigned status = 0;
  std::string body;          // the raw JSON text, what --json prints
  boost::json::value json;   // parsed; null when the body is not JSON
  bool ok() const { return status / 100 == 2; }
};

// One request, run to completion on its own io_context. An error is a transport failure:
// nothing answered on `socket` (kUnreachable).
Result<ApiAnswer> api_call(const std::string& socket, net::HttpClient::Verb verb, const std::string& route,
                           const std::string& body, std::chrono::steady_clock::duration timeout);

// The exit code for a non-2xx answer: 400/411/413 kUsage, 404 kNotFound, 409 kBusy (but
// `wrong_role`, a publish to a consumer: kUsage), 503 kUnreachable, anything else kFailed.
int exit_code_for(unsigned status, std::string_view code = "");
int exit_code_for(const ApiAnswer& answer);
// One line for people: "no instance \"x\" (not_found)", from the error envelope if any.
std::string error_text(const ApiAnswer& answer);

// A path segment or query value, percent-encoded.
std::string url_escape(std::string_view s);

}  // namespace carsync::cmd
