#pragma once
// What the lifecycle drivers share about cancellation: they read it after every step and
// feed it to their machine as an input; from then on only clean-up runs, each step with the
// short clean-up bound instead of its normal deadline.
#include "carsync/config.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/this_coro.hpp>

#include <chrono>

namespace carsync::runtime {

// Whether the awaiting coroutine has been cancelled (it runs with throw_if_cancelled(false)).
inline boost::asio::awaitable<bool> was_cancelled() {
  auto state = co_await boost::asio::this_coro::cancellation_state;
  co_return state.cancelled() != boost::asio::cancellation_type::none;
}

// A step's deadline: `normal` until cancelled, limits.cleanup_timeout after.
inline std::chrono::steady_clock::duration step_deadline(bool cancelled, const RuntimeLimits& limits,
                                                         std::chrono::seconds normal) {
  return cancelled ? limits.cleanup_timeout : normal;
}

}  // namespace carsync::runtime
