#pragma once
// A size-limited tmpfs mounted over a directory for one test, to make that one place run
// out of space (or become read-only) while everything else keeps working. Needs
// CAP_SYS_ADMIN: mount() answers why not, and the test skips naming it. The destructor
// unmounts (lazily when something still holds it), so declare it after the TempDir it
// lives in: members are destroyed first, before the tree is removed.
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace carsync::test {

class SmallTmpfs {
 public:
  SmallTmpfs() = default;
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  ~SmallTmpfs() { unmount(); }

  // Mounts `kib` KiB of tmpfs at `dir` (created if missing). nullopt on success, else why not.
  std::optional<std::string> mount(const std::filesystem::path& dir, std::size_t kib) {
    std::filesystem::create_directories(dir);
    const std::string opts = "size=" + std::to_string(kib) + "k,mode=0755";
    if (::mount("carsync-test", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0)
      return "mount -t tmpfs " + dir.string() + ": " + std::strerror(errno);
    dir_ = dir;
    return std::nullopt;
  }

  // Remounts read-only (true) or read-write (false).
  bool set_read_only(bool ro) {
    const unsigned long flags = MS_REMOUNT | (ro ? MS_RDONLY : 0);
    return ::mount("carsync-test", dir_.c_str(), "tmpfs", flags, nullptr) == 0;
  }

  // Writes a filler file until the filesystem answers ENOSPC. Returns the bytes written.
  std::size_t fill() {
    const auto path = filler();
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return 0;
    std::vector<char> block(16 * 1024, 'f');
    std::size_t total = 0;
    for (;;) {
      ssize_t n = ::write(fd, block.data(), block.size());
      if (n > 0) {
        total += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      break;  // ENOSPC (or a short 0): full
    }
    ::close(fd);
    return total;
  }
  // Space returns: the filler goes.
  void release() { ::unlink(filler().c_str()); }

  std::filesystem::path filler() const { return dir_ / ".test-filler"; }
  const std::filesystem::path& dir() const noexcept { return dir_; }

  void unmount() {
    if (dir_.empty()) return;
    if (::umount2(dir_.c_str(), 0) != 0) ::umount2(dir_.c_str(), MNT_DETACH);
    dir_.clear();
  }

 private:
  std::filesystem::path dir_;
};

}  // namespace carsync::test
