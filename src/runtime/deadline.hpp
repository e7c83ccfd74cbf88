#pragma once
// A deadline on one awaited operation: the operation is cancelled when the timer fires and
// the result becomes errc::timeout naming what timed out.
#include "core/error.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <string>
#include <variant>

namespace carsync::runtime {

template <class T>
boost::asio::awaitable<Result<T>> with_deadline(boost::asio::awaitable<Result<T>> op,
                                                std::chrono::steady_clock::duration limit,
                                                std::string what) {
  using namespace boost::asio::experimental::awaitable_operators;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, limit);
  auto winner = co_await (std::move(op) || timer.async_wait(boost::asio::use_awaitable));
  if (winner.index() == 0) co_return std::move(std::get<0>(winner));
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(limit).count();
  co_return make_error(errc::timeout, what + " timed out after " + std::to_string(secs) + " s");
}

}  // namespace carsync::runtime
