#include "io/system_volume.hpp"

#include "core/sync_config.hpp"
#include "io/unique_fd.hpp"

#include <fcntl.h>
#include <linux/loop.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <vector>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;

// "No such file or directory (ENOENT)": the text for people, the name for searching.
std::string errno_text(int err) {
  std::string text = std::strerror(err);
  if (const char* name = ::strerrorname_np(err)) text += std::string(" (") + name + ")";
  return text;
}

Error unavailable(std::string text) { return make_error(errc::system_volume_unavailable, std::move(text)); }
Error unavailable(const std::string& step, int err) { return unavailable(step + ": " + errno_text(err)); }

// The whole of a small file the kernel generates (/proc/self/mountinfo).
Result<std::string> read_all(const char* path) {
  unique_fd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return unavailable(std::string("read ") + path, errno);
  std::string text;
  std::array<char, 16 * 1024> buf{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return unavailable(std::string("read ") + path, errno);
    if (n == 0) return text;
    text.append(buf.data(), static_cast<std::size_t>(n));
  }
}

// mountinfo writes space, tab, newline and backslash in paths as \ooo.
std::string unescape_octal(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto octal = [&](std::size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '7'; };
    if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct Mount {
  dev_t dev;  // the mounted block device (7:N for a loop)
  std::string fstype;
  std::string source;
};

// The mount on top at `dir` (a canonical path), if `dir` is a mount point: the last one
// mountinfo lists for it, since later mounts stack over earlier ones.
Result<std::optional<Mount>> top_mount_at(const fs::path& dir) {
  auto text = read_all("/proc/self/mountinfo");
  if (!text) return text.error();
  std::optional<Mount> top;
  std::string_view rest = *text;
  while (!rest.empty()) {
    const std::size_t eol = rest.find('\n');
    const std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);

    // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
    std::vector<std::string_view> f;
    for (std::size_t start = 0; start <= line.size();) {
      const std::size_t end = std::min(line.find(' ', start), line.size());
      f.push_back(line.substr(start, end - start));
      start = end + 1;
    }
    const auto dash = std::find(f.begin() + std::min<std::ptrdiff_t>(6, std::ssize(f)), f.end(), "-");
    if (f.size() < 6 || f.end() - dash < 3 || unescape_octal(f[4]) != dir.native()) continue;
    unsigned major_no = 0, minor_no = 0;
    const std::string_view mm = f[2];
    const std::size_t colon = mm.find(':');
    if (colon == std::string_view::npos ||
        std::from_chars(mm.data(), mm.data() + colon, major_no).ec != std::errc() ||
        std::from_chars(mm.data() + colon + 1, mm.data() + mm.size(), minor_no).ec != std::errc())
      continue;
    top = Mount{makedev(major_no, minor_no), std::string(dash[1]), unescape_octal(dash[2])};
  }
  return top;
}

struct Loop {
  std::string device;  // "/dev/loopN"
  dev_t rdev;
};

// Every loop device attached to the file `image` at offset 0. sysfs shows a loop/ directory
// only for bound devices; each of those is asked with LOOP_GET_STATUS64, which compares the
// backing file's device and inode: a path string could name the image another way.
Result<std::vector<Loop>> loops_backed_by(const struct stat& image) {
  std::vector<Loop> found;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/sys/block", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename();
    if (name.size() <= 4 || !name.starts_with("loop") ||
        !std::all_of(name.begin() + 4, name.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    if (::access(("/sys/block/" + name + "/loop").c_str(), F_OK) != 0) continue;  // not bound
    const std::string device = "/dev/" + name;
    // Failures here mean the device was detached meanwhile (or is being): not ours to use.
    unique_fd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
    loop_info64 info{};
    struct stat st {};
    if (!fd || ::ioctl(fd.get(), LOOP_GET_STATUS64, &info) != 0 || ::fstat(fd.get(), &st) != 0) continue;
    if (info.lo_device == image.st_dev && info.lo_inode == image.st_ino && info.lo_offset == 0)
      found.push_back(Loop{device, st.st_rdev});
  }
  if (ec) return unavailable("list loop devices in /sys/block: " + ec.message());
  std::sort(found.begin(), found.end(), [](const Loop& a, const Loop& b) { return a.rdev < b.rdev; });
  return found;
}

struct Attached {
  Loop loop;
  unique_fd fd;  // the loop device, open: kept until the caller no longer needs to undo
};

// Attaches `image_fd` to a free loop device, without autoclear: the attachment outlives this
// call and this process, and loops_backed_by finds it again.
Result<Attached> attach_loop(int image_fd, const fs::path& image) {
  unique_fd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return unavailable("open /dev/loop-control", errno);
  loop_config config{};
  config.fd = static_cast<__u32>(image_fd);
  image.native().copy(reinterpret_cast<char*>(config.info.lo_file_name), LO_NAME_SIZE - 1);  // what losetup shows

  // Another process may claim the device between LOOP_CTL_GET_FREE and our ioctl (EBUSY):
  // ask for a free one again, a bounded number of times.
  for (int attempt = 0; attempt < 16; ++attempt) {
    const int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return unavailable("find a free loop device (LOOP_CTL_GET_FREE)", errno);
    const std::string device = "/dev/loop" + std::to_string(n);
    unique_fd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) return unavailable("open " + device, errno);

    int rc = ::ioctl(fd.get(), LOOP_CONFIGURE, &config);
    if (rc != 0 && (errno == EINVAL || errno == ENOTTY)) {
      // Before Linux 5.8 there is no LOOP_CONFIGURE: bind, then describe.
      rc = ::ioctl(fd.get(), LOOP_SET_FD, image_fd);
      if (rc == 0 && ::ioctl(fd.get(), LOOP_SET_STATUS64, &config.info) != 0) {
        const int err = errno;
        ::ioctl(fd.get(), LOOP_CLR_FD, 0);
        return unavailable("describe " + device + " (LOOP_SET_STATUS64)", err);
      }
    }
    if (rc != 0 && errno == EBUSY) continue;
    if (rc != 0) return unavailable("attach " + image.string() + " to " + device, errno);

    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      const int err = errno;
      ::ioctl(fd.get(), LOOP_CLR_FD, 0);
      return unavailable("stat " + device, err);
    }
    return Attached{Loop{device, st.st_rdev}, std::move(fd)};
  }
  return unavailable("attach " + image.string() + " to a loop device: every free one was taken first", EBUSY);
}

// Fixed system directories, not $PATH: what formats root's image is not up to the environment.
std::optional<fs::path> find_mkfs_ext4() {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
    fs::path tool = fs::path(dir) / "mkfs.ext4";
    if (::access(tool.c_str(), X_OK) == 0) return tool;
  }
  return std::nullopt;
}

// Releases posix_spawn's setup objects whatever path leaves format_ext4.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  bool actions_ready = false;
  bool attr_ready = false;
  ~SpawnSetup() {
    if (actions_ready) ::posix_spawn_file_actions_destroy(&actions);
    if (attr_ready) ::posix_spawnattr_destroy(&attr);
  }
};

// `mkfs.ext4 -F -q -m 0 -E root_owner=0:0 <target>` (the reference's 0% reserved blocks; root
// owned by 0:0 whoever runs it), with a fixed argv and environment and no shell. Its output,
// capped, becomes the error text.
Result<void> format_ext4(const fs::path& mkfs, const fs::path& target) {
  const std::string step = "format " + target.string() + " with " + mkfs.string();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return unavailable(step + ": pipe", errno);
  unique_fd out_read(fds[0]);
  unique_fd out_write(fds[1]);

  SpawnSetup s;
  if (int rc = ::posix_spawn_file_actions_init(&s.actions); rc != 0) return unavailable(step, rc);
  s.actions_ready = true;
  if (int rc = ::posix_spawnattr_init(&s.attr); rc != 0) return unavailable(step, rc);
  s.attr_ready = true;
  // stdin from /dev/null, stdout and stderr into our pipe, nothing else: a descriptor of the
  // daemon that lacks O_CLOEXEC still does not reach mkfs.
  // Default signal dispositions and an empty mask, whatever the calling thread had.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  for (int rc : {::posix_spawn_file_actions_addopen(&s.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0),
                 ::posix_spawn_file_actions_adddup2(&s.actions, out_write.get(), STDOUT_FILENO),
                 ::posix_spawn_file_actions_adddup2(&s.actions, out_write.get(), STDERR_FILENO),
                 ::posix_spawn_file_actions_addclosefrom_np(&s.actions, STDERR_FILENO + 1),
                 ::posix_spawnattr_setsigmask(&s.attr, &none), ::posix_spawnattr_setsigdefault(&s.attr, &all),
                 ::posix_spawnattr_setflags(&s.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)}) {
    if (rc != 0) return unavailable(step, rc);
  }

  std::vector<std::string> args = {"mkfs.ext4", "-F", "-q", "-m", "0", "-E", "root_owner=0:0", target.string()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // No MKE2FS_CONFIG or locale from the daemon's environment: the same filesystem everywhere.
  std::string env_path = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  std::string env_locale = "LC_ALL=C";
  std::array<char*, 3> envp = {env_path.data(), env_locale.data(), nullptr};

  pid_t pid = 0;
  if (int rc = ::posix_spawn(&pid, mkfs.c_str(), &s.actions, &s.attr, argv.data(), envp.data()); rc != 0)
    return unavailable(step, rc);
  out_write.reset();  // ours: EOF comes when mkfs exits

  constexpr std::size_t max_output = 2048;
  std::string output;
  std::array<char, 4096> buf{};
  for (;;) {
    const ssize_t n = ::read(out_read.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    // Past the cap, keep reading and dropping: mkfs must never block on a full pipe.
    const std::size_t room = max_output - std::min(output.size(), max_output);
    output.append(buf.data(), std::min(room, static_cast<std::size_t>(n)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return unavailable(step + ": waitpid", errno);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  const std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                            : "killed by signal " + std::to_string(WTERMSIG(status));
  return unavailable(step + ": " + how + (output.empty() ? std::string() : ": " + output));
}

// Creates <dir>/<name>: allocated, formatted, then renamed into place, so a crash never leaves
// an unformatted image under the final name (every later mount of it would fail). A leftover
// temporary from such a crash is simply overwritten.
Result<unique_fd> create_image(int dir_fd, const fs::path& dir, const std::string& name, std::uint64_t size) {
  const fs::path image = dir / name;
  const auto mkfs = find_mkfs_ext4();
  if (!mkfs) {
    return unavailable("format " + image.string() +
                       ": mkfs.ext4 not found in /usr/sbin, /sbin, /usr/bin or /bin (install e2fsprogs)");
  }
  const std::string partial = "." + name + ".partial";
  unique_fd fd(::openat(dir_fd, partial.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return unavailable("create image " + (dir / partial).string(), errno);
  // From here on a failure must not leave the temporary behind.
  struct RemovePartial {
    int dir_fd;
    const std::string& name;
    bool keep = false;
    ~RemovePartial() {
      if (!keep) ::unlinkat(dir_fd, name.c_str(), 0);
    }
  } remove_partial{dir_fd, partial};

  if (int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size)); rc != 0)
    return unavailable("allocate " + std::to_string(size) + " bytes for image " + (dir / partial).string(), rc);
  if (auto formatted = format_ext4(*mkfs, dir / partial); !formatted) return formatted.error();
  if (::fsync(fd.get()) != 0) return unavailable("sync image " + (dir / partial).string(), errno);
  if (::renameat2(dir_fd, partial.c_str(), dir_fd, name.c_str(), RENAME_NOREPLACE) != 0)
    return unavailable("install image " + image.string(), errno);
  remove_partial.keep = true;
  if (::fsync(dir_fd) != 0) return unavailable("sync image directory " + dir.string(), errno);
  return fd;
}

// The instance's image, opened read-write; created first when missing (`created` says so).
// Only the image directory itself is created: a missing parent is a configuration mistake.
Result<unique_fd> open_or_create_image(const fs::path& dir, const fs::path& image, std::uint64_t size,
                                       bool& created) {
  created = false;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return unavailable("create image directory " + dir.string(), errno);
  unique_fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return unavailable("open image directory " + dir.string(), errno);

  const std::string name = image.filename();
  unique_fd fd(::openat(dir_fd.get(), name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!fd && errno != ENOENT) return unavailable("open image " + image.string(), errno);
  if (!fd) {
    auto made = create_image(dir_fd.get(), dir, name, size);
    if (!made) return made.error();
    fd = std::move(*made);
    created = true;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return unavailable("stat image " + image.string(), errno);
  if (!S_ISREG(st.st_mode)) return unavailable("image " + image.string() + " is not a regular file");
  return fd;
}

Result<void> remove_lost_found(const fs::path& mount_point) {
  unique_fd root(::open(mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return unavailable("open " + mount_point.string(), errno);
  if (::unlinkat(root.get(), "lost+found", AT_REMOVEDIR) != 0 && errno != ENOENT)
    return unavailable("remove lost+found from " + mount_point.string(), errno);
  return {};
}

// What a provisioning call did, undone in reverse order unless it completes.
struct Undo {
  fs::path unmount;       // mounted by this call
  unique_fd detach;       // a loop device this call attached
  fs::path remove_image;  // created by this call
  bool done = false;
  ~Undo() {
    if (done) return;
    if (!unmount.empty()) ::umount2(unmount.c_str(), UMOUNT_NOFOLLOW);
    if (detach) ::ioctl(detach.get(), LOOP_CLR_FD, 0);
    if (!remove_image.empty()) ::unlink(remove_image.c_str());
  }
};

std::optional<Error> check_inputs(const SystemVolumeImage& cfg, std::string_view instance_id,
                                  const fs::path& mount_point) {
  if (!core::valid_instance_id(instance_id))
    return unavailable("instance id \"" + std::string(instance_id) + "\" cannot name an image file");
  if (!cfg.image_dir.is_absolute())
    return unavailable("image directory \"" + cfg.image_dir.string() + "\" is not an absolute path");
  if (!mount_point.is_absolute())
    return unavailable("mount point \"" + mount_point.string() + "\" is not an absolute path");
  return std::nullopt;
}

}  // namespace

fs::path image_path(const SystemVolumeImage& cfg, std::string_view instance_id) {
  return cfg.image_dir / (std::string(instance_id) + ".img");
}

Result<ImageVolume> provision_image_volume(const SystemVolumeImage& cfg, std::string_view instance_id,
                                           const fs::path& mount_point) {
  if (auto bad = check_inputs(cfg, instance_id, mount_point)) return *bad;
  ImageVolume vol;
  vol.image = image_path(cfg, instance_id);
  Undo undo;

  std::error_code ec;
  fs::create_directories(mount_point, ec);
  if (ec) return unavailable("create mount point " + mount_point.string() + ": " + ec.message());
  // mountinfo shows canonical paths.
  vol.mount_point = fs::canonical(mount_point, ec);
  if (ec) return unavailable("resolve mount point " + mount_point.string() + ": " + ec.message());
  auto top = top_mount_at(vol.mount_point);
  if (!top) return top.error();

  auto image = open_or_create_image(cfg.image_dir, vol.image, cfg.size_bytes, vol.image_created);
  if (!image) return image.error();
  if (vol.image_created) undo.remove_image = vol.image;
  struct stat st {};
  if (::fstat(image->get(), &st) != 0) return unavailable("stat image " + vol.image.string(), errno);
  auto loops = loops_backed_by(st);
  if (!loops) return loops.error();

  if (*top) {
    // Provisioned before (an earlier call, or before carsync restarted): keep it as it is.
    for (const Loop& loop : *loops) {
      if (loop.rdev != (*top)->dev) continue;
      vol.loop_device = loop.device;
      undo.done = true;
      return vol;
    }
    return unavailable("mount point " + vol.mount_point.string() + " is already a mount of " + (*top)->source + " (" +
                       (*top)->fstype + "), not of " + vol.image.string());
  }

  if (!loops->empty()) {
    vol.loop_device = loops->front().device;
  } else {
    auto attached = attach_loop(image->get(), vol.image);
    if (!attached) return attached.error();
    vol.loop_device = attached->loop.device;
    undo.detach = std::move(attached->fd);
  }

  // The volume holds control files: nothing in it needs to be a device, setuid or executable.
  if (::mount(vol.loop_device.c_str(), vol.mount_point.c_str(), "ext4", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) !=
      0) {
    return unavailable("mount " + vol.loop_device + " (" + vol.image.string() + ") at " + vol.mount_point.string(),
                       errno);
  }
  undo.unmount = vol.mount_point;
  vol.mounted_now = true;

  // Only from a brand-new filesystem (the reference's rule; the image is new, so is the mount):
  // in an image that already existed, lost+found may hold what fsck recovered.
  if (vol.image_created) {
    if (auto removed = remove_lost_found(vol.mount_point); !removed) return removed.error();
  }
  undo.done = true;
  return vol;
}

Result<void> release_image_volume(const SystemVolumeImage& cfg, std::string_view instance_id,
                                  const fs::path& mount_point) {
  if (auto bad = check_inputs(cfg, instance_id, mount_point)) return *bad;
  const fs::path image = image_path(cfg, instance_id);
  unique_fd fd(::open(image.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd && errno == ENOENT) return {};  // never provisioned: nothing can be attached to it
  if (!fd) return unavailable("open image " + image.string(), errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return unavailable("stat image " + image.string(), errno);
  auto loops = loops_backed_by(st);
  if (!loops) return loops.error();

  std::error_code ec;
  const fs::path mounted_at = fs::canonical(mount_point, ec);
  if (ec && ec != std::errc::no_such_file_or_directory)
    return unavailable("resolve mount point " + mount_point.string() + ": " + ec.message());
  if (!ec) {
    auto top = top_mount_at(mounted_at);
    if (!top) return top.error();
    const bool ours = *top && std::any_of(loops->begin(), loops->end(),
                                          [&](const Loop& loop) { return loop.rdev == (*top)->dev; });
    if (ours && ::umount2(mounted_at.c_str(), UMOUNT_NOFOLLOW) != 0)
      return unavailable("unmount " + mounted_at.string(), errno);
  }

  for (const Loop& loop : *loops) {
    unique_fd loop_fd(::open(loop.device.c_str(), O_RDONLY | O_CLOEXEC));
    if (!loop_fd && errno == ENXIO) continue;  // being detached already
    if (!loop_fd) return unavailable("open " + loop.device, errno);
    if (::ioctl(loop_fd.get(), LOOP_CLR_FD, 0) != 0 && errno != ENXIO)
      return unavailable("detach " + loop.device + " from " + image.string(), errno);
  }
  return {};
}

}  // namespace carsync::io
