#pragma once
// The clocks the runtime reads, injectable for tests: the wall clock the protocol stamps
// files with (now() of the spec), and a monotonic clock for waits kept in memory, which a
// wall-clock step (NTP, an operator) must neither stretch nor cut short.
#include <chrono>
#include <cstdint>

namespace carsync::core {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual double now() const = 0;               // seconds since the epoch
  virtual std::int64_t now_ns() const = 0;      // nanoseconds since the epoch
  virtual double steady() const = 0;            // seconds on a monotonic clock (arbitrary origin)
};

class SystemClock final : public Clock {
 public:
  double now() const override {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  std::int64_t now_ns() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
  }
  double steady() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
};

}  // namespace carsync::core
