#pragma once
// Local apply-mode resolution (spec §8.3). The record's runtime.consumer_apply is never
// consulted: a provider must not be able to make a consumer hot-apply.
#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace carsync::core {

inline constexpr std::string_view apply_mode_offline_restart = "offline_restart";
inline constexpr std::string_view apply_mode_online_no_restart = "online_no_restart";
inline constexpr std::string_view apply_mode_online_restart = "online_restart";

struct ApplyModeResolution {
  std::string requested_mode;
  std::string effective_mode;
  std::optional<std::string> reason;  // nullopt, "unknown_mode" or "online_apply_disabled"

  // {"requested_mode", "effective_mode", "reason"} with a null reason when none.
  boost::json::object to_json() const;
  bool operator==(const ApplyModeResolution&) const = default;
};

// Every mode currently resolves to offline_restart; the reason says why it differs from
// the request (a warning for the operator).
ApplyModeResolution resolve_apply_mode(std::string_view requested);

}  // namespace carsync::core
