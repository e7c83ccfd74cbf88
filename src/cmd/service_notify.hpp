#pragma once
// carsyncd under systemd (Type=notify): readiness, reload and stop notifications, STATUS=
// lines, and watchdog keep-alives, through libsystemd's sd_notify. Without NOTIFY_SOCKET
// (not started by systemd) every call does nothing.
#include "carsync/node.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace carsync::cmd {

class ServiceNotifier {
 public:
  // Reads WATCHDOG_USEC/WATCHDOG_PID (sd_watchdog_enabled); keep-alives run on `executor`.
  explicit ServiceNotifier(boost::asio::any_io_executor executor);
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  void ready();      // READY=1 (also ends a reload)
  void reloading();  // RELOADING=1, with MONOTONIC_USEC for systemd's notify-reload
  void stopping();   // STOPPING=1
  void status(std::string_view text);  // STATUS=<text>, only when it changed

  // WATCHDOG=1 every half of WATCHDOG_USEC from the event loop itself, so a wedged loop
  // misses them and systemd restarts the service. No-op when the watchdog is off.
  void start_watchdog();
  // Ends the keep-alives (the node has stopped): nothing of ours stays pending on the loop.
  void stop();

  // 0 when systemd asked for no watchdog (or for another pid).
  std::chrono::microseconds watchdog_usec() const noexcept { return watchdog_usec_; }

 private:
  void arm();
  void send(const std::string& state);

  boost::asio::steady_timer timer_;
  std::chrono::microseconds watchdog_usec_{0};
  std::string last_status_;
  bool stopped_ = false;
};

}  // namespace carsync::cmd
