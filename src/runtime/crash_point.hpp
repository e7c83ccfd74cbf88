#pragma once
// A test-only hook for the crash campaign (tests/integration/test_crash_campaign.cpp).
// With CARSYNC_TEST_CRASH_POINTS=1 in carsyncd's environment, every lifecycle step writes
// "crash-point <instance> <side> <step>\n" to stderr in one write(2) just before it runs, and
// with CARSYNC_TEST_CRASH_PAUSE_US=N it then sleeps N microseconds: a harness that reads
// the output can aim a SIGKILL at any step, even a sub-millisecond one, and classify where
// the kill landed from the last line written. CARSYNC_TEST_CRASH_PAUSE_AT="<side> <step>"
// (e.g. "provider claim") limits the pause to that step. The sleep blocks the calling thread (the
// node's executor), which only a test ever asks for.
//
// Off (the default) it costs one test of a flag read once per process.
#include <string>
#include <string_view>

namespace carsync::runtime {

namespace detail {
struct CrashPoints {
  bool enabled = false;
  long pause_us = 0;
  std::string pause_at;  // "<side> <step>": pause there only; empty: at every step
};
const CrashPoints& crash_points() noexcept;
void crash_point_hit(std::string_view instance, std::string_view side, std::string_view step) noexcept;
}  // namespace detail

inline void crash_point(std::string_view instance, std::string_view side, std::string_view step) noexcept {
  if (detail::crash_points().enabled) detail::crash_point_hit(instance, side, step);
}

}  // namespace carsync::runtime
