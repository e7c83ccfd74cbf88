#include "io/key_file.hpp"

#include "io/secure_fs.hpp"
#include "io/unique_fd.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace carsync::io {
namespace {

constexpr std::size_t max_key_file_bytes = 4096;

Error io_error(const std::filesystem::path& path, std::string what) {
  return make_error(errc::io_failure, path.string() + ": " + what);
}

Error config_error(const std::filesystem::path& path, std::string what) {
  return make_error(errc::bad_config, "key file " + path.string() + ": " + what);
}

// The seed travels through this string: wiped however the write ends.
struct WipedText {
  std::string text;
  ~WipedText() { sodium_memzero(text.data(), text.size()); }
};

}  // namespace

Result<void> write_new_secret_key(const std::filesystem::path& path, const core::SecretKey& key) {
  unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) {
    const int err = errno;
    if (err == EEXIST) return io_error(path, "exists: a key file is never overwritten");
    return io_error(path, std::string("cannot create: ") + std::strerror(err));
  }
  // The umask could only take bits away, but say what the file is regardless of it.
  Result<void> written = ::fchmod(fd.get(), 0600) == 0 ? Result<void>{} : io_error(path, std::strerror(errno));
  if (written) {
    const WipedText text{key.file_text()};
    written = write_all(fd.get(), text.text, /*sync=*/true);
  }
  if (!written) {
    ::unlink(path.c_str());  // a half-written key would be refused when read: leave none
    return make_error(errc::io_failure, path.string() + ": " + written.error().message);
  }
  const auto parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  unique_fd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return io_error(parent, std::string("open directory: ") + std::strerror(errno));
  if (auto synced = fsync_dir(dir.get()); !synced) return io_error(parent, synced.error().message);
  return {};
}

Result<core::SecretKey> read_secret_key(const std::filesystem::path& path) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == ELOOP) return config_error(path, "is a symlink: refused (give the key file itself)");
    return config_error(path, std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return config_error(path, std::string("fstat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return config_error(path, "not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return config_error(path, std::string("mode ") + mode +
                                  ": must not be accessible by group or others; chmod 600 " + path.string());
  }
  if (st.st_size > static_cast<off_t>(max_key_file_bytes))
    return config_error(path, "larger than " + std::to_string(max_key_file_bytes) + " bytes: not a key file");
  auto text = read_file_capped(fd.get(), max_key_file_bytes);
  if (!text) return config_error(path, text.error().message);
  const WipedText wiped{std::move(*text)};
  auto key = core::SecretKey::parse_file_text(wiped.text);
  if (!key) return config_error(path, key.error().message);
  return key;
}

}  // namespace carsync::io
