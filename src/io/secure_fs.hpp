#pragma once
// fd-relative filesystem operations that symlink races cannot escape. Every path below a
// volume or control root is reached from a descriptor of that root with openat2 and
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: a symlink swapped into any
// component makes the call fail with ELOOP instead of following it.
#include "core/error.hpp"
#include "io/unique_fd.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace carsync::io {

// Opens an absolute host directory that must itself be a real directory (O_NOFOLLOW on the
// last component; earlier components are trusted host configuration).
Result<unique_fd> open_root_dir(const std::filesystem::path& dir);

// openat2(root, rel, flags, mode) with the beneath/no-symlink resolution. `rel` is relative
// ("" or "." means the root itself); a path of PATH_MAX bytes or more is walked in pieces. ELOOP/EXDEV are reported as errc::symlink_rejected /
// errc::escapes_root with `rel` in the message.
Result<unique_fd> open_beneath(int root_fd, std::string_view rel, int flags, mode_t mode = 0);

// Where a path too long for one system call (PATH_MAX or more) is resolved from: `fd` is
// the root itself for a short path, else the shallowest directory on the way (opened
// beneath the root, symlinks refused) from which `rest` fits. open_beneath uses it; a
// caller that resolves differently (following symlinks, say) uses it for long paths.
struct Anchored {
  unique_fd owned;        // the anchor when it is not the root
  int fd = -1;            // where `rest` is resolved from
  std::string_view rest;  // a view into the caller's `rel`
};
Result<Anchored> anchor_beneath(int root_fd, std::string_view rel);

// fstatat(root, rel, AT_SYMLINK_NOFOLLOW) after resolving the parent beneath the root.
Result<struct stat> lstat_beneath(int root_fd, std::string_view rel);

// mkdir of every missing component of `rel` below root (mode for new dirs); an existing
// non-directory or symlink component fails. Returns an fd of the final directory.
Result<unique_fd> mkdirs_beneath(int root_fd, std::string_view rel, mode_t mode);

// Reads a whole regular file opened with O_NOFOLLOW|O_NONBLOCK, refusing more than
// max_bytes (errc::limit_exceeded).
Result<std::string> read_file_capped(int fd, std::size_t max_bytes);

// write(2) until done; fsync when asked.
Result<void> write_all(int fd, std::string_view bytes, bool sync = false);

// Unique-name helper: "<prefix><16 random hex><suffix>".
std::string random_name(std::string_view prefix, std::string_view suffix);

// fsync of a directory fd (after renames into it); the fd must not be O_PATH.
Result<void> fsync_dir(int dir_fd);

}  // namespace carsync::io
