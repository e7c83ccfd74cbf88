#include "net/docker_reply.hpp"

#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <charconv>

namespace carsync::net {

namespace {

boost::json::value parse_or_null(std::string_view body) {
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (ec) return nullptr;
  return v;
}

}  // namespace

std::optional<std::pair<int, int>> parse_api_version(std::string_view v) {
  auto dot = v.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  int major = 0, minor = 0;
  auto [p1, e1] = std::from_chars(v.data(), v.data() + dot, major);
  auto [p2, e2] = std::from_chars(v.data() + dot + 1, v.data() + v.size(), minor);
  if (e1 != std::errc{} || e2 != std::errc{} || p1 != v.data() + dot || p2 != v.data() + v.size())
    return std::nullopt;
  return std::pair{major, minor};
}

std::string engine_reason(unsigned status, std::string_view body) {
  auto v = parse_or_null(body);
  std::string text;
  if (v.is_object())
    if (const auto* m = v.as_object().if_contains("message"); m && m->is_string()) text = m->as_string();
  if (text.empty()) text = body.substr(0, 200);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text.empty() ? fmt::format("HTTP {}", status) : fmt::format("HTTP {}: {}", status, text);
}

std::optional<std::pair<int, int>> version_reply_api(std::string_view body) {
  auto doc = parse_or_null(body);
  if (doc.is_object())
    if (const auto* v = doc.as_object().if_contains("ApiVersion"); v && v->is_string())
      return parse_api_version(v->as_string());
  return std::nullopt;
}

std::optional<bool> inspect_reply_running(std::string_view body) {
  auto doc = parse_or_null(body);
  const boost::json::value* running = nullptr;
  if (doc.is_object())
    if (const auto* state = doc.as_object().if_contains("State"); state && state->is_object())
      running = state->as_object().if_contains("Running");
  if (!running || !running->is_bool()) return std::nullopt;
  return running->as_bool();
}

std::optional<std::string> create_reply_id(std::string_view body) {
  auto doc = parse_or_null(body);
  if (doc.is_object())
    if (const auto* id = doc.as_object().if_contains("Id"); id && id->is_string()) return std::string(id->as_string());
  return std::nullopt;
}

}  // namespace carsync::net
