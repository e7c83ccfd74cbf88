#pragma once
// Progress lines for long steps: while an instance is in a phase with byte progress
// (archiving, uploading, downloading, scanning, applying), at most one line per interval:
//   [id] uploading 412.0 MiB / 1.0 GiB (40%), 52.3 MiB/s
// A step shorter than the interval logs nothing. The node's events carry the counters: phase
// changes, and progress samples while a step moves bytes (limits.progress_interval).
#include "carsync/node.hpp"
#include "carsync/status.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace carsync::cmd {

// "512 B", "1.5 KiB", "412.0 MiB", "1.0 GiB".
std::string format_bytes(std::uint64_t bytes);

// The decision, clock injected: feed every status seen of an instance with the time it
// was seen; observe() answers the line to log when one is due.
class ProgressLog {
 public:
  using Clock = std::chrono::steady_clock;
  explicit ProgressLog(Clock::duration interval = std::chrono::seconds(5)) : interval_(interval) {}

  std::optional<std::string> observe(const InstanceStatus& status, Clock::time_point now);
  // Starts or ends a step without logging; a new step's first line is due one interval on.
  void note_phase(const InstanceStatus& status, Clock::time_point now);
  void forget(const std::string& id) { tracked_.erase(id); }
  // Some instance is in a phase with byte progress.
  bool active() const noexcept { return !tracked_.empty(); }

 private:

  struct Step {
    Phase phase;
    Clock::time_point mark;     // the step's start or its last line
    std::uint64_t mark_done;    // bytes done at mark
  };
  Clock::duration interval_;
  std::map<std::string, Step, std::less<>> tracked_;
};

// Runs a ProgressLog on a node's events, logging lines with spdlog::info on the node's
// executor. stop() (or destruction; both on the executor) ends it.
class ProgressReporter {
 public:
  using Now = std::function<ProgressLog::Clock::time_point()>;
  explicit ProgressReporter(Node& node, Now now = [] { return ProgressLog::Clock::now(); });
  ~ProgressReporter();
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;
  void stop();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace carsync::cmd
