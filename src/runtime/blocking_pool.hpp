#pragma once
// Work that blocks (filesystem syscalls, hashing, compression) runs here, never on the
// event-loop thread. A pool has a fixed number of threads; its queue holds at most one job
// per waiting coroutine, and each instance awaits at most one job at a time.
//
// Blocking calls cannot be interrupted, so long jobs take a cancel flag they poll: it is
// raised when the job's deadline passes or the awaiting coroutine is cancelled.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <type_traits>

namespace carsync::runtime {

namespace asio = boost::asio;

class BlockingPool {
 public:
  explicit BlockingPool(unsigned threads) : pool_(threads ? threads : 1) {}
  ~BlockingPool() { join(); }
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Runs f() on the pool and resumes the caller on its own executor with the result.
  template <class F>
  auto run(F f) -> asio::awaitable<std::invoke_result_t<F&>> {
    using R = std::invoke_result_t<F&>;
    co_return co_await asio::co_spawn(
        pool_, [f = std::move(f)]() mutable -> asio::awaitable<R> { co_return f(); },
        asio::use_awaitable);
  }

  // Runs f(cancel) where `cancel` becomes true once `deadline` has passed or cancel_all()
  // is called; f is expected to give up promptly then.
  template <class F>
  auto run_cancellable(std::chrono::steady_clock::duration deadline, F f)
      -> asio::awaitable<std::invoke_result_t<F&, const std::atomic<bool>&>> {
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
    timer.async_wait([cancel](const boost::system::error_code& ec) {
      if (!ec) cancel->store(true);
    });
    {
      std::lock_guard lock(mu_);
      if (abandoned_) cancel->store(true);
      flags_.insert(cancel.get());
    }
    auto result = co_await run([f = std::move(f), cancel]() mutable { return f(*cancel); });
    {
      std::lock_guard lock(mu_);
      flags_.erase(cancel.get());
    }
    timer.cancel();
    co_return result;
  }

  // Shutdown: every running and future cancellable job is told to give up.
  void cancel_all() {
    std::lock_guard lock(mu_);
    abandoned_ = true;
    for (auto* f : flags_) f->store(true);
  }

  void join() { pool_.join(); }
  void stop() { pool_.stop(); }

 private:
  asio::thread_pool pool_;
  std::mutex mu_;
  std::unordered_set<std::atomic<bool>*> flags_;
  bool abandoned_ = false;
};

}  // namespace carsync::runtime
