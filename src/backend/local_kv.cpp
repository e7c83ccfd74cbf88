#include "backend/local_kv.hpp"

#include "core/hex.hpp"
#include "core/json_text.hpp"

#include "io/secure_fs.hpp"
#include "io/unique_fd.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace carsync::backend {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

constexpr std::string_view kSuffix = ".json";
// Values are small records; a larger file is not one of ours.
constexpr std::size_t kMaxValueBytes = 16 * 1024 * 1024;

// Hex of the UTF-8 bytes makes any key a safe, reversible file name (no '/', no "..").
std::string hex(std::string_view s) {
  return core::to_hex({reinterpret_cast<const unsigned char*>(s.data()), s.size()});
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::optional<std::string> unhex(std::string_view h) {
  if (h.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(h.size() / 2);
  for (std::size_t i = 0; i < h.size(); i += 2) {
    int hi = hex_value(h[i]), lo = hex_value(h[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

// The parsed value of one file; nullopt when the file does not exist.
Result<std::optional<json::value>> read_value(const fs::path& file) {
  // O_NONBLOCK: a FIFO planted in the store must not hang the reader.
  io::unique_fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<json::value>{};
    return os_error(errno, "open " + file.string());
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return os_error(errno, "stat " + file.string());
  if (!S_ISREG(st.st_mode)) return make_error(errc::store_failure, "not a value file: " + file.string());
  std::string text;
  char buffer[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(errno, "read " + file.string());
    }
    if (n == 0) break;
    if (text.size() + static_cast<std::size_t>(n) > kMaxValueBytes)
      return make_error(errc::limit_exceeded, "value file too large: " + file.string());
    text.append(buffer, static_cast<std::size_t>(n));
  }
  // A reference provider sharing the store writes Python's dialect (NaN, Infinity).
  auto v = core::parse_json_python(text);
  if (!v) return make_error(errc::store_failure, "unreadable value " + file.string() + ": " + v.error().message);
  return std::optional<json::value>(std::move(*v));
}

Result<void> check_hkey(std::string_view hkey) {
  // An empty hkey would name the store root itself.
  if (hkey.empty()) return make_error(errc::invalid_request, "empty hkey");
  return {};
}

}  // namespace

LocalKv::LocalKv(fs::path root) : root_(std::move(root)) {}

fs::path LocalKv::hkey_dir(std::string_view hkey) const {
  fs::path dir = root_ / hex(hkey);
  // Watchers need the directory before the first value arrives; a failure here surfaces
  // on the caller's next operation on it.
  std::error_code ec;
  fs::create_directories(dir, ec);
  return dir;
}

std::optional<std::string> LocalKv::key_of_file(std::string_view file_name) {
  if (!file_name.ends_with(kSuffix)) return std::nullopt;
  return unhex(file_name.substr(0, file_name.size() - kSuffix.size()));
}

Result<void> LocalKv::hset(std::string_view hkey, std::string_view key, const json::value& v) {
  if (auto r = check_hkey(hkey); !r) return r;
  const fs::path dir_path = root_ / hex(hkey);
  std::error_code ec;
  fs::create_directories(dir_path, ec);
  if (ec) return os_error(ec.value(), "mkdir " + dir_path.string());
  io::unique_fd dir(::open(dir_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return os_error(errno, "open " + dir_path.string());

  const std::string name = hex(key) + std::string(kSuffix);
  // The leading dot and ".tmp" suffix keep a temp file from ever parsing as a key.
  std::string tmp;
  io::unique_fd fd;
  for (;;) {
    tmp = io::random_name(".", ".tmp");
    fd = io::unique_fd(::openat(dir.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd) break;
    if (errno != EEXIST) return os_error(errno, "create temp value in " + dir_path.string());
  }

  auto written = [&]() -> Result<void> {
    if (auto r = io::write_all(fd.get(), json::serialize(v)); !r) return r;
    if (::fsync(fd.get()) != 0) return os_error(errno, "fsync " + (dir_path / tmp).string());
    if (::renameat(dir.get(), tmp.c_str(), dir.get(), name.c_str()) != 0)
      return os_error(errno, "rename to " + (dir_path / name).string());
    return {};
  }();
  if (!written) {
    ::unlinkat(dir.get(), tmp.c_str(), 0);
    return written;
  }
  return io::fsync_dir(dir.get());
}

Result<std::optional<json::value>> LocalKv::hget(std::string_view hkey, std::string_view key) const {
  if (auto r = check_hkey(hkey); !r) return r.error();
  return read_value(root_ / hex(hkey) / (hex(key) + std::string(kSuffix)));
}

Result<json::object> LocalKv::hgetall(std::string_view hkey) const {
  if (auto r = check_hkey(hkey); !r) return r.error();
  json::object out;
  const fs::path dir = root_ / hex(hkey);
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec == std::errc::no_such_file_or_directory) return out;
  if (ec) return os_error(ec.value(), "list " + dir.string());
  while (it != fs::directory_iterator()) {
    if (auto key = key_of_file(it->path().filename().string())) {
      // A value removed under us, or a stray unreadable file, is not a key.
      auto value = read_value(it->path());
      if (value && *value) out[*key] = std::move(**value);
    }
    it.increment(ec);
    if (ec) return os_error(ec.value(), "list " + dir.string());
  }
  return out;
}

}  // namespace carsync::backend
