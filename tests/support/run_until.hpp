#pragma once
// Runs an io_context until a condition holds, bounded: each run_one_for returns as soon as a
// handler ran, so the wait is event-driven and the deadline only catches a hang.
#include "support/time_scale.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>

namespace carsync::test {

inline bool run_until(boost::asio::io_context& ioc, const std::function<bool()>& ready,
                      std::chrono::seconds limit = std::chrono::seconds(30)) {
  ioc.restart();
  const auto deadline = std::chrono::steady_clock::now() + scaled(limit);
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    ioc.run_one_for(std::chrono::milliseconds(50));
  }
  return true;
}

}  // namespace carsync::test
