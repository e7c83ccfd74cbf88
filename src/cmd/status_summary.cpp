#include "cmd/status_summary.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace carsync::cmd {

bool is_syncing(const InstanceStatus& s) noexcept {
  switch (s.phase) {
    case Phase::stopping:
    case Phase::archiving:
    case Phase::uploading:
    case Phase::publishing:
    case Phase::downloading:
    case Phase::scanning:
    case Phase::applying:
    case Phase::restarting:
    case Phase::finishing:
      return true;
    default:
      return false;
  }
}

bool is_failing(const InstanceStatus& s) noexcept {
  if (s.halted || s.quarantine || s.config_error) return true;
  if (!s.error) return false;
  double last_ok = 0;
  if (s.last_publish) last_ok = std::max(last_ok, s.last_publish->time);
  if (s.last_apply) last_ok = std::max(last_ok, s.last_apply->time);
  return s.error->time > last_ok;
}

void StatusSummary::reset(const NodeStatus& status) {
  instances_.clear();
  for (const auto& s : status.instances) instances_[s.id] = {is_syncing(s), is_failing(s)};
}

void StatusSummary::update(const StatusEvent& event) {
  if (event.removed) {
    instances_.erase(event.instance.id);
    return;
  }
  instances_[event.instance.id] = {is_syncing(event.instance), is_failing(event.instance)};
}

std::string StatusSummary::text() const {
  std::size_t syncing = 0, failing = 0;
  for (const auto& [id, f] : instances_) {
    syncing += f.syncing;
    failing += f.failing;
  }
  return fmt::format("{} instance{}, {} syncing, {} failing", instances_.size(), instances_.size() == 1 ? "" : "s",
                     syncing, failing);
}

}  // namespace carsync::cmd
