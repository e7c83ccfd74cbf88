#include "cmd/cli_api.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <exception>
#include <optional>

namespace carsync::cmd {

namespace asio = boost::asio;
namespace json = boost::json;

net::Endpoint control_endpoint(const std::string& socket) {
  net::Endpoint ep;
  ep.host = "carsync";
  ep.port = "80";
  ep.unix_socket = socket;
  return ep;
}

namespace {

net::Task<Result<net::HttpResponse>> one_call(net::HttpClient& http, net::HttpClient::Verb verb, std::string route,
                                              std::string body) {
  co_return co_await http.call(verb, route, std::move(body), false, "control API " + route);
}

}  // namespace

Result<ApiAnswer> api_call(const std::string& socket, net::HttpClient::Verb verb, const std::string& route,
                           const std::string& body, std::chrono::steady_clock::duration timeout) {
  asio::io_context io{1};
  net::HttpOptions options;
  options.io_timeout = timeout;
  options.attempts = 1;  // a CLI call is sent once; the operator decides about a retry
  net::HttpClient http(io.get_executor(), control_endpoint(socket), options);
  std::optional<Result<net::HttpResponse>> out;
  std::exception_ptr error;
  asio::co_spawn(io, one_call(http, verb, route, body), [&](std::exception_ptr e, Result<net::HttpResponse> r) {
    error = e;
    if (!e) out.emplace(std::move(r));
  });
  io.run();
  if (error) std::rethrow_exception(error);
  if (!*out) return out->error();
  ApiAnswer answer;
  answer.status = (*out)->status;
  answer.body = std::move((*out)->body);
  boost::system::error_code ec;
  answer.json = json::parse(answer.body, ec);
  if (ec) answer.json = nullptr;
  return answer;
}

int exit_code_for(unsigned status, std::string_view code) {
  if (status / 100 == 2) return kOk;
  switch (status) {
    case 400: case 411: case 413: return kUsage;
    case 404: return kNotFound;
    case 409: return code == "wrong_role" ? kUsage : kBusy;
    case 503: return kUnreachable;
    default: return kFailed;
  }
}

int exit_code_for(const ApiAnswer& answer) {
  std::string_view code;
  if (answer.json.is_object())
    if (const auto* e = answer.json.get_object().if_contains("error"); e && e->is_object())
      if (const auto* c = e->get_object().if_contains("code"); c && c->is_string()) code = c->get_string();
  return exit_code_for(answer.status, code);
}

std::string error_text(const ApiAnswer& answer) {
  if (answer.json.is_object()) {
    if (const auto* e = answer.json.get_object().if_contains("error"); e && e->is_object()) {
      const auto& o = e->get_object();
      auto text = [&](std::string_view k) {
        const auto* v = o.if_contains(k);
        return v && v->is_string() ? std::string(v->get_string()) : std::string();
      };
      std::string out = text("message");
      if (!text("field").empty()) out += " [" + text("field") + "]";
      return out + " (" + text("code") + ", HTTP " + std::to_string(answer.status) + ")";
    }
  }
  std::string start = answer.body.substr(0, 200);
  for (char& c : start)
    if (c == '\n' || c == '\r') c = ' ';
  return "HTTP " + std::to_string(answer.status) + (start.empty() ? "" : ": " + start);
}

std::string url_escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                       c == '.' || c == '_' || c == '~';
    out += plain ? std::string(1, static_cast<char>(c)) : fmt::format("%{:02X}", c);
  }
  return out;
}

}  // namespace carsync::cmd
