#pragma once
// The wall clock the protocol stamps files with (now() of the spec), injectable for tests.
#include <chrono>
#include <cstdint>

namespace carsync::core {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual double now() const = 0;               // seconds since the epoch
  virtual std::int64_t now_ns() const = 0;      // nanoseconds since the epoch
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
};

}  // namespace carsync::core
