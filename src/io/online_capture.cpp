#include "io/online_capture.hpp"

#include "core/path_rules.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

namespace carsync::io {
namespace {

// Member data moves through one buffer of this size, whatever the file sizes.
constexpr std::size_t chunk_bytes = 64 * 1024;

struct ReadArchiveDeleter {
  void operator()(struct archive* a) const noexcept { archive_read_free(a); }
};
using unique_read_archive = std::unique_ptr<struct archive, ReadArchiveDeleter>;

bool has_dotdot_segment(std::string_view p) {
  for (;;) {
    const auto slash = p.find('/');
    if (p.substr(0, slash) == "..") return true;
    if (slash == std::string_view::npos) return false;
    p.remove_prefix(slash + 1);
  }
}

std::string_view trim_slashes(std::string_view s) {
  while (s.starts_with('/')) s.remove_prefix(1);
  while (s.ends_with('/')) s.remove_suffix(1);
  return s;
}

Result<void> check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed))
    return make_error(errc::cancelled, "archive build cancelled");
  return {};
}

struct Refusal {
  const char* kind;
  errc code;
};

// Why a member is refused; nullopt for the two kinds that are copied. Hard links are
// checked first: tar stores them as regular-file headers that point at another member.
std::optional<Refusal> refusal(archive_entry* e) {
  if (archive_entry_hardlink(e)) return Refusal{"a hard link", errc::not_regular};
  switch (archive_entry_filetype(e)) {
    case AE_IFREG:
    case AE_IFDIR: return std::nullopt;
    case AE_IFLNK: return Refusal{"a symlink", errc::symlink_rejected};
    case AE_IFCHR: return Refusal{"a character device", errc::not_regular};
    case AE_IFBLK: return Refusal{"a block device", errc::not_regular};
    case AE_IFIFO: return Refusal{"a FIFO", errc::not_regular};
    case AE_IFSOCK: return Refusal{"a socket", errc::not_regular};
    default: return Refusal{"of an unknown type", errc::not_regular};
  }
}

// Copies one exported stream into the writer, member by member.
class StreamCopy {
 public:
  StreamCopy(const OnlineSource& src, ArchiveWriter& writer, std::span<std::byte> buffer,
             const std::atomic<bool>* cancel, CaptureStats& stats)
      : src_(src), writer_(writer), buffer_(buffer), cancel_(cancel), stats_(stats) {}

  Result<void> run() {
    unique_fd fd(::open(src_.stream.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return os_error(errno, "open " + subject() + " (" + src_.stream.string() + ")");
    // Declared after `fd`: freed first, and libarchive never closes a descriptor it was given.
    unique_read_archive a(archive_read_new());
    if (!a) return make_error(errc::io_failure, "archive: out of memory");
    archive_read_support_format_tar(a.get());
    archive_read_support_filter_gzip(a.get());
    if (archive_read_open_fd(a.get(), fd.get(), chunk_bytes) != ARCHIVE_OK) return corrupt(a.get(), "");

    std::uint64_t members = 0;
    for (;;) {
      if (auto r = check_cancel(cancel_); !r) return r;
      archive_entry* e = nullptr;
      const int rc = archive_read_next_header(a.get(), &e);
      if (rc == ARCHIVE_EOF) break;
      if (rc < ARCHIVE_WARN) return corrupt(a.get(), "");
      ++members;
      if (auto r = member(a.get(), e); !r) return r;
    }
    // Docker always sends at least the path itself; nothing at all is a broken export.
    if (members == 0) return make_error(errc::corrupt_archive, subject() + " has no members");
    return {};
  }

 private:
  Result<void> member(struct archive* a, archive_entry* e) {
    const char* raw = archive_entry_pathname(e);
    if (!raw || !*raw) return make_error(errc::corrupt_archive, subject() + " has a member without a name");
    auto name = online_member_name(src_.container_path, src_.base, raw);
    if (!name) return name.error();

    if (auto refused = refusal(e)) {
      return make_error(refused->code, "online capture of " + src_.container_path + ": tar member " + raw +
                                           " (/" + *name + ") is " + refused->kind +
                                           "; only regular files and directories are captured");
    }

    const la_int64_t size = archive_entry_size(e);
    if (size < 0) return make_error(errc::corrupt_archive, subject() + ": member " + raw + " has a negative size");
    struct stat st {};
    st.st_mode = static_cast<mode_t>(archive_entry_perm(e));
    st.st_uid = static_cast<uid_t>(archive_entry_uid(e));
    st.st_gid = static_cast<gid_t>(archive_entry_gid(e));
    st.st_mtim.tv_sec = static_cast<time_t>(archive_entry_mtime(e));
    st.st_size = static_cast<off_t>(size);

    if (archive_entry_filetype(e) == AE_IFDIR) {
      if (auto r = writer_.add_directory(*name, st); !r) return r;
      ++stats_.directories;
      return {};
    }

    auto fill = [&](const auto& sink) -> Result<void> {
      for (;;) {
        if (auto c = check_cancel(cancel_); !c) return c;
        const la_ssize_t n = archive_read_data(a, buffer_.data(), buffer_.size());
        if (n == 0) return {};
        if (n < 0) return corrupt(a, raw);
        if (auto r = sink(buffer_.first(static_cast<std::size_t>(n))); !r) return r;
      }
    };
    if (auto r = writer_.add_file(*name, st, fill); !r) return r;
    ++stats_.files;
    stats_.content_bytes += static_cast<std::uint64_t>(size);
    return {};
  }

  std::string subject() const { return "container archive of " + src_.container_path; }

  Error corrupt(struct archive* a, std::string_view member) const {
    std::string text = subject();
    if (!member.empty()) text += ": member " + std::string(member);
    const char* detail = archive_error_string(a);
    text += ": ";
    text += detail ? detail : "unreadable tar stream";
    return make_error(errc::corrupt_archive, std::move(text));
  }

  const OnlineSource& src_;
  ArchiveWriter& writer_;
  std::span<std::byte> buffer_;
  const std::atomic<bool>* cancel_;
  CaptureStats& stats_;
};

// A source is captured only under a normalised, shape-valid container path other than '/'.
Result<void> check_source(const OnlineSource& src) {
  auto shape = core::check_shape(src.container_path);
  if (!shape) return shape.error();
  if (*shape == "/") return make_error(errc::path_rejected, "archive source must not be '/'");
  if (*shape != src.container_path)
    return make_error(errc::path_rejected, "archive source is not normalised: " + src.container_path);
  return {};
}

}  // namespace

Result<std::string> online_member_name(std::string_view container_path, std::string_view base,
                                       std::string_view member) {
  const std::string shown(member);
  if (has_dotdot_segment(member))
    return make_error(errc::path_rejected, "tar member name contains '..': " + shown +
                                               " (container archive of " + std::string(container_path) + ")");

  const std::string target = core::normalize_path(container_path);
  if (target.front() != '/' || target == "/")
    return make_error(errc::path_rejected, "archive source must be an absolute path other than '/': " +
                                               std::string(container_path));
  std::string b(trim_slashes(base));
  if (b.empty()) b = target.substr(target.rfind('/') + 1);

  // Normalising also strips the leading and trailing '/' the spec strips, and any "./".
  std::string raw = core::normalize_path(member);
  if (raw == ".") raw.clear();
  else if (raw.starts_with('/')) raw.erase(0, 1);

  std::string name;
  if (raw == b) name = target;
  else if (raw.starts_with(b + "/")) name = target + raw.substr(b.size());
  else name = target + "/" + raw;
  name = core::normalize_path(name);

  // Whatever Docker sent, nothing may land outside the path the app asked for.
  auto shape = core::check_shape(name);
  if (!shape || !core::path_within(*shape, target))
    return make_error(errc::path_rejected, "tar member " + shown + " would be stored outside " + target);
  return shape->substr(1);
}

Result<CaptureStats> build_online_archive(std::span<const OnlineSource> sources,
                                          const std::filesystem::path& out,
                                          const ArchiveOptions& opts,
                                          const std::atomic<bool>* cancel) {
  for (const auto& src : sources)
    if (auto r = check_source(src); !r) return r.error();

  auto writer = ArchiveWriter::create(out, opts);
  if (!writer) return writer.error();  // not ours to delete: O_EXCL refused or nothing made

  CaptureStats stats;
  std::vector<std::byte> buffer(chunk_bytes);
  auto built = [&]() -> Result<void> {
    for (const auto& src : sources)
      if (auto r = StreamCopy(src, **writer, buffer, cancel, stats).run(); !r) return r;
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
