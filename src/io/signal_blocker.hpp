#pragma once
// Threads carsync starts must not take the process's signals. A signal is the application's
// business (carsyncd reads SIGTERM/SIGHUP on its loop thread from a signalfd), and a
// signal the kernel hands to an idle worker is not harmless either: under ThreadSanitizer a
// signal delivered to a thread blocked in a condition wait is held until that wait ends, which
// for an idle pool thread is never, so a reload or a stop would be lost. Threads inherit the
// signal mask of the thread that creates them: create them inside a SignalBlocker's scope and
// every signal stays blocked in them for good. (Boost 1.81's asio::thread_pool does not: its
// threads take the creator's mask, so runtime::BlockingPool creates it inside a blocker.)
#include <signal.h>

namespace carsync::io {

class SignalBlocker {
 public:
  SignalBlocker() noexcept {
    sigset_t all;
    ::sigfillset(&all);
    blocked_ = ::pthread_sigmask(SIG_BLOCK, &all, &previous_) == 0;
  }
  ~SignalBlocker() {
    if (blocked_) ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  SignalBlocker(const SignalBlocker&) = delete;
  SignalBlocker& operator=(const SignalBlocker&) = delete;

 private:
  sigset_t previous_{};
  bool blocked_ = false;
};

}  // namespace carsync::io
