#pragma once
// carsync's first-boot gate (SYNC.INITIAL_SYNC_TIMEOUT; the reference has none, spec §8.9):
// a consumer that has never applied a snapshot keeps its container stopped until the first
// apply or until the timeout passes. Pure decisions; the instance's actor performs them
// between lifecycles, so the gate can never start a container while an apply is running.
#include <optional>

namespace carsync::core {

enum class GateAction {
  none,     // nothing to do
  hold,     // stop the container and wait (arm the timer when the timeout is > 0)
  release,  // start the container: the timeout passed without a first snapshot
};

struct GateFacts {
  bool consumer = false;
  bool has_container = false;
  bool halted = false;                  // an uncertain apply keeps the container stopped anyway
  bool applied_before = false;          // a snapshot was applied at some point (history)
  std::optional<double> timeout;        // INITIAL_SYNC_TIMEOUT; 0 = forever, absent = no gate
};

class InitialSyncGate {
 public:
  // At the instance's start.
  GateAction on_start(const GateFacts& f) noexcept;
  // The timer fired (only armed for a positive timeout). `applied_since`: a snapshot was
  // applied meanwhile (its restart already started the container).
  GateAction on_timeout(bool applied_since, bool halted) noexcept;
  // A snapshot was applied: the apply's own restart released the container.
  void on_applied() noexcept { holding_ = false; }
  // Cancellation (shutdown, removal) while holding: the container stays as the gate left it
  // (stopped, as carsync found a fresh consumer's state unusable); nothing more to do.
  void on_cancel() noexcept { holding_ = false; }
  bool holding() const noexcept { return holding_; }
  // Whether on_start asked for a timer.
  bool timed() const noexcept { return timed_; }

 private:
  bool holding_ = false;
  bool timed_ = false;
};

}  // namespace carsync::core
