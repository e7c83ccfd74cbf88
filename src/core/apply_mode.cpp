#include "core/apply_mode.hpp"

namespace carsync::core {

boost::json::object ApplyModeResolution::to_json() const {
  boost::json::object o;
  o["requested_mode"] = requested_mode;
  o["effective_mode"] = effective_mode;
  if (reason) o["reason"] = *reason;
  else o["reason"] = nullptr;
  return o;
}

ApplyModeResolution resolve_apply_mode(std::string_view requested) {
  ApplyModeResolution r{std::string(requested), std::string(apply_mode_offline_restart), std::nullopt};
  if (requested == apply_mode_online_no_restart || requested == apply_mode_online_restart)
    r.reason = "online_apply_disabled";
  else if (requested != apply_mode_offline_restart)
    r.reason = "unknown_mode";
  return r;
}

}  // namespace carsync::core
