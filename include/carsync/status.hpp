#pragma once
// What carsync reports about itself: per instance, and for the node.
#include "carsync/config.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace carsync {

struct InstanceStatus {
  std::string id;
  Role role = Role::none;
  bool enabled = false;
  std::optional<std::string> config_error;  // why the instance is disabled
  std::string phase = "idle";               // what the instance is doing right now
  std::uint64_t requests_ok = 0;
  std::uint64_t requests_failed = 0;
  std::optional<std::string> last_cid;
  std::optional<std::string> last_error;    // "<stage>: <text>" of the last failure
  double last_duration_s = 0;               // claim -> response of the last request
};

struct NodeStatus {
  std::string node_id;
  std::string file_engine;  // "io_uring" or "portable"
  std::vector<InstanceStatus> instances;
};

}  // namespace carsync
