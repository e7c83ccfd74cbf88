#include "cmd/progress_log.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace carsync::cmd {

std::string format_bytes(std::uint64_t bytes) {
  static constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes) / 1024.0;
  std::size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(units)) {
    v /= 1024.0;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, units[u]);
}

void ProgressLog::note_phase(const InstanceStatus& s, Clock::time_point now) {
  if (!moves_bytes(s.phase)) {
    tracked_.erase(s.id);
    return;
  }
  auto it = tracked_.find(s.id);
  // A new step: its first line is due one interval from now (short steps log nothing).
  if (it == tracked_.end() || it->second.phase != s.phase) tracked_.insert_or_assign(s.id, Step{s.phase, now, 0});
}

std::optional<std::string> ProgressLog::observe(const InstanceStatus& s, Clock::time_point now) {
  auto it = tracked_.find(s.id);
  if (!moves_bytes(s.phase) || it == tracked_.end() || it->second.phase != s.phase) {
    note_phase(s, now);
    if (moves_bytes(s.phase)) tracked_.find(s.id)->second.mark_done = s.progress.done;
    return std::nullopt;
  }
  Step& step = it->second;
  if (now - step.mark < interval_) return std::nullopt;
  // The counters restart when a step learns its total; bytes since the mark are then all of done.
  const std::uint64_t moved = s.progress.done >= step.mark_done ? s.progress.done - step.mark_done : s.progress.done;
  const double secs = std::chrono::duration<double>(now - step.mark).count();
  const std::string rate = format_bytes(static_cast<std::uint64_t>(static_cast<double>(moved) / secs)) + "/s";
  step.mark = now;
  step.mark_done = s.progress.done;
  const auto phase = to_string(s.phase);
  if (s.progress.total == 0) return fmt::format("[{}] {} {}, {}", s.id, phase, format_bytes(s.progress.done), rate);
  const auto pct = s.progress.done >= s.progress.total ? 100 : s.progress.done * 100 / s.progress.total;
  return fmt::format("[{}] {} {} / {} ({}%), {}", s.id, phase, format_bytes(s.progress.done),
                     format_bytes(s.progress.total), pct, rate);
}

struct ProgressReporter::State {
  explicit State(Now clock) : now(std::move(clock)) {}
  Now now;
  ProgressLog log;
  Subscription sub;
};

ProgressReporter::ProgressReporter(Node& node, Now now) : state_(std::make_shared<State>(std::move(now))) {
  std::weak_ptr<State> weak = state_;
  state_->sub = node.subscribe([weak](const StatusEvent& e) {
    auto self = weak.lock();
    if (!self) return;
    if (e.removed) {
      self->log.forget(e.instance.id);
    } else if (auto line = self->log.observe(e.instance, self->now())) {
      spdlog::info("{}", *line);
    }
  });
}

ProgressReporter::~ProgressReporter() { stop(); }

void ProgressReporter::stop() {
  if (state_) state_->sub.reset();
}

}  // namespace carsync::cmd
