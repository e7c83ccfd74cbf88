#pragma once
// request.json: decoding and claim-time validation (spec §5.1-§5.3, steps 6-9 of §5.2).
#include "carsync/config.hpp"
#include "core/error.hpp"
#include "core/path_rules.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::core {

inline constexpr std::size_t max_request_bytes = 1024 * 1024;
// The same request as written (indented) in the record and the sent history.
inline constexpr std::size_t max_request_written_bytes = 4 * 1024 * 1024;
inline constexpr std::size_t raw_body_code_points = 1024;

struct RuntimeSpec {
  std::string provider_capture = "offline";      // "offline" | "online"
  std::string consumer_apply = "offline_restart";
  bool online() const noexcept { return provider_capture == "online"; }
  boost::json::object to_json() const;
};

// A validated, claimed request (§5.3).
struct SyncRequest {
  std::vector<std::string> archive_paths;   // verbatim
  boost::json::object metadata;
  RuntimeSpec runtime;
  std::vector<ResolvedPath> sources;        // offline: one per archive path, same order
  boost::json::object normalised() const;   // {"archive_paths", "metadata", "runtime"}
};

// A rejected request with the diagnostics §5.4 needs.
struct RequestRejection {
  Error error;
  boost::json::value request;              // parsed body, or null
  std::optional<std::string> raw_body;     // only for parse / non-object failures
  boost::json::array archive_paths;        // echo for response.json
};

struct RequestContext {
  std::span<const VolumeMount> mounts;
  const MountPolicy* policy = nullptr;
  bool allow_online_capture = false;
};

// The dotted path of the first non-finite number in `v` ("metadata.x", "a[2]"), if any:
// what JSON cannot carry. `path` prefixes the result.
std::optional<std::string> non_finite_number(const boost::json::value& v, const std::string& path);

// Steps 6-9 of §5.2 over the bytes read from request.json.processing. A number outside the
// range of a double (it would be published as an unreadable Infinity) is refused.
boost::system::result<SyncRequest, RequestRejection> parse_request(std::string_view bytes,
                                                                   const RequestContext& ctx);

}  // namespace carsync::core
