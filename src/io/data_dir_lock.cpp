#include "io/data_dir_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>

namespace carsync::io {
namespace {

constexpr const char* lock_name = "carsync.lock";

std::optional<pid_t> read_pid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return std::nullopt;
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(buf, buf + n, pid);
  if (ec != std::errc() || pid <= 0) return std::nullopt;
  return pid;
}

}  // namespace

Result<DataDirLock> DataDirLock::acquire(const std::filesystem::path& data_dir) {
  const auto file = data_dir / lock_name;
  unique_fd fd(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return os_error(errno, "open " + file.string());
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return os_error(errno, "flock " + file.string());
    auto pid = read_pid(fd.get());
    return make_error(errc::data_dir_locked,
                      "data_dir " + data_dir.string() + " is in use by another carsync process" +
                          (pid ? " (pid " + std::to_string(*pid) + ")" : std::string()),
                      "data_dir");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    return os_error(errno, "write " + file.string());
  return DataDirLock(std::move(fd));
}

std::optional<pid_t> DataDirLock::holder(const std::filesystem::path& data_dir) {
  const auto file = data_dir / lock_name;
  unique_fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return std::nullopt;
  if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0) return std::nullopt;  // nobody holds it
  return read_pid(fd.get()).value_or(0);
}

}  // namespace carsync::io
