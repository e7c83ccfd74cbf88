#pragma once
// Every coroutine of a node or an instance belongs to a TaskGroup (after Beast's
// server-flex-awaitable example): the group owns each task's cancellation signal, can cancel
// them all at once, and can be awaited until the last one has finished. Single-threaded: use
// it from its executor only. Its owner waits for it to drain before destroying it.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <list>
#include <string>

namespace carsync::runtime {

class TaskGroup {
 public:
  explicit TaskGroup(boost::asio::any_io_executor ex, std::string name);
  ~TaskGroup();
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // Starts `task` on the group's executor; the group owns it until it completes. An
  // exception escaping a task is a bug: it is logged with the group's name.
  void spawn(boost::asio::awaitable<void> task);
  // Cancels every task running now (total: waits end; terminal: everything ends).
  void emit(boost::asio::cancellation_type type);
  std::size_t size() const noexcept { return signals_.size(); }
  bool empty() const noexcept { return signals_.empty(); }

  // Completes once the group is empty (at once if it is), or when the waiter is cancelled.
  boost::asio::awaitable<void> wait();
  // The same with a bound: whether the group emptied in time.
  boost::asio::awaitable<bool> wait_for(std::chrono::steady_clock::duration limit);

 private:
  boost::asio::any_io_executor ex_;
  std::string name_;
  std::list<boost::asio::cancellation_signal> signals_;
  boost::asio::steady_timer drained_;  // cancelled whenever a task ends: wakes waiters
};

}  // namespace carsync::runtime
