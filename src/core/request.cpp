#include "core/request.hpp"

#include <cmath>

#include "core/json_text.hpp"

#include <array>

namespace carsync::core {
namespace {

namespace json = boost::json;

constexpr std::array<std::string_view, 2> capture_modes = {"offline", "online"};
constexpr std::array<std::string_view, 3> apply_modes = {"offline_restart", "online_no_restart", "online_restart"};
constexpr std::string_view bad_archive_paths = "archive_paths must be a non-empty list of container-absolute paths";

template <std::size_t N>
std::string listed(const std::array<std::string_view, N>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < N; ++i) {
    if (i) out += ", ";
    out += values[i];
  }
  return out + "]";
}

// Reads runtime.<field>: absent -> fallback; otherwise it must be one of `allowed`
// (a present null included, which is never allowed).
template <std::size_t N>
Result<std::string> runtime_choice(const json::object& runtime, std::string_view field,
                                   const std::array<std::string_view, N>& allowed, std::string_view fallback) {
  const json::value* v = runtime.if_contains(field);
  if (!v) return std::string(fallback);
  if (v->is_string()) {
    for (const auto a : allowed)
      if (v->get_string() == a) return std::string(a);
  }
  return make_error(errc::invalid_request, "runtime." + std::string(field) + " must be one of " + listed(allowed) +
                                               ", got " + first_code_points(to_canonical_json(*v), 200));
}

// metadata / runtime: Python's `value or {}` followed by an object check.
const json::object* object_or_empty(const json::object& body, std::string_view key, bool& ok) {
  static const json::object empty;
  ok = true;
  const json::value* v = body.if_contains(key);
  if (!v || !truthy(*v)) return &empty;
  if (v->is_object()) return &v->get_object();
  ok = false;
  return nullptr;
}

RequestRejection reject(errc code, std::string message) {
  return RequestRejection{make_error(code, std::move(message)), nullptr, std::nullopt, {}};
}

}  // namespace

std::optional<std::string> non_finite_number(const json::value& v, const std::string& path) {
  switch (v.kind()) {
    case json::kind::double_:
      if (!std::isfinite(v.get_double())) return path.empty() ? std::string("the document") : path;
      return std::nullopt;
    case json::kind::object:
      for (const auto& kv : v.get_object()) {
        const std::string key(kv.key());
        if (auto w = non_finite_number(kv.value(), path.empty() ? key : path + "." + key)) return w;
      }
      return std::nullopt;
    case json::kind::array: {
      std::size_t i = 0;
      for (const auto& item : v.get_array())
        if (auto w = non_finite_number(item, path + "[" + std::to_string(i++) + "]")) return w;
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

boost::json::object RuntimeSpec::to_json() const {
  return {{"provider_capture", provider_capture}, {"consumer_apply", consumer_apply}};
}

boost::json::object SyncRequest::normalised() const {
  json::array paths;
  for (const auto& p : archive_paths) paths.emplace_back(p);
  return {{"archive_paths", std::move(paths)}, {"metadata", metadata}, {"runtime", runtime.to_json()}};
}

boost::system::result<SyncRequest, RequestRejection> parse_request(std::string_view bytes,
                                                                   const RequestContext& ctx) {
  if (bytes.size() > max_request_bytes) {
    return reject(errc::invalid_request,
                  "request.json is larger than " + std::to_string(max_request_bytes) + " bytes");
  }
  // No raw_body for bytes that are not text: the file may be anything the app pointed at.
  if (auto utf8 = check_utf8(bytes); !utf8) {
    return reject(errc::invalid_request, "malformed JSON: invalid UTF-8 in request.json: " + utf8.error().message);
  }
  auto parsed = parse_json(bytes);
  if (!parsed) {
    auto r = reject(errc::invalid_request, "malformed JSON: " + parsed.error().message);
    r.raw_body = first_code_points(bytes, raw_body_code_points);
    return r;
  }
  if (!parsed->is_object()) {
    auto r = reject(errc::invalid_request, "request.json must be a JSON object");
    r.raw_body = first_code_points(bytes, raw_body_code_points);
    return r;
  }
  // A number beyond double's range parses as ±infinity, which no JSON reader can read back
  // once published (spec §5.1 leaves NaN/Infinity out of the contract): refused, and not
  // echoed as JSON either (the raw text is), so nothing carsync writes becomes unreadable.
  if (auto where = non_finite_number(*parsed, "")) {
    auto r = reject(errc::invalid_request, "request.json: " + *where +
                                               " is a number outside the range of a double; send it as a string");
    r.raw_body = first_code_points(bytes, raw_body_code_points);
    return r;
  }

  // 1 MiB of deeply nested arrays can take gigabytes once indented: what the record and
  // the history keep must stay writable and readable, so the written form is bounded too.
  if (!to_reference_json_within(*parsed, max_request_written_bytes)) {
    auto r = reject(errc::limit_exceeded, "request.json would take more than " +
                                              std::to_string(max_request_written_bytes) +
                                              " bytes as written in the record; nest it less deeply");
    r.raw_body = first_code_points(bytes, raw_body_code_points);
    return r;
  }

  const json::object& body = parsed->get_object();
  const json::value* paths_value = body.if_contains("archive_paths");
  // From here on every rejection echoes the body and its archive_paths (§5.4).
  const auto field_error = [&](errc code, std::string message) {
    RequestRejection r = reject(code, std::move(message));
    r.request = *parsed;
    if (paths_value && paths_value->is_array()) r.archive_paths = paths_value->get_array();
    return r;
  };

  SyncRequest req;
  bool ok = true;
  const json::object* metadata = object_or_empty(body, "metadata", ok);
  if (!ok) return field_error(errc::invalid_request, "metadata must be a JSON object");
  req.metadata = *metadata;

  const json::object* runtime = object_or_empty(body, "runtime", ok);
  if (!ok) return field_error(errc::invalid_request, "runtime must be a JSON object");
  auto capture = runtime_choice(*runtime, "provider_capture", capture_modes, "offline");
  if (!capture) return field_error(errc::invalid_request, capture.error().message);
  auto apply = runtime_choice(*runtime, "consumer_apply", apply_modes, "offline_restart");
  if (!apply) return field_error(errc::invalid_request, apply.error().message);
  req.runtime = RuntimeSpec{std::move(*capture), std::move(*apply)};

  if (!paths_value || !paths_value->is_array() || paths_value->get_array().empty())
    return field_error(errc::invalid_request, std::string(bad_archive_paths));

  for (const json::value& entry : paths_value->get_array()) {
    if (!entry.is_string() || entry.get_string().empty()) {
      return field_error(errc::path_rejected, "archive_paths entries must be non-empty strings, got " +
                                                  first_code_points(to_canonical_json(entry), 200));
    }
    const std::string_view path = entry.get_string();
    if (req.runtime.online()) {
      if (!ctx.allow_online_capture) {
        return field_error(errc::invalid_request,
                           "online provider capture requires ALLOW_ONLINE_PROVIDER_CAPTURE=true on this provider");
      }
      if (auto shape = check_shape(path); !shape) return field_error(errc::path_rejected, shape.error().message);
    } else {
      static const MountPolicy default_policy;
      auto resolved = resolve_mount(path, ctx.mounts, ctx.policy ? *ctx.policy : default_policy);
      if (!resolved) return field_error(errc::path_rejected, resolved.error().message);
      req.sources.push_back(std::move(*resolved));
    }
    req.archive_paths.emplace_back(path);
  }
  return req;
}

}  // namespace carsync::core
