#pragma once
// Test deadlines under a slow build: CARSYNC_TEST_TIME_SCALE (a positive number, default 1)
// stretches every deadline a test waits against, so a ThreadSanitizer run (5-15x slower
// code, scripts/test-sanitizers --tsan) keeps every test instead of skipping the slow ones.
// Only limits that catch a hang scale; a test never waits longer when the event arrives.
#include <chrono>
#include <cstdlib>

namespace carsync::test {

inline double time_scale() {
  static const double scale = [] {
    const char* v = std::getenv("CARSYNC_TEST_TIME_SCALE");
    const double s = v ? std::strtod(v, nullptr) : 1.0;
    return s > 0 ? s : 1.0;
  }();
  return scale;
}

template <class Rep, class Period>
std::chrono::duration<Rep, Period> scaled(std::chrono::duration<Rep, Period> limit) {
  return std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(limit * time_scale());
}

}  // namespace carsync::test
