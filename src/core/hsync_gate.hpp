#pragma once
// When a consumer asks the ChainStore to sync its replica (spec §8.2). Times are seconds on
// any one clock (the runtime uses a monotonic one, whose origin is arbitrary: near 0 right
// after boot); before the first hsync the gate is due whatever that clock reads.
#include <limits>

namespace carsync::core {

inline constexpr double hsync_failure_retry_s = 30;

class HsyncGate {
 public:
  explicit HsyncGate(double interval_s) noexcept : interval_(interval_s) {}

  bool due(double now) const noexcept { return now - last_ >= interval_; }
  // The earliest time due() turns true, for arming a timer.
  double next_due() const noexcept { return last_ + interval_; }

  void on_success(double now) noexcept { last_ = now; }
  // A failure is retried after min(30, interval) rather than a full interval, and not on
  // the very next check.
  void on_failure(double now) noexcept;

  double interval() const noexcept { return interval_; }
  double last() const noexcept { return last_; }

 private:
  double interval_;
  double last_ = -std::numeric_limits<double>::infinity();  // never
};

}  // namespace carsync::core
