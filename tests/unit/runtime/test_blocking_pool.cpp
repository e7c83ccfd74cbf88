#include "runtime/blocking_pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

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
