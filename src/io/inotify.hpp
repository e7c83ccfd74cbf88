#pragma once
// One inotify descriptor for many directories. Reading is left to the caller (the runtime
// wraps fd() in an Asio stream descriptor); this decodes the event buffer.
#include "core/error.hpp"
#include "io/unique_fd.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace carsync::io {

struct InotifyEvent {
  int wd = -1;
  std::uint32_t mask = 0;
  std::string name;  // empty for events on the watched directory itself
};

class Inotify {
 public:
  static Result<Inotify> create();  // IN_NONBLOCK | IN_CLOEXEC
  int fd() const noexcept { return fd_.get(); }
  // Watches a directory (IN_ONLYDIR | IN_DONT_FOLLOW). Returns the watch descriptor.
  Result<int> add_watch(const std::filesystem::path& dir, std::uint32_t mask);
  void remove_watch(int wd) noexcept;
  unique_fd release() noexcept { return std::move(fd_); }

  // Splits a read(2) buffer into events; a truncated trailing record is dropped.
  static std::vector<InotifyEvent> decode(std::span<const std::byte> buf);

 private:
  explicit Inotify(unique_fd fd) : fd_(std::move(fd)) {}
  unique_fd fd_;
};

}  // namespace carsync::io
