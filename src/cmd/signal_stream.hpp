#pragma once
// carsyncd's signals, read from a signalfd on the event loop instead of caught by a handler.
//
// The signals are blocked in the thread that builds the stream, before any other thread
// exists, so every thread inherits the block and none is ever interrupted by them: the kernel
// keeps a signal pending until the loop reads it. It replaces an asio::signal_set, whose
// handler writes a self-pipe. Under ThreadSanitizer, whose runtime intercepts handlers and may
// defer them, a SIGHUP sent just after READY=1 was now and then consumed with the handler never
// run (about 1 in 10 runs of Service.NoKeepAlivesWhenTheWatchdogIsForAnotherProcess: nothing
// pending, the self-pipe empty, the loop in epoll_wait; a second SIGHUP was handled). A signalfd
// has no handler to defer, and a signal sent while the node starts simply waits to be read.
// Children must not inherit the block: the one carsyncd starts (mkfs) resets its mask.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/error_code.hpp>

#include <sys/signalfd.h>

#include <functional>
#include <initializer_list>

namespace carsync::cmd {

class SignalStream {
 public:
  using Handler = std::function<void(const boost::system::error_code&, int signal)>;

  // Blocks `signals` in the calling thread and opens the signalfd. Throws
  // boost::system::system_error if either fails.
  SignalStream(boost::asio::any_io_executor executor, std::initializer_list<int> signals);

  // One signal per wait, in the order the kernel queued them; operation_aborted on cancel().
  void async_wait(Handler handler);
  void cancel();

 private:
  boost::asio::posix::stream_descriptor fd_;
  signalfd_siginfo info_{};
};

}  // namespace carsync::cmd
