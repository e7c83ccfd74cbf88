#include "cmd/signal_stream.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/system/system_error.hpp>

#include <signal.h>

#include <cerrno>

namespace carsync::cmd {

namespace {

int open_signalfd(std::initializer_list<int> signals) {
  sigset_t set;
  ::sigemptyset(&set);
  for (int s : signals) ::sigaddset(&set, s);
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0)
    throw boost::system::system_error(rc, boost::system::system_category(), "blocking the signals carsyncd reads");
  const int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) throw boost::system::system_error(errno, boost::system::system_category(), "signalfd");
  return fd;
}

}  // namespace

SignalStream::SignalStream(boost::asio::any_io_executor executor, std::initializer_list<int> signals)
    : fd_(std::move(executor), open_signalfd(signals)) {}

void SignalStream::async_wait(Handler handler) {
  // A signalfd read returns whole signalfd_siginfo records: a buffer of one gets one signal.
  fd_.async_read_some(boost::asio::buffer(&info_, sizeof info_),
                      [this, handler = std::move(handler)](const boost::system::error_code& ec, std::size_t n) {
                        if (!ec && n != sizeof info_) {
                          handler(boost::asio::error::eof, 0);  // cannot happen with a signalfd
                          return;
                        }
                        handler(ec, ec ? 0 : static_cast<int>(info_.ssi_signo));
                      });
}

void SignalStream::cancel() {
  boost::system::error_code ignored;
  fd_.cancel(ignored);
}

}  // namespace carsync::cmd
