#include "io/atomic_json.hpp"

#include "core/json_text.hpp"
#include "io/secure_fs.hpp"
#include "io/unique_fd.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace carsync::io {
namespace {

bool is_single_component(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

Error unsafe_parent(const std::filesystem::path& dir, std::string_view why) {
  return make_error(errc::unsafe_control_file,
                    "refusing unsafe parent directory " + dir.string() + ": " + std::string(why));
}

// mkdir -p with mode 0755 for what is missing. Existing components are left as they are;
// the caller checks the final one without following links.
Result<void> create_parents(const std::filesystem::path& dir) {
  struct stat st {};
  if (dir.empty() || ::lstat(dir.c_str(), &st) == 0) return {};
  if (errno != ENOENT) return os_error(errno, "lstat " + dir.string());
  if (dir.has_relative_path() && dir != dir.parent_path()) {
    if (auto r = create_parents(dir.parent_path()); !r) return r;
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return os_error(errno, "mkdir " + dir.string());
  return {};
}

// Steps 2-4 once the text exists; returns the errno-based error of the step that failed.
Result<void> write_temp_and_rename(int dir_fd, const std::string& tmp, std::string_view name,
                                   std::string_view text) {
  unique_fd fd(::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return os_error(errno, "create " + tmp);
  if (auto r = write_all(fd.get(), text, /*sync=*/true); !r) return r;
  if (::fchmod(fd.get(), 0644) != 0) return os_error(errno, "chmod " + tmp);
  fd.reset();
  if (::renameat(dir_fd, tmp.c_str(), dir_fd, std::string(name).c_str()) != 0)
    return os_error(errno, "rename " + tmp);
  return {};
}

}  // namespace

Result<void> write_json_at(int dir_fd, std::string_view name, const boost::json::value& v) {
  if (!is_single_component(name))
    return make_error(errc::io_failure, "invalid control file name '" + std::string(name) + "'");
  // Serialise first: a value that cannot be written leaves no trace on disk.
  auto serialised = core::to_reference_json_within(v, core::max_json_file_bytes);
  if (!serialised)
    return make_error(errc::limit_exceeded, "refusing to write " + std::string(name) + ": more than " +
                                                std::to_string(core::max_json_file_bytes) +
                                                " bytes, which no reader would accept");
  const std::string& text = *serialised;

  const std::string tmp = random_name("." + std::string(name) + ".", ".tmp");
  if (auto r = write_temp_and_rename(dir_fd, tmp, name, text); !r) {
    ::unlinkat(dir_fd, tmp.c_str(), 0);  // best effort: it may not have been created
    return r;
  }
  // The rename is only durable once the directory entry is (§12 item 21).
  return fsync_dir(dir_fd);
}

Result<void> write_json_file(const std::filesystem::path& file, const boost::json::value& v) {
  const auto dir = file.parent_path();
  if (auto r = create_parents(dir); !r) return r;

  auto dir_fd = open_root_dir(dir.empty() ? "." : dir);
  if (!dir_fd) {
    const auto& e = dir_fd.error();
    if (e.code == make_error_code(errc::symlink_rejected)) return unsafe_parent(dir, "symlink");
    if (e.code == boost::system::errc::not_a_directory) return unsafe_parent(dir, "not a directory");
    return e;
  }
  return write_json_at(dir_fd->get(), file.filename().native(), v);
}

Result<boost::json::value> read_json_at(int dir_fd, std::string_view name, std::size_t max_bytes) {
  auto fd = open_beneath(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (!fd) return fd.error();
  auto text = read_file_capped(fd->get(), max_bytes);
  if (!text) return text.error();
  return core::parse_json(*text);
}

}  // namespace carsync::io
