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

bool has_byte_progress(Phase phase) noexcept {
  switch (phase) {
    case Phase::archiving:
    case Phase::uploading:
    case Phase::downloading:
    case Phase::scanning:
    case Phase::applying:
      return true;
    default:
      return false;
  }
}

void ProgressLog::note_phase(const InstanceStatus& s, Clock::time_point now) {
  if (!has_byte_progress(s.phase)) {
    tracked_.erase(s.id);
    return;
  }
  auto it = tracked_.find(s.id);
  // A new step: its first line is due one interval from now (short steps log nothing).
  if (it == tracked_.end() || it->second.phase != s.phase) tracked_.insert_or_assign(s.id, Step{s.phase, now, 0});
}

std::optional<std::string> ProgressLog::observe(const InstanceStatus& s, Clock::time_point now) {
  auto it = tracked_.find(s.id);
  if (!has_byte_progress(s.phase) || it == tracked_.end() || it->second.phase != s.phase) {
    note_phase(s, now);
    if (has_byte_progress(s.phase)) tracked_.find(s.id)->second.mark_done = s.progress.done;
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

struct ProgressReporter::State : std::enable_shared_from_this<State> {
  State(Node& n, std::chrono::milliseconds s, Now clock)
      : node(n), sample(s), now(std::move(clock)), timer(n.get_executor()) {}

  void log(const InstanceStatus& s) {
    if (auto line = log_state.observe(s, now())) spdlog::info("{}", *line);
  }

  void arm() {
    timer.expires_after(sample);
    timer.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->stopped) return;
      // Only while a step with bytes runs: status() copies every instance.
      if (self->log_state.active())
        for (const auto& s : self->node.status().instances) self->log(s);
      self->arm();
    });
  }

  Node& node;
  std::chrono::milliseconds sample;
  Now now;
  boost::asio::steady_timer timer;
  ProgressLog log_state;
  Subscription sub;
  bool stopped = false;
};

ProgressReporter::ProgressReporter(Node& node, std::chrono::milliseconds sample, Now now)
    : state_(std::make_shared<State>(node, sample, std::move(now))) {
  std::weak_ptr<State> weak = state_;
  state_->sub = node.subscribe([weak](const StatusEvent& e) {
    auto self = weak.lock();
    if (!self) return;
    if (e.removed) self->log_state.forget(e.instance.id);
    else self->log_state.note_phase(e.instance, self->now());
  });
  state_->arm();
}

ProgressReporter::~ProgressReporter() { stop(); }

void ProgressReporter::stop() {
  if (!state_ || state_->stopped) return;
  state_->stopped = true;
  state_->sub.reset();
  state_->timer.cancel();
}

}  // namespace carsync::cmd
