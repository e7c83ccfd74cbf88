#include "io/secure_fs.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <system_error>

namespace carsync::io {
namespace {

// openat2(2) returns EAGAIN when a concurrent rename or mount may have let the walk step
// outside the root. A bounded retry keeps a hostile app renaming in a loop from pinning us.
constexpr int max_eagain_retries = 64;

std::string in_quotes(std::string_view rel) {
  std::string out = "'";
  out += rel;
  out += "'";
  return out;
}

Error resolve_error(int err, std::string_view rel) {
  switch (err) {
    case ELOOP:
      return make_error(errc::symlink_rejected, "refusing to follow symlink in " + in_quotes(rel));
    case EXDEV:
      return make_error(errc::escapes_root, in_quotes(rel) + " escapes volume root");
    case ENOENT:
      return make_error(errc::not_found, in_quotes(rel) + " does not exist");
    default:
      return os_error(err, "open " + in_quotes(rel));
  }
}

}  // namespace

Result<unique_fd> open_root_dir(const std::filesystem::path& dir) {
  int fd;
  do {
    fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    // O_DIRECTORY reports a symlink as ENOTDIR; say what it really is.
    struct stat st {};
    if ((err == ENOTDIR || err == ELOOP) && ::lstat(dir.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
      return resolve_error(ELOOP, dir.native());
    return resolve_error(err, dir.native());
  }
  return unique_fd(fd);
}

namespace {

// One openat2 call: `path` is shorter than PATH_MAX; errors name `shown`.
Result<unique_fd> open_piece(int dir_fd, const std::string& path, open_how how, std::string_view shown) {
  int eagain_left = max_eagain_retries;
  for (;;) {
    const long fd = ::syscall(SYS_openat2, dir_fd, path.c_str(), &how, sizeof how);
    if (fd >= 0) return unique_fd(static_cast<int>(fd));
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN && eagain_left-- > 0) continue;
    return resolve_error(err, shown);
  }
}

}  // namespace

Result<unique_fd> open_beneath(int root_fd, std::string_view rel, int flags, mode_t mode) {
  const std::string_view path = rel.empty() ? std::string_view(".") : rel;
  // RESOLVE_NO_SYMLINKS already refuses a trailing symlink with ELOOP. O_NOFOLLOW would
  // turn that into ENOTDIR under O_DIRECTORY, hiding the reason, so it only stays where it
  // changes the meaning: O_PATH|O_NOFOLLOW opens the symlink itself (lstat semantics).
  if (!(flags & O_PATH)) flags &= ~O_NOFOLLOW;
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
  // openat2 rejects a mode unless the call can create a file.
  if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

  auto anchored = anchor_beneath(root_fd, path);
  if (!anchored) return anchored.error();
  return open_piece(anchored->fd, std::string(anchored->rest), how, rel);
}

Result<Anchored> anchor_beneath(int root_fd, std::string_view rel) {
  if (rel.size() < PATH_MAX) return Anchored{unique_fd(), root_fd, rel};
  // The kernel refuses a path of PATH_MAX bytes or more (ENAMETOOLONG), yet a volume may
  // hold deeper trees than that. The anchor is the shallowest directory from which the
  // rest fits; it is itself opened beneath the root the same way (recursively, in pieces),
  // as a directory and without following any symlink, so confinement holds at every step.
  // A '..' crossing into the anchor's parent is refused as an escape: clean paths have none.
  auto cut = rel.find('/', rel.size() - PATH_MAX);
  if (cut == std::string_view::npos || cut == 0) return resolve_error(ENAMETOOLONG, rel);
  auto dir = open_beneath(root_fd, rel.substr(0, cut), O_PATH | O_DIRECTORY);
  if (!dir) return dir.error();
  const int fd = dir->get();
  return Anchored{std::move(*dir), fd, rel.substr(cut + 1)};
}

Result<struct stat> lstat_beneath(int root_fd, std::string_view rel) {
  // With RESOLVE_NO_SYMLINKS, O_PATH|O_NOFOLLOW yields a descriptor of a trailing symlink
  // itself, so fstat on it has lstat semantics while every earlier component is confined.
  auto fd = open_beneath(root_fd, rel, O_PATH | O_NOFOLLOW);
  if (!fd) return fd.error();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return os_error(errno, "stat " + in_quotes(rel));
  return st;
}

Result<unique_fd> mkdirs_beneath(int root_fd, std::string_view rel, mode_t mode) {
  auto cur = open_beneath(root_fd, ".", O_RDONLY | O_DIRECTORY);
  if (!cur) return cur.error();

  std::string_view rest = rel;
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    const std::string name(rest.substr(0, slash));
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (name.empty() || name == ".") continue;
    if (name == "..")
      return make_error(errc::path_rejected, in_quotes(rel) + " must not contain '..'");

    bool created = ::mkdirat(cur->get(), name.c_str(), mode) == 0;
    if (!created && errno != EEXIST) return os_error(errno, "mkdir " + in_quotes(rel));

    auto next = open_beneath(cur->get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!next) {
      if (next.error().code == make_error_code(errc::symlink_rejected))
        return make_error(errc::symlink_rejected,
                          "refusing to follow symlink " + in_quotes(name) + " in " + in_quotes(rel));
      return next.error();
    }
    // mkdir honours the umask; a directory we made gets exactly the requested mode.
    if (created && ::fchmod(next->get(), mode) != 0)
      return os_error(errno, "chmod " + in_quotes(rel));
    *cur = std::move(*next);
  }
  return std::move(*cur);
}

Result<std::string> read_file_capped(int fd, std::size_t max_bytes) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return os_error(errno, "fstat");
  if (!S_ISREG(st.st_mode)) return make_error(errc::not_regular, "not a regular file");

  std::string out;
  out.reserve(std::min<std::size_t>(static_cast<std::size_t>(st.st_size), max_bytes));
  char buf[64 * 1024];
  for (;;) {
    // Ask for one byte beyond the cap so an oversized file is detected, not truncated.
    const std::size_t want = std::min(sizeof buf, max_bytes - out.size() + 1);
    const ssize_t n = ::read(fd, buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(errno, "read");
    }
    if (n == 0) return out;
    if (out.size() + static_cast<std::size_t>(n) > max_bytes)
      return make_error(errc::limit_exceeded,
                        "file exceeds " + std::to_string(max_bytes) + " bytes");
    out.append(buf, static_cast<std::size_t>(n));
  }
}

Result<void> write_all(int fd, std::string_view bytes, bool sync) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(errno, "write");
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  if (sync && ::fsync(fd) != 0) return os_error(errno, "fsync");
  return {};
}

std::string random_name(std::string_view prefix, std::string_view suffix) {
  std::uint8_t raw[8];
  std::size_t got = 0;
  while (got < sizeof raw) {
    const ssize_t n = ::getrandom(raw + got, sizeof raw - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // getrandom cannot fail here on a supported kernel (flags 0, small buffer).
      throw std::system_error(errno, std::system_category(), "getrandom");
    }
    got += static_cast<std::size_t>(n);
  }
  std::string out(prefix);
  char hex[3];
  for (const auto b : raw) {
    std::snprintf(hex, sizeof hex, "%02x", b);
    out += hex;
  }
  out += suffix;
  return out;
}

Result<void> fsync_dir(int dir_fd) {
  if (::fsync(dir_fd) != 0) return os_error(errno, "fsync directory");
  return {};
}

}  // namespace carsync::io
