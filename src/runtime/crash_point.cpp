#include "runtime/crash_point.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <string>

namespace carsync::runtime::detail {

const CrashPoints& crash_points() noexcept {
  static const CrashPoints points = [] {
    CrashPoints p;
    const char* on = std::getenv("CARSYNC_TEST_CRASH_POINTS");
    p.enabled = on && std::string_view(on) == "1";
    if (const char* pause = std::getenv("CARSYNC_TEST_CRASH_PAUSE_US"); p.enabled && pause)
      p.pause_us = std::strtol(pause, nullptr, 10);
    if (const char* at = std::getenv("CARSYNC_TEST_CRASH_PAUSE_AT"); p.enabled && at) p.pause_at = at;
    return p;
  }();
  return points;
}

void crash_point_hit(std::string_view instance, std::string_view side, std::string_view step) noexcept {
  std::string line;
  line.reserve(32 + instance.size() + step.size());
  line.append("crash-point ").append(instance).append(" ").append(side).append(" ").append(step).append("\n");
  // One write: the line is whole in the output or absent, whenever the process dies.
  while (::write(STDERR_FILENO, line.data(), line.size()) < 0 && errno == EINTR) {
  }
  const auto& points = crash_points();
  if (!points.pause_at.empty() && points.pause_at != std::string(side) + " " + std::string(step)) return;
  if (const long us = points.pause_us; us > 0) {
    timespec ts{static_cast<time_t>(us / 1000000), (us % 1000000) * 1000};
    while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
}

}  // namespace carsync::runtime::detail
