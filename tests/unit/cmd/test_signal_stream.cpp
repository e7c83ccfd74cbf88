// carsyncd's signals through a signalfd: blocked in the thread that builds the stream and in
// the threads it starts afterwards, read one per wait on the loop, a wait cancellable.
// SIGUSR1/SIGUSR2 stand for SIGTERM/SIGHUP: their default action ends the process, so a test
// whose signal were not blocked would not fail quietly. Signals go to this thread alone
// (pthread_kill): other threads of the test binary may not block them.
#include "cmd/signal_stream.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

namespace carsync::cmd {
namespace {

using namespace std::chrono_literals;

class SignalStreamTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, nullptr, &saved_), 0); }
  // Takes back what a test left pending, then the thread's mask as it was.
  void TearDown() override {
    sigset_t ours;
    ::sigemptyset(&ours);
    ::sigaddset(&ours, SIGUSR1);
    ::sigaddset(&ours, SIGUSR2);
    const timespec now{};
    while (::sigtimedwait(&ours, nullptr, &now) > 0) {
    }
    ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }
  // Runs the loop until `count` signals (or an error) were delivered, or 10 s.
  std::vector<int> wait_for(SignalStream& s, std::size_t count) {
    std::vector<int> got;
    std::function<void(const boost::system::error_code&, int)> on = [&](const boost::system::error_code& ec, int sig) {
      if (ec) {
        last_error = ec;
        return;
      }
      got.push_back(sig);
      if (got.size() < count) s.async_wait(on);
    };
    s.async_wait(on);
    io.run_for(10s);
    io.restart();
    return got;
  }

  boost::asio::io_context io;
  boost::system::error_code last_error;
  sigset_t saved_{};
};

TEST_F(SignalStreamTest, ASignalSentBeforeTheWaitIsKeptUntilRead) {
  SignalStream s(io.get_executor(), {SIGUSR1, SIGUSR2});
  ASSERT_EQ(::pthread_kill(::pthread_self(), SIGUSR1), 0);  // no wait yet: the kernel keeps it
  EXPECT_EQ(wait_for(s, 1), std::vector<int>{SIGUSR1});
}

TEST_F(SignalStreamTest, EachWaitGetsOneSignal) {
  SignalStream s(io.get_executor(), {SIGUSR1, SIGUSR2});
  ASSERT_EQ(::pthread_kill(::pthread_self(), SIGUSR1), 0);
  ASSERT_EQ(::pthread_kill(::pthread_self(), SIGUSR2), 0);
  EXPECT_EQ(wait_for(s, 2), (std::vector<int>{SIGUSR1, SIGUSR2}));
}

TEST_F(SignalStreamTest, ASignalDuringTheWaitEndsIt) {
  SignalStream s(io.get_executor(), {SIGUSR1, SIGUSR2});
  const pthread_t self = ::pthread_self();
  // Sent from another thread once the loop is waiting (posted to run first on the loop).
  std::thread sender;
  boost::asio::post(io, [&] { sender = std::thread([self] { ::pthread_kill(self, SIGUSR2); }); });
  EXPECT_EQ(wait_for(s, 1), std::vector<int>{SIGUSR2});
  sender.join();
}

TEST_F(SignalStreamTest, ThreadsStartedAfterwardsBlockTheSignals) {
  SignalStream s(io.get_executor(), {SIGUSR1, SIGUSR2});
  sigset_t in_thread;
  std::thread([&] { ::pthread_sigmask(SIG_SETMASK, nullptr, &in_thread); }).join();
  EXPECT_EQ(::sigismember(&in_thread, SIGUSR1), 1);
  EXPECT_EQ(::sigismember(&in_thread, SIGUSR2), 1);
}

TEST_F(SignalStreamTest, CancelEndsAWaitWithOperationAborted) {
  SignalStream s(io.get_executor(), {SIGUSR1});
  boost::asio::post(io, [&] { s.cancel(); });
  EXPECT_TRUE(wait_for(s, 1).empty());
  EXPECT_EQ(last_error, boost::asio::error::operation_aborted);
}

}  // namespace
}  // namespace carsync::cmd
