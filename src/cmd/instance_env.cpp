#include "cmd/instance_env.hpp"

namespace carsync::cmd {

std::vector<EnvVar> instance_env(const InstanceConfig& instance, bool system_volume_available) {
  if (!system_volume_available) return {};
  std::vector<EnvVar> env{
      {"R1_SYSTEM_VOLUME", "/r1en_system"},
      {"R1_VOLUME_SYNC_DIR", "/r1en_system/volume-sync"},
      {"R1_SYNC_REQUEST_FILE", "/r1en_system/volume-sync/request.json"},
  };
  // Validation has already forced `enabled` off for a bad KEY or TYPE; an instance-level
  // error disables it too. Either way the app sees only the paths.
  const SyncConfig& sync = instance.sync;
  if (!instance.error && sync.enabled && sync.role != Role::none && !sync.key.empty()) {
    env.push_back({"R1_SYNC_TYPE", std::string(to_string(sync.role))});
    env.push_back({"R1_SYNC_KEY", sync.key});
  }
  return env;
}

}  // namespace carsync::cmd
