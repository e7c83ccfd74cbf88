#include "cmd/service_notify.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <time.h>

#include <cstdint>

namespace carsync::cmd {

ServiceNotifier::ServiceNotifier(boost::asio::any_io_executor executor) : timer_(std::move(executor)) {
  std::uint64_t usec = 0;
  // The variables stay set: the unit's children (mkfs, mount) are not ours to notify for, and
  // sd_watchdog_enabled checks WATCHDOG_PID against getpid() so they would ignore them anyway.
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_usec_ = std::chrono::microseconds(usec);
}

void ServiceNotifier::send(const std::string& state) {
  const int r = sd_notify(0, state.c_str());
  if (r < 0) spdlog::debug("sd_notify({}) failed: errno {}", state, -r);
}

void ServiceNotifier::ready() { send("READY=1"); }

void ServiceNotifier::reloading() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto usec = static_cast<std::uint64_t>(ts.tv_sec) * 1000000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void ServiceNotifier::stopping() { send("STOPPING=1"); }

void ServiceNotifier::status(std::string_view text) {
  if (text == last_status_) return;
  last_status_ = text;
  send("STATUS=" + last_status_);
}

void ServiceNotifier::start_watchdog() {
  if (watchdog_usec_.count() <= 0 || stopped_) return;
  send("WATCHDOG=1");
  arm();
}

void ServiceNotifier::arm() {
  timer_.expires_after(watchdog_usec_ / 2);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    send("WATCHDOG=1");
    arm();
  });
}

void ServiceNotifier::stop() {
  stopped_ = true;
  timer_.cancel();
}

}  // namespace carsync::cmd
