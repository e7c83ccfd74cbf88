#pragma once
// One owner per data directory: an exclusive, non-blocking flock on <data_dir>/carsync.lock,
// held for the owner's lifetime (the kernel drops it when the process dies, so a crash never
// leaves a stale lock). The file records the holder's pid for the refusal message.
#include "core/error.hpp"
#include "io/unique_fd.hpp"

#include <sys/types.h>

#include <filesystem>
#include <optional>

namespace carsync::io {

class DataDirLock {
 public:
  // errc::data_dir_locked naming the holder's pid when another process holds it.
  static Result<DataDirLock> acquire(const std::filesystem::path& data_dir);
  // The pid recorded by the current holder, if any process holds the lock.
  static std::optional<pid_t> holder(const std::filesystem::path& data_dir);

  DataDirLock(DataDirLock&&) noexcept = default;
  DataDirLock& operator=(DataDirLock&&) noexcept = default;

 private:
  explicit DataDirLock(unique_fd fd) : fd_(std::move(fd)) {}
  unique_fd fd_;
};

}  // namespace carsync::io
