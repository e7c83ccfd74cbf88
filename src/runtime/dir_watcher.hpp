#pragma once
// Directory change notification on the event loop: one inotify descriptor, many watched
// directories, a callback per directory. Queue overflow (IN_Q_OVERFLOW) calls the overflow
// callback, whose job is to rescan everything.
#include "core/error.hpp"
#include "io/inotify.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <unordered_map>

namespace carsync::runtime {

class DirWatcher {
 public:
  using Callback = std::function<void(const io::InotifyEvent&)>;

  explicit DirWatcher(boost::asio::any_io_executor ex);
  // Adds (or replaces) the watch of `dir`; returns the watch descriptor.
  Result<int> watch(const std::filesystem::path& dir, std::uint32_t mask, Callback cb);
  void unwatch(int wd);
  void on_overflow(std::function<void()> cb) { overflow_ = std::move(cb); }

  // Reads and dispatches events until the descriptor is closed or the coroutine cancelled.
  boost::asio::awaitable<void> run();
  void close();

 private:
  io::Inotify inotify_;
  boost::asio::posix::stream_descriptor stream_;
  std::unordered_map<int, Callback> callbacks_;
  std::function<void()> overflow_;
  alignas(8) std::array<std::byte, 64 * 1024> buf_;
};

}  // namespace carsync::runtime
