#include "core/initial_sync_gate.hpp"

namespace carsync::core {

GateAction InitialSyncGate::on_start(const GateFacts& f) noexcept {
  if (!f.consumer || !f.timeout || !f.has_container || f.halted || f.applied_before) return GateAction::none;
  holding_ = true;
  timed_ = *f.timeout > 0;
  return GateAction::hold;
}

GateAction InitialSyncGate::on_timeout(bool applied_since, bool halted) noexcept {
  if (!holding_) return GateAction::none;
  holding_ = false;
  // An applied snapshot restarted the container already; a halt keeps it stopped.
  if (applied_since || halted) return GateAction::none;
  return GateAction::release;
}

}  // namespace carsync::core
