#pragma once
// The environment an instance's container must get (spec §2.6).
#include "carsync/config.hpp"

#include <string>
#include <vector>

namespace carsync::cmd {

struct EnvVar {
  std::string name;
  std::string value;
  bool operator==(const EnvVar&) const = default;
};

// Nothing when the system volume is unavailable; otherwise the three path variables, plus
// R1_SYNC_TYPE and R1_SYNC_KEY when the instance's sync survived config validation.
std::vector<EnvVar> instance_env(const InstanceConfig& instance, bool system_volume_available);

}  // namespace carsync::cmd
