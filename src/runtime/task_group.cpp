#include "runtime/task_group.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <exception>

namespace carsync::runtime {

namespace asio = boost::asio;

TaskGroup::TaskGroup(asio::any_io_executor ex, std::string name)
    : ex_(std::move(ex)), name_(std::move(name)), drained_(ex_, asio::steady_timer::time_point::max()) {}

TaskGroup::~TaskGroup() {
  // Owners drain the group first; a task outliving it would complete into freed memory.
  if (!signals_.empty()) spdlog::critical("task group {} destroyed with {} tasks running", name_, signals_.size());
}

void TaskGroup::spawn(asio::awaitable<void> task) {
  auto it = signals_.emplace(signals_.end());
  asio::co_spawn(ex_, std::move(task), asio::bind_cancellation_slot(it->slot(), [this, it](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        spdlog::critical("{}: task ended by an exception: {}", name_, x.what());
      } catch (...) {
        spdlog::critical("{}: task ended by an unknown exception", name_);
      }
    }
    signals_.erase(it);
    drained_.cancel();
  }));
}

void TaskGroup::emit(asio::cancellation_type type) {
  // A task may end (and erase its signal) inside emit: iterate over a snapshot of positions.
  for (auto it = signals_.begin(); it != signals_.end();) {
    auto next = std::next(it);
    it->emit(type);
    it = next;
  }
}

asio::awaitable<void> TaskGroup::wait() {
  while (!signals_.empty()) {
    boost::system::error_code ec;
    co_await drained_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) co_return;
  }
}

asio::awaitable<bool> TaskGroup::wait_for(std::chrono::steady_clock::duration limit) {
  using namespace asio::experimental::awaitable_operators;
  if (signals_.empty()) co_return true;
  asio::steady_timer timer(ex_, limit);
  co_await (wait() || timer.async_wait(asio::use_awaitable));
  co_return signals_.empty();
}

}  // namespace carsync::runtime
