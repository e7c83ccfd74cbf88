#include "runtime/dir_watcher.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/redirect_error.hpp>
#include <spdlog/spdlog.h>

#include <sys/inotify.h>

#include <stdexcept>

namespace carsync::runtime {

namespace {
io::Inotify create_inotify() {
  auto in = io::Inotify::create();
  if (!in) throw std::runtime_error("inotify: " + in.error().message);
  return std::move(*in);
}
}  // namespace

DirWatcher::DirWatcher(boost::asio::any_io_executor ex)
    : inotify_(create_inotify()), stream_(ex, inotify_.release().release()) {}

Result<int> DirWatcher::watch(const std::filesystem::path& dir, std::uint32_t mask, Callback cb) {
  auto wd = inotify_add_watch(stream_.native_handle(), dir.c_str(),
                              mask | IN_ONLYDIR | IN_DONT_FOLLOW);
  if (wd < 0) return os_error(errno, "inotify_add_watch " + dir.string());
  callbacks_[wd] = std::move(cb);
  return wd;
}

void DirWatcher::unwatch(int wd) {
  inotify_rm_watch(stream_.native_handle(), wd);
  callbacks_.erase(wd);
}

void DirWatcher::close() {
  boost::system::error_code ec;
  stream_.close(ec);
}

boost::asio::awaitable<void> DirWatcher::run() {
  for (;;) {
    boost::system::error_code ec;
    std::size_t n = co_await stream_.async_read_some(
        boost::asio::buffer(buf_), boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (ec) {
      if (ec != boost::asio::error::operation_aborted && ec != boost::asio::error::bad_descriptor)
        spdlog::error("inotify read failed: {}", ec.message());
      co_return;
    }
    for (const auto& ev : io::Inotify::decode(std::span(buf_.data(), n))) {
      if (ev.mask & IN_Q_OVERFLOW) {
        spdlog::warn("inotify queue overflow: rescanning every instance");
        if (overflow_) overflow_();
        continue;
      }
      auto it = callbacks_.find(ev.wd);
      if (it == callbacks_.end()) continue;
      // Copy: the callback may replace its own watch.
      auto cb = it->second;
      if (ev.mask & IN_IGNORED) callbacks_.erase(it);
      cb(ev);
    }
  }
}

}  // namespace carsync::runtime
