#include "io/compute_pool.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace carsync::io {
namespace {

using namespace std::chrono_literals;

TEST(ComputePool, SizeIsTheThreadCountAndZeroMeansEveryUsableCpu) {
  EXPECT_EQ(ComputePool(3).size(), 3u);
  EXPECT_EQ(ComputePool(1).size(), 1u);
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(::sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(ComputePool(0).size(), static_cast<unsigned>(CPU_COUNT(&set)));
}

// A signal sent to the process must reach the application's loop thread, never an idle
// worker (under ThreadSanitizer one delivered to a thread in a condition wait is held there
// until the wait ends: carsyncd missed a SIGHUP that way).
TEST(ComputePool, WorkersBlockEverySignalAndTheCreatorKeepsItsMask) {
  sigset_t before;
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, nullptr, &before), 0);
  ASSERT_FALSE(::sigismember(&before, SIGHUP));
  ComputePool pool(2);
  std::mutex mu;
  std::condition_variable cv;
  int checked = 0;
  bool all_blocked = true;
  for (int i = 0; i < 8; ++i)
    pool.post([&] {
      sigset_t mask;
      ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
      std::lock_guard lk(mu);
      for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1})
        if (!::sigismember(&mask, sig)) all_blocked = false;
      ++checked;
      cv.notify_all();
    });
  std::unique_lock lk(mu);
  ASSERT_TRUE(cv.wait_for(lk, 30s, [&] { return checked == 8; }));
  EXPECT_TRUE(all_blocked);
  sigset_t after;
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, nullptr, &after), 0);
  EXPECT_FALSE(::sigismember(&after, SIGHUP)) << "the creating thread's mask was left changed";
}

TEST(ComputePool, RunsEveryJobOnItsOwnThreads) {
  ComputePool pool(4);
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::thread::id> threads;
  int done = 0;
  constexpr int jobs = 200;
  for (int i = 0; i < jobs; ++i)
    pool.post([&] {
      std::lock_guard lk(mu);
      threads.insert(std::this_thread::get_id());
      ++done;
      cv.notify_all();
    });
  std::unique_lock lk(mu);
  ASSERT_TRUE(cv.wait_for(lk, 30s, [&] { return done == jobs; })) << done << " of " << jobs << " ran";
  EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u);  // never on the poster's thread
  EXPECT_LE(threads.size(), 4u);
}

TEST(ComputePool, OneThreadRunsJobsInPostingOrder) {
  std::vector<int> order;
  {
    ComputePool pool(1);
    for (int i = 0; i < 100; ++i) pool.post([&order, i] { order.push_back(i); });
  }  // the destructor drains
  ASSERT_EQ(order.size(), 100u);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
}

TEST(ComputePool, DestructorRunsWhatIsQueuedThenJoins) {
  std::atomic<int> ran{0};
  {
    ComputePool pool(2);
    // A slow first job keeps the rest queued when the destructor starts.
    pool.post([&] {
      std::this_thread::sleep_for(20ms);
      ++ran;
    });
    for (int i = 0; i < 500; ++i) pool.post([&] { ++ran; });
  }
  EXPECT_EQ(ran.load(), 501);
}

}  // namespace
}  // namespace carsync::io
