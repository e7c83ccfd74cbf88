#include "io/control_files.hpp"

#include "io/atomic_json.hpp"
#include "io/secure_fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>

namespace carsync::io {
namespace {

constexpr int quarantine_attempts = 5;

std::int64_t wall_clock_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Error unsafe(std::string message) { return make_error(errc::unsafe_control_file, std::move(message)); }

// fstatat without following; nullopt when the entry does not exist.
Result<std::optional<struct stat>> lstat_at(int dir_fd, std::string_view name) {
  struct stat st {};
  if (::fstatat(dir_fd, std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return st;
  if (errno == ENOENT) return std::optional<struct stat>{};
  return os_error(errno, "lstat " + std::string(name));
}

// A non-empty directory where a control file belongs is moved aside, never deleted
// recursively: `<name>.unsafe.<ns>`, retried on the (unlikely) name collision.
Result<void> quarantine_dir(int dir_fd, std::string_view name) {
  const std::string from(name);
  for (int i = 0; i < quarantine_attempts; ++i) {
    const std::string to = from + ".unsafe." + std::to_string(wall_clock_ns());
    if (::renameat2(dir_fd, from.c_str(), dir_fd, to.c_str(), RENAME_NOREPLACE) == 0) {
      spdlog::warn("volume-sync: quarantined directory {} as {}", from, to);
      return {};
    }
    if (errno != EEXIST) return os_error(errno, "quarantine " + from);
  }
  return make_error(errc::io_failure, "quarantine " + from + ": no free .unsafe name");
}

// Removes whatever non-regular entry sits at `name`: an empty directory is removed, a
// non-empty one quarantined, anything else (symlink, FIFO, socket, device) unlinked.
Result<void> remove_entry(int dir_fd, std::string_view name, const struct stat& st) {
  const std::string path(name);
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(dir_fd, path.c_str(), 0) != 0 && errno != ENOENT) return os_error(errno, "unlink " + path);
    return {};
  }
  if (::unlinkat(dir_fd, path.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT) return {};
  if (errno != ENOTEMPTY && errno != EEXIST) return os_error(errno, "rmdir " + path);
  return quarantine_dir(dir_fd, name);
}

ClaimUnsafe claim_error(Error e) { return ClaimUnsafe{std::move(e)}; }

}  // namespace

ControlFiles::ControlFiles(std::filesystem::path system_volume)
    : system_volume_(std::move(system_volume)) {}

Result<unique_fd> ControlFiles::open_control_dir() const {
  auto root = open_root_dir(system_volume_);
  if (!root) return root.error();
  auto st = lstat_beneath(root->get(), control_subdir);
  if (!st) return st.error();
  // The path in the text: the operator has to find which of hundreds of system volumes it is.
  if (S_ISLNK(st->st_mode)) return unsafe("refusing symlink control directory " + control_dir().string());
  if (!S_ISDIR(st->st_mode)) return unsafe("refusing non-directory control directory " + control_dir().string());
  // The no-symlink resolution closes the window between the lstat and the open.
  auto dir = open_beneath(root->get(), control_subdir, O_RDONLY | O_DIRECTORY);
  if (!dir && dir.error().code == make_error_code(errc::symlink_rejected))
    return unsafe("refusing symlink control directory " + control_dir().string());
  return dir;
}

Result<void> ControlFiles::provision() {
  const std::string root_path = system_volume_.string();
  auto root = open_root_dir(system_volume_);
  if (!root) return root.error();
  if (::fchown(root->get(), 0, 0) != 0) return os_error(errno, "chown " + root_path);
  if (::fchmod(root->get(), 0755) != 0) return os_error(errno, "chmod " + root_path);

  const std::string ctl_path = control_dir().string();
  auto existing = lstat_at(root->get(), control_subdir);
  if (!existing) return existing.error();
  if (*existing && !S_ISDIR((*existing)->st_mode)) {
    // A symlink is unlinked, never followed: its target stays untouched. Said, naming it:
    // something on the host or in the app replaced the directory.
    spdlog::warn("volume-sync: {} was a {}, not a directory: replacing it with one", ctl_path,
                 S_ISLNK((*existing)->st_mode) ? "symlink" : "non-directory");
    if (::unlinkat(root->get(), std::string(control_subdir).c_str(), 0) != 0)
      return os_error(errno, "unlink " + ctl_path);
  }
  if (::mkdirat(root->get(), std::string(control_subdir).c_str(), 01777) != 0 && errno != EEXIST)
    return os_error(errno, "mkdir " + ctl_path);

  auto ctl = open_control_dir();
  if (!ctl) return ctl.error();
  if (::fchown(ctl->get(), 0, 0) != 0) return os_error(errno, "chown " + ctl_path);
  if (::fchmod(ctl->get(), 01777) != 0) return os_error(errno, "chmod " + ctl_path);
  return {};
}

ClaimOutcome ControlFiles::claim(std::size_t max_bytes) {
  // Step 1.
  auto ctl = open_control_dir();
  if (!ctl) {
    if (ctl.error().code == make_error_code(errc::not_found)) return NothingPending{};
    return claim_error(ctl.error());
  }
  const int dir = ctl->get();
  const std::string request(request_name), processing(processing_name);

  // Step 2.
  auto pending = lstat_at(dir, request);
  if (!pending) return claim_error(pending.error());
  if (!*pending) return NothingPending{};

  // Step 3: nothing but a regular file is ever renamed or read.
  if (!S_ISREG((*pending)->st_mode)) {
    if (auto removed = remove_entry(dir, request, **pending); !removed)
      spdlog::error("volume-sync: could not remove unsafe {}: {}", request, removed.error().message);
    if (S_ISLNK((*pending)->st_mode)) return claim_error(unsafe("refusing symlink control file: request.json"));
    return claim_error(unsafe("refusing non-regular control file: request.json"));
  }

  // Step 4.
  if (::renameat(dir, request.c_str(), dir, processing.c_str()) != 0)
    return ClaimFailedToRename{"could not claim " + (control_dir() / request).string() + ": " + std::strerror(errno)};

  // Step 5: whatever was swapped in after the lstat must neither be followed nor block.
  unique_fd fd(::openat(dir, processing.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP) return claim_error(unsafe("refusing to read symlink control file"));
    return claim_error(make_error(errc::io_failure, std::string("could not read .processing: ") + std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return claim_error(make_error(errc::io_failure, std::string("could not read .processing: ") + std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) return claim_error(unsafe("refusing to read non-regular control file"));

  auto body = read_file_capped(fd.get(), max_bytes);
  if (!body) {
    if (body.error().code == make_error_code(errc::limit_exceeded))
      return claim_error(make_error(errc::limit_exceeded,
                                    "request.json exceeds " + std::to_string(max_bytes) + " bytes"));
    return claim_error(make_error(errc::io_failure, "could not read .processing: " + body.error().code.message()));
  }
  // The rename kept the file's mtime: when the app wrote its request (reaction latency).
  return ClaimedBody{std::move(*body), static_cast<double>(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec / 1e9};
}

Result<void> ControlFiles::write(std::string_view name, const boost::json::value& v) {
  auto ctl = open_control_dir();
  if (!ctl) return ctl.error();
  return write_json_at(ctl->get(), name, v);
}

Result<void> ControlFiles::remove_invalid() {
  auto ctl = open_control_dir();
  if (!ctl) return ctl.error();
  const std::string name(invalid_name);
  if (::unlinkat(ctl->get(), name.c_str(), 0) != 0 && errno != ENOENT) return os_error(errno, "unlink " + name);
  return {};
}

Result<void> ControlFiles::discard_processing() {
  auto ctl = open_control_dir();
  if (!ctl) return ctl.error();
  auto st = lstat_at(ctl->get(), processing_name);
  if (!st) return st.error();
  if (!*st) return {};
  return remove_entry(ctl->get(), processing_name, **st);
}

namespace {

// True for the temp name write_json_at gives `name`: ".<name>.<16 hex digits>.tmp".
bool is_own_temp(std::string_view entry, std::string_view name) {
  const std::size_t hex_digits = 16;
  if (entry.size() != 1 + name.size() + 1 + hex_digits + 4) return false;
  if (entry[0] != '.' || entry.substr(1, name.size()) != name || entry[1 + name.size()] != '.') return false;
  if (!entry.ends_with(".tmp")) return false;
  for (char c : entry.substr(2 + name.size(), hex_digits))
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// A crash between creating a control file's temp and renaming it leaves the temp behind;
// only carsync's own temps (regular files with exactly that name shape) are removed, never
// anything else the app keeps there.
void remove_own_temps(int dir) {
  const int fd = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return;
  }
  while (const dirent* e = ::readdir(d)) {
    const std::string_view entry(e->d_name);
    bool ours = false;
    for (const auto name : {response_name, invalid_name, last_apply_name}) ours = ours || is_own_temp(entry, name);
    if (!ours) continue;
    struct stat st {};
    if (::fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
    if (::unlinkat(dir, e->d_name, 0) == 0) spdlog::info("removed {} left by an interrupted write", entry);
  }
  ::closedir(d);
}

}  // namespace

Result<RecoveryResult> ControlFiles::recover_stale_processing() {
  auto ctl = open_control_dir();
  if (!ctl) {
    if (ctl.error().code == make_error_code(errc::not_found)) return RecoveryResult::nothing;
    return ctl.error();
  }
  const int dir = ctl->get();
  remove_own_temps(dir);
  auto st = lstat_at(dir, processing_name);
  if (!st) return st.error();
  if (!*st) return RecoveryResult::nothing;

  if (S_ISREG((*st)->st_mode)) {
    // RENAME_NOREPLACE rather than an exists-check: a request the app writes at the same
    // moment wins, and the stale claim stays for the next claim's rename to replace.
    const std::string from(processing_name), to(request_name);
    if (::renameat2(dir, from.c_str(), dir, to.c_str(), RENAME_NOREPLACE) == 0) return RecoveryResult::recovered;
    if (errno == EEXIST) return RecoveryResult::not_recovered;
    return os_error(errno, "rename " + from);
  }
  if (auto removed = remove_entry(dir, processing_name, **st); !removed) return removed.error();
  return RecoveryResult::not_recovered;
}

bool ControlFiles::request_pending() const {
  auto ctl = open_control_dir();
  if (!ctl) return false;
  auto st = lstat_at(ctl->get(), request_name);
  return st && st->has_value();
}

}  // namespace carsync::io
