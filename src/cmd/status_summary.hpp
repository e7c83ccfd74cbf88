#pragma once
// The one-line state of the node for systemd's STATUS= ("systemctl status carsyncd"):
//   "12 instances, 3 syncing, 1 failing"
// kept from status events without copying every instance on each change.
#include "carsync/status.hpp"

#include <map>
#include <string>

namespace carsync::cmd {

// Syncing: in a step of a request or an apply (stopping .. finishing). Failing: halted,
// quarantined, disabled by an invalid configuration, or whose last request failed and
// nothing has succeeded since (so a recovered instance stops counting).
bool is_syncing(const InstanceStatus& s) noexcept;
bool is_failing(const InstanceStatus& s) noexcept;

class StatusSummary {
 public:
  void reset(const NodeStatus& status);
  void update(const StatusEvent& event);
  std::string text() const;

 private:
  struct Flags {
    bool syncing = false;
    bool failing = false;
  };
  std::map<std::string, Flags, std::less<>> instances_;
};

}  // namespace carsync::cmd
