#include "runtime/blocking_pool.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <stdexcept>
#include <thread>

namespace carsync::runtime {
namespace {

TEST(BlockingPool, RunsOffTheLoopThreadAndResumesOnIt) {
  boost::asio::io_context ioc;
  BlockingPool pool(2);
  std::thread::id loop_id, job_id, resumed_id;
  boost::asio::co_spawn(ioc, [&]() -> boost::asio::awaitable<void> {
    loop_id = std::this_thread::get_id();
    int v = co_await pool.run([&] {
      job_id = std::this_thread::get_id();
      return 42;
    });
    EXPECT_EQ(v, 42);
    resumed_id = std::this_thread::get_id();
  }, boost::asio::detached);
  ioc.run();
  EXPECT_NE(job_id, loop_id);
  EXPECT_EQ(resumed_id, loop_id);
}

TEST(BlockingPool, DeadlineRaisesTheCancelFlag) {
  boost::asio::io_context ioc;
  BlockingPool pool(1);
  bool saw_cancel = false;
  boost::asio::co_spawn(ioc, [&]() -> boost::asio::awaitable<void> {
    saw_cancel = co_await pool.run_cancellable(std::chrono::milliseconds(20),
                                               [](const std::atomic<bool>& cancel) {
      // Bounded: gives up after 10 s so a broken deadline fails the test instead of hanging.
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!cancel.load() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      return cancel.load();
    });
  }, boost::asio::detached);
  ioc.run();
  EXPECT_TRUE(saw_cancel);
}

}  // namespace
}  // namespace carsync::runtime

namespace carsync::runtime {
namespace {

// Cancelling the awaiting coroutine raises the job's flag; the caller still resumes only
// after the job returned.
TEST(BlockingPool, CoroutineCancellationRaisesTheCancelFlag) {
  boost::asio::io_context ioc;
  BlockingPool pool(1);
  boost::asio::cancellation_signal signal;
  std::atomic<bool> job_started{false};
  bool saw_cancel = false, job_returned = false;
  boost::asio::co_spawn(
      ioc,
      [&]() -> boost::asio::awaitable<void> {
        saw_cancel = co_await pool.run_cancellable(std::chrono::hours(1), [&](const std::atomic<bool>& cancel) {
          job_started = true;
          auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
          while (!cancel.load() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
          job_returned = true;
          return cancel.load();
        });
        EXPECT_TRUE(job_returned);
      },
      boost::asio::bind_cancellation_slot(signal.slot(), boost::asio::detached));
  // Emit once the job runs: poll the loop until then (bounded).
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!job_started && std::chrono::steady_clock::now() < until) ioc.poll();
  signal.emit(boost::asio::cancellation_type::terminal);
  ioc.run();
  EXPECT_TRUE(saw_cancel);
  EXPECT_EQ(pool.cancellable_in_flight(), 0u);
}

// A job that throws must not leave its flag registered (it used to leave a dangling pointer
// that cancel_all() later wrote through).
TEST(BlockingPool, AThrowingCancellableJobLeavesNothingRegistered) {
  boost::asio::io_context ioc;
  BlockingPool pool(1);
  bool caught = false;
  boost::asio::co_spawn(ioc, [&]() -> boost::asio::awaitable<void> {
    try {
      co_await pool.run_cancellable(std::chrono::seconds(5), [](const std::atomic<bool>&) -> int {
        throw std::runtime_error("job failed");
      });
    } catch (const std::runtime_error&) {
      caught = true;
    }
  }, boost::asio::detached);
  ioc.run();
  EXPECT_TRUE(caught);
  EXPECT_EQ(pool.cancellable_in_flight(), 0u);
  pool.cancel_all();  // writes through every registered flag: must touch nothing freed
}

}  // namespace
}  // namespace carsync::runtime

namespace carsync::runtime {
namespace {

// carsyncd's SIGHUP and SIGTERM are its loop thread's: a pool thread must never take one (under
// TSan an idle one would hold it for good; Service.NoKeepAlivesWhenTheWatchdogIsForAnotherProcess).
TEST(BlockingPool, ThreadsBlockEverySignalAndTheCreatorKeepsItsMask) {
  sigset_t before;
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, nullptr, &before), 0);
  ASSERT_FALSE(::sigismember(&before, SIGHUP));
  boost::asio::io_context ioc;
  BlockingPool pool(3);
  int checked = 0;
  bool all_blocked = true;
  boost::asio::co_spawn(ioc, [&]() -> boost::asio::awaitable<void> {
    for (int i = 0; i < 9; ++i) {
      const bool blocked = co_await pool.run([] {
        sigset_t mask;
        ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
        bool all = true;
        for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) all = all && ::sigismember(&mask, sig);
        return all;
      });
      all_blocked = all_blocked && blocked;
      ++checked;
    }
  }, boost::asio::detached);
  ioc.run();
  EXPECT_EQ(checked, 9);
  EXPECT_TRUE(all_blocked);
  sigset_t after;
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, nullptr, &after), 0);
  EXPECT_FALSE(::sigismember(&after, SIGHUP)) << "the creating thread's mask was left changed";
}

}  // namespace
}  // namespace carsync::runtime
