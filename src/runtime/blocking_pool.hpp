#pragma once
// Work that blocks (filesystem syscalls, hashing, compression) runs here, never on the
// event-loop thread. A pool has a fixed number of threads; its queue holds at most one job
// per waiting coroutine, and each instance awaits at most one job at a time.
//
// Blocking calls cannot be interrupted, so long jobs take a cancel flag they poll: it is
// raised when the job's deadline passes, when the awaiting coroutine is cancelled, or when
// the node shuts down. Short jobs (one filesystem operation) use run(): they are bounded by
// the syscall itself, and abandoning one early would leave it holding the caller's frame.
//
// Callers pass lambdas that capture by reference ([&]): the caller always waits for the
// job, and g++ 12 destroys a by-value-capturing closure temporary twice when it is an
// argument inside a co_await expression (tests/unit/runtime/test_blocking_pool.cpp).
// The same compiler also miscompiled a co_await inside an if-condition or a || / && operand
// of a coroutine taking a reference parameter (SIGILL at resumption): carsync awaits into a
// named local first, then tests it.
#include "io/signal_blocker.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <optional>
#include <type_traits>
#include <variant>

namespace carsync::runtime {

namespace asio = boost::asio;

class BlockingPool {
 public:
  // The threads are created with every signal blocked (io::SignalBlocker: a temporary of this
  // mem-initializer, so it lives until pool_ is built): Boost 1.81's thread_pool leaves its
  // threads the creator's mask, and an idle one handed carsyncd's SIGHUP under TSan holds it.
  explicit BlockingPool(unsigned threads) : pool_((io::SignalBlocker{}, threads ? threads : 1)) {}
  ~BlockingPool() { join(); }
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Runs f() on the pool and resumes the caller on its own executor with the result (or
  // rethrows what f threw). f is moved into the job, so it may not outlive the caller's
  // frame by reference: the caller always waits for the job to finish.
  template <class F>
  auto run(F f) -> asio::awaitable<std::invoke_result_t<F&>> {
    using R = std::invoke_result_t<F&>;
    using Slot = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
    auto out = co_await asio::async_initiate<const asio::use_awaitable_t<>,
                                             void(std::exception_ptr, std::optional<Slot>)>(
        [this](auto handler, F job) {
          asio::post(pool_, [job = std::move(job), handler = std::move(handler)]() mutable {
            std::exception_ptr error;
            std::optional<Slot> value;
            try {
              if constexpr (std::is_void_v<R>) {
                job();
                value.emplace();
              } else {
                value.emplace(job());
              }
            } catch (...) {
              error = std::current_exception();
            }
            auto ex = asio::get_associated_executor(handler);
            asio::post(ex, [handler = std::move(handler), error, value = std::move(value)]() mutable {
              handler(error, std::move(value));
            });
          });
        },
        asio::use_awaitable, std::move(f));
    if constexpr (!std::is_void_v<R>) co_return std::move(*out);
  }

  // Runs f(cancel) where `cancel` becomes true once `deadline` has passed, the awaiting
  // coroutine is cancelled (terminal or partial: its cancellation slot raises the flag), or
  // cancel_all() is called; f is expected to give up promptly then. The caller still resumes
  // only when f has returned, so f may keep capturing the caller's frame by reference.
  template <class F>
  auto run_cancellable(std::chrono::steady_clock::duration deadline, F f)
      -> asio::awaitable<std::invoke_result_t<F&, const std::atomic<bool>&>> {
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
    timer.async_wait([cancel](const boost::system::error_code& ec) {
      if (!ec) cancel->store(true);
    });
    // The flag stays registered exactly as long as this frame waits for the job, however the
    // job ends (it may throw): the registration owns a reference, never a raw pointer.
    Registration reg(*this, cancel);
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) cancel->store(true);
    auto result = co_await run_with_slot(cancel, [&] { return f(*cancel); });
    timer.cancel();
    co_return result;
  }

  // Shutdown: every running and future cancellable job is told to give up.
  void cancel_all() {
    std::lock_guard lock(mu_);
    abandoned_ = true;
    for (const auto& f : flags_) f->store(true);
  }

  // How many cancellable jobs are waited for right now (tests: nothing stays registered).
  std::size_t cancellable_in_flight() const {
    std::lock_guard lock(mu_);
    return flags_.size();
  }

  void join() { pool_.join(); }
  void stop() { pool_.stop(); }

 private:
  using Flag = std::shared_ptr<std::atomic<bool>>;

  class Registration {
   public:
    Registration(BlockingPool& pool, Flag flag) : pool_(pool), flag_(std::move(flag)) {
      std::lock_guard lock(pool_.mu_);
      if (pool_.abandoned_) flag_->store(true);
      pool_.flags_.insert(flag_);
    }
    ~Registration() {
      std::lock_guard lock(pool_.mu_);
      pool_.flags_.erase(flag_);
    }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

   private:
    BlockingPool& pool_;
    Flag flag_;
  };

  // run(), with the awaiting coroutine's cancellation slot raising `cancel` instead of
  // abandoning the job (which must finish before the caller's frame may go). The flag
  // reaches the initiation as an argument, not a capture: the initiation closure is a
  // prvalue inside co_await, and g++ 12 would destroy a captured shared_ptr twice.
  template <class F>
  auto run_with_slot(const Flag& cancel, F f) -> asio::awaitable<std::invoke_result_t<F&>> {
    using R = std::invoke_result_t<F&>;
    auto out = co_await asio::async_initiate<const asio::use_awaitable_t<>, void(std::exception_ptr, std::optional<R>)>(
        [this](auto handler, F job, const Flag& flag) {
          auto slot = asio::get_associated_cancellation_slot(handler);
          if (slot.is_connected()) slot.assign([flag](asio::cancellation_type) { flag->store(true); });
          asio::post(pool_, [job = std::move(job), handler = std::move(handler)]() mutable {
            std::exception_ptr error;
            std::optional<R> value;
            try {
              value.emplace(job());
            } catch (...) {
              error = std::current_exception();
            }
            auto ex = asio::get_associated_executor(handler);
            asio::post(ex, [handler = std::move(handler), error, value = std::move(value)]() mutable {
              auto slot = asio::get_associated_cancellation_slot(handler);
              if (slot.is_connected()) slot.clear();
              handler(error, std::move(value));
            });
          });
        },
        asio::use_awaitable, std::move(f), cancel);
    co_return std::move(*out);
  }

  asio::thread_pool pool_;
  mutable std::mutex mu_;
  std::unordered_set<Flag> flags_;
  bool abandoned_ = false;
};

}  // namespace carsync::runtime
