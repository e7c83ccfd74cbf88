#include "backend/local_cas.hpp"

#include "io/secure_fs.hpp"
#include "io/unique_fd.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <string>
#include <utility>
#include <vector>

namespace carsync::backend {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kBlockSize = 256 * 1024;

Result<io::unique_fd> open_dir(const fs::path& dir) {
  io::unique_fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return os_error(errno, "open " + dir.string());
  return fd;
}

Result<void> ensure_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return os_error(ec.value(), "mkdir " + dir.string());
  return {};
}

// Reads fd to its end in bounded blocks, hashing every byte and handing it to `sink`
// (which may be empty). Returns the digest of everything read.
template <class Sink>
Result<Sha256Digest> stream_hashed(int fd, const fs::path& what, Sink&& sink) {
  std::vector<std::byte> buffer(kBlockSize);
  Sha256 hash;
  for (;;) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(errno, "read " + what.string());
    }
    if (n == 0) break;
    std::span<const std::byte> chunk(buffer.data(), static_cast<std::size_t>(n));
    hash.update(chunk);
    if (auto r = sink(chunk); !r) return r.error();
  }
  return hash.finish();
}

Result<void> no_sink(std::span<const std::byte>) { return {}; }

// A temp file that is unlinked unless committed: failures never leave partial files.
class TempFile {
 public:
  static Result<TempFile> create(const fs::path& dir, std::string_view prefix) {
    for (;;) {
      fs::path path = dir / io::random_name(prefix, ".tmp");
      io::unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (fd) return TempFile(std::move(path), std::move(fd));
      if (errno != EEXIST) return os_error(errno, "create " + path.string());
    }
  }
  TempFile(TempFile&& o) noexcept : path_(std::exchange(o.path_, {})), fd_(std::move(o.fd_)) {}
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  int fd() const noexcept { return fd_.get(); }

  Result<void> write(std::span<const std::byte> bytes) {
    return io::write_all(fd_.get(), {reinterpret_cast<const char*>(bytes.data()), bytes.size()});
  }

  // fsync, close and rename over `target`; the directory entry is made durable by the caller.
  Result<void> commit(const fs::path& target) {
    if (::fsync(fd_.get()) != 0) return os_error(errno, "fsync " + path_.string());
    fd_.reset();
    if (::rename(path_.c_str(), target.c_str()) != 0) return os_error(errno, "rename to " + target.string());
    path_.clear();
    return {};
  }

 private:
  TempFile(fs::path path, io::unique_fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  fs::path path_;
  io::unique_fd fd_;
};

Result<void> fsync_dir_of(const fs::path& file) {
  auto dir = open_dir(file.parent_path());
  if (!dir) return dir.error();
  return io::fsync_dir(dir->get());
}

}  // namespace

LocalCas::LocalCas(fs::path root) : root_(std::move(root)) {}

fs::path LocalCas::blob_path(std::string_view cid) const { return root_ / "blobs" / std::string(cid); }

Result<std::string> LocalCas::put(const fs::path& file) {
  io::unique_fd src(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!src) return os_error(errno, "open " + file.string());
  const fs::path tmp_dir = root_ / "tmp";
  if (auto r = ensure_dir(tmp_dir); !r) return r.error();
  if (auto r = ensure_dir(root_ / "blobs"); !r) return r.error();

  // The pid in the name lets a later sweep tell a dead writer's temp from a live one's: the
  // store may be shared by several processes.
  auto tmp = TempFile::create(tmp_dir, "put." + std::to_string(::getpid()) + ".");
  if (!tmp) return tmp.error();
  auto digest = stream_hashed(src.get(), file, [&](std::span<const std::byte> b) { return tmp->write(b); });
  if (!digest) return digest.error();

  std::string cid = cid_from_digest(*digest);
  const fs::path target = blob_path(cid);
  // Same CID, same bytes: an existing blob is already the content (the temp file goes away).
  if (::access(target.c_str(), F_OK) == 0) return cid;
  if (auto r = tmp->commit(target); !r) return r.error();
  if (auto r = fsync_dir_of(target); !r) return r.error();
  return cid;
}

Result<std::string> LocalCas::adopt(const fs::path& file, const Sha256Digest& sha256) {
  std::string cid = cid_from_digest(sha256);
  const fs::path target = blob_path(cid);
  if (auto r = ensure_dir(root_ / "blobs"); !r) return r.error();
  // Same CID, same bytes: the blob already is the content.
  if (::access(target.c_str(), F_OK) == 0) {
    if (::unlink(file.c_str()) != 0 && errno != ENOENT) return os_error(errno, "unlink " + file.string());
    return cid;
  }
  {
    io::unique_fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return os_error(errno, "open " + file.string());
    // Blobs are the store's: private like put's, and durable before their name appears.
    if (::fchmod(fd.get(), 0600) != 0) return os_error(errno, "chmod " + file.string());
    if (::fsync(fd.get()) != 0) return os_error(errno, "fsync " + file.string());
  }
  if (::rename(file.c_str(), target.c_str()) != 0) {
    if (errno != EXDEV) return os_error(errno, "rename " + file.string() + " to " + target.string());
    auto copied = put(file);
    if (!copied) return copied.error();
    ::unlink(file.c_str());
    return copied;
  }
  if (auto r = fsync_dir_of(target); !r) return r.error();
  return cid;
}

Result<fs::path> LocalCas::get(std::string_view cid) {
  auto expected = digest_from_cid(cid);
  if (!expected) return expected.error();
  const fs::path path = blob_path(cid);
  io::unique_fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return make_error(errc::not_found, "blob " + std::string(cid) + " not found");
    return os_error(errno, "open " + path.string());
  }
  auto digest = stream_hashed(fd.get(), path, no_sink);
  if (!digest) return digest.error();
  if (*digest != *expected)
    return make_error(errc::corrupt_archive, "blob " + std::string(cid) + " failed verification");
  return path;
}

Result<void> LocalCas::export_to(std::string_view cid, const fs::path& out) {
  auto expected = digest_from_cid(cid);
  if (!expected) return expected.error();
  const fs::path path = blob_path(cid);
  io::unique_fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return make_error(errc::not_found, "blob " + std::string(cid) + " not found");
    return os_error(errno, "open " + path.string());
  }
  // Copy and verify in one pass, into a temp file next to `out`: `out` only ever appears
  // with content that matched the CID.
  const fs::path out_dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
  auto tmp = TempFile::create(out_dir, "." + out.filename().string() + ".");
  if (!tmp) return tmp.error();
  auto digest = stream_hashed(fd.get(), path, [&](std::span<const std::byte> b) { return tmp->write(b); });
  if (!digest) return digest.error();
  if (*digest != *expected)
    return make_error(errc::corrupt_archive, "blob " + std::string(cid) + " failed verification");
  // Exported copies belong to the operator: ordinary file permissions, not the store's 0600.
  if (::fchmod(tmp->fd(), 0644) != 0) return os_error(errno, "chmod " + out.string());
  if (auto r = tmp->commit(out); !r) return r.error();
  return fsync_dir_of(fs::absolute(out));
}

Result<std::optional<fs::path>> LocalCas::link_beside(std::string_view cid, const fs::path& out) {
  const fs::path path = blob_path(cid);
  fs::path tmp = out.parent_path() / io::random_name("." + out.filename().string() + ".", ".tmp");
  if (::link(path.c_str(), tmp.c_str()) == 0) return std::optional<fs::path>(std::move(tmp));
  if (errno == ENOENT && ::access(path.c_str(), F_OK) != 0)
    return make_error(errc::not_found, "blob " + std::string(cid) + " not found");
  if (errno == EXDEV || errno == EPERM || errno == EMLINK) {
    if (auto r = export_to(cid, out); !r) return r.error();
    return std::optional<fs::path>();
  }
  return os_error(errno, "link " + path.string() + " to " + tmp.string());
}

Result<void> LocalCas::link_to(std::string_view cid, const fs::path& out) {
  if (auto d = digest_from_cid(cid); !d) return d.error();
  auto tmp = link_beside(cid, out);
  if (!tmp) return tmp.error();
  if (!*tmp) return {};  // copied (and verified) instead
  if (::rename((*tmp)->c_str(), out.c_str()) != 0) {
    auto e = os_error(errno, "rename to " + out.string());
    ::unlink((*tmp)->c_str());
    return e;
  }
  return {};
}

Result<void> LocalCas::fetch_to(std::string_view cid, const fs::path& out) {
  auto expected = digest_from_cid(cid);
  if (!expected) return expected.error();
  auto linked = link_beside(cid, out);
  if (!linked) return linked.error();
  if (!*linked) return {};  // copied (and verified) instead
  const fs::path& tmp = **linked;
  // Verified through the link: what is checked is exactly what the caller will read.
  auto verified = [&]() -> Result<void> {
    io::unique_fd fd(::open(tmp.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return os_error(errno, "open " + tmp.string());
    auto digest = stream_hashed(fd.get(), blob_path(cid), no_sink);
    if (!digest) return digest.error();
    if (*digest != *expected)
      return make_error(errc::corrupt_archive, "blob " + std::string(cid) + " failed verification");
    if (::rename(tmp.c_str(), out.c_str()) != 0) return os_error(errno, "rename to " + out.string());
    return {};
  }();
  if (!verified) ::unlink(tmp.c_str());
  return verified;
}

std::size_t LocalCas::sweep_temps() {
  std::size_t removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(root_ / "tmp", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // put.<pid>.<16 hex>.tmp
    if (!name.starts_with("put.") || !name.ends_with(".tmp")) continue;
    const auto dot = name.find('.', 4);
    if (dot == std::string::npos) continue;
    pid_t pid = 0;
    const auto [end_ptr, err] = std::from_chars(name.data() + 4, name.data() + dot, pid);
    if (err != std::errc() || end_ptr != name.data() + dot || pid <= 0) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    if (::unlink(it->path().c_str()) == 0) ++removed;
  }
  return removed;
}

Result<void> LocalCas::remove(std::string_view cid) {
  // Validating first keeps a crafted "cid" such as "../x" from naming a file outside blobs/.
  if (auto d = digest_from_cid(cid); !d) return d.error();
  const fs::path path = blob_path(cid);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return {};
    return os_error(errno, "unlink " + path.string());
  }
  return fsync_dir_of(path);
}

Result<std::optional<std::string>> LocalCas::held_cid(const fs::path& file) const {
  io::unique_fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return os_error(errno, "open " + file.string());
  auto digest = stream_hashed(fd.get(), file, no_sink);
  if (!digest) return digest.error();
  std::string cid = cid_from_digest(*digest);
  if (!contains(cid)) return std::optional<std::string>{};
  return std::optional<std::string>{std::move(cid)};
}

bool LocalCas::contains(std::string_view cid) const {
  if (!digest_from_cid(cid)) return false;
  return ::access(blob_path(cid).c_str(), F_OK) == 0;
}

}  // namespace carsync::backend
