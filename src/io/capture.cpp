#include "io/capture.hpp"

#include "io/secure_fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

namespace carsync::io {
namespace {

struct DirCloser {
  void operator()(DIR* d) const noexcept { ::closedir(d); }
};
using unique_dir = std::unique_ptr<DIR, DirCloser>;

bool has_code(const Error& e, errc c) { return e.code == make_error_code(c); }

// Captures one resolved source. Every descriptor is reached from the volume root through
// openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS (io/secure_fs), and each directory's
// children are opened relative to that directory's own descriptor, so a symlink swapped in
// while we work makes an open fail instead of redirecting a read.
class SourceCapture {
 public:
  SourceCapture(const core::ResolvedPath& src, ArchiveWriter& writer, FileReader& reader,
                const std::atomic<bool>* cancel, CaptureStats& stats, std::atomic<std::uint64_t>* progress)
      : src_(src), writer_(writer), reader_(reader), cancel_(cancel), stats_(stats), progress_(progress),
        prefix_(src.container_path.substr(src.container_path.find_first_not_of('/'))) {}

  Result<void> run() {
    if (auto r = check_cancel(); !r) return r;
    auto root = open_root_dir(src_.host_root);
    if (!root) return source_error(root.error(), "");
    if (src_.rel.empty()) return entry(root->get(), ".", "", S_IFDIR);

    // The entry's own type decides what is opened, without following a trailing symlink.
    auto st = lstat_beneath(root->get(), src_.rel);
    if (!st) return source_error(st.error(), "");
    return entry(root->get(), src_.rel, "", st->st_mode);
  }

 private:
  // `rel` is below `parent_fd`; `below` is the entry's path below the source ("" for the
  // source itself). `type` is the entry's lstat type; the opened descriptor is checked again.
  Result<void> entry(int parent_fd, const std::string& rel, const std::string& below, mode_t type) {
    if (S_ISLNK(type)) return symlink_error(below);
    if (S_ISDIR(type)) {
      auto fd = open_beneath(parent_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (!fd) return source_error(fd.error(), below);
      return directory(std::move(*fd), below);
    }
    if (S_ISREG(type)) {
      // O_NONBLOCK: a FIFO swapped in after the type check must not block the open.
      auto fd = open_beneath(parent_fd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      if (!fd) return source_error(fd.error(), below);
      return file(std::move(*fd), below);
    }
    return special_error(below);
  }

  Result<void> directory(unique_fd fd, const std::string& below) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return os_error(errno, "stat " + host_path(below));
    if (!S_ISDIR(st.st_mode)) return special_error(below);
    if (auto r = writer_.add_directory(member(below), st); !r) return r;
    ++stats_.directories;

    unique_dir dir(::fdopendir(fd.get()));
    if (!dir) return os_error(errno, "open directory " + host_path(below));
    fd.release();  // now owned by `dir`
    const int dir_fd = ::dirfd(dir.get());

    for (;;) {
      errno = 0;
      const dirent* ent = ::readdir(dir.get());
      if (!ent) {
        if (errno != 0) return os_error(errno, "read directory " + host_path(below));
        return {};
      }
      const std::string name = ent->d_name;
      if (name == "." || name == "..") continue;
      if (auto r = check_cancel(); !r) return r;

      const std::string child = below.empty() ? name : below + "/" + name;
      auto type = entry_type(dir_fd, *ent);
      if (!type) return source_error(type.error(), child);
      if (auto r = entry(dir_fd, name, child, *type); !r) return r;
    }
  }

  Result<void> file(unique_fd fd, const std::string& below) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return os_error(errno, "stat " + host_path(below));
    if (!S_ISREG(st.st_mode)) return special_error(below);
    // Back to blocking reads: io_uring would answer a non-blocking file's uncached reads
    // with -EAGAIN instead of waiting for the disk.
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
      return os_error(errno, "fcntl " + host_path(below));

    auto fill = [&](const auto& sink) -> Result<void> {
      auto r = reader_.stream(fd.get(), static_cast<std::uint64_t>(st.st_size),
                              [&](std::span<const std::byte> chunk) -> Result<void> {
                                if (auto c = check_cancel(); !c) return c;
                                if (progress_) progress_->fetch_add(chunk.size(), std::memory_order_relaxed);
                                return sink(chunk);
                              });
      if (!r && has_code(r.error(), errc::io_failure))
        return make_error(errc::io_failure, host_path(below) + ": " + r.error().message);
      return r;
    };
    if (auto r = writer_.add_file(member(below), st, fill); !r) return r;
    ++stats_.files;
    stats_.content_bytes += static_cast<std::uint64_t>(st.st_size);
    return {};
  }

  // readdir's d_type saves a stat per entry; filesystems that leave it unknown get lstat.
  static Result<mode_t> entry_type(int dir_fd, const dirent& ent) {
    switch (ent.d_type) {
      case DT_DIR: return S_IFDIR;
      case DT_REG: return S_IFREG;
      case DT_LNK: return S_IFLNK;
      case DT_UNKNOWN: break;
      default: return S_IFIFO;  // any special file
    }
    struct stat st {};
    if (::fstatat(dir_fd, ent.d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      return os_error(errno, std::string("stat ") + ent.d_name);
    return st.st_mode & S_IFMT;
  }

  Result<void> check_cancel() const {
    if (cancel_ && cancel_->load(std::memory_order_relaxed))
      return make_error(errc::cancelled, "archive build cancelled");
    return {};
  }

  std::string member(const std::string& below) const {
    return below.empty() ? prefix_ : prefix_ + "/" + below;
  }
  std::string host_path(const std::string& below) const {
    return below.empty() ? src_.host_path() : src_.host_path() + "/" + below;
  }
  // "archive source /app/data" or "archive source /app/data: entry app/data/x".
  std::string subject(const std::string& below) const {
    std::string s = "archive source " + src_.container_path;
    if (!below.empty()) s += ": entry " + member(below);
    return s;
  }
  std::string where(const std::string& below) const {
    return " (host path " + host_path(below) + ")";
  }

  Error symlink_error(const std::string& below) const {
    return make_error(errc::symlink_rejected,
                      subject(below) + " is or passes through a symlink" + where(below));
  }
  Error special_error(const std::string& below) const {
    return make_error(errc::not_regular,
                      subject(below) + " is not a regular file or directory" + where(below));
  }
  // Restates a secure_fs failure in terms of the container path the app asked for.
  Error source_error(const Error& e, const std::string& below) const {
    if (has_code(e, errc::not_found) || e.code == boost::system::errc::not_a_directory)
      return make_error(errc::not_found, subject(below) + " does not exist" + where(below));
    if (has_code(e, errc::symlink_rejected)) return symlink_error(below);
    if (has_code(e, errc::escapes_root))
      return make_error(errc::escapes_root, subject(below) + " escapes volume root" + where(below));
    return make_error(errc::io_failure, subject(below) + ": " + e.message + where(below));
  }

  const core::ResolvedPath& src_;
  ArchiveWriter& writer_;
  FileReader& reader_;
  const std::atomic<bool>* cancel_;
  CaptureStats& stats_;
  std::atomic<std::uint64_t>* progress_;
  std::string prefix_;  // member name of the source: container path without leading '/'
};

}  // namespace

Result<CaptureStats> build_offline_archive(std::span<const core::ResolvedPath> sources,
                                           const std::filesystem::path& out,
                                           const ArchiveOptions& opts, FileReader& reader,
                                           const std::atomic<bool>* cancel) {
  auto writer = ArchiveWriter::create(out, opts);
  if (!writer) return writer.error();  // not ours to delete: O_EXCL refused or nothing made

  CaptureStats stats;
  auto built = [&]() -> Result<void> {
    for (const auto& src : sources) {
      if (src.container_path.find_first_not_of('/') == std::string::npos)
        return make_error(errc::path_rejected, "archive source must not be '/'");
      if (auto r = SourceCapture(src, **writer, reader, cancel, stats, opts.progress).run(); !r) return r;
    }
    auto size = (*writer)->finish();
    if (!size) return size.error();
    stats.archive_size = size->size;
    stats.archive_sha256 = size->sha256;
    stats.frames = std::move(size->frames);
    stats.plain_size = size->plain_size;
    return {};
  }();

  writer->reset();
  if (!built) {
    ::unlink(out.c_str());
    return built.error();
  }
  return stats;
}

}  // namespace carsync::io
