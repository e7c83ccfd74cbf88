#include "io/archive_writer.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

namespace carsync::io {
namespace {

// Output leaves libarchive in blocks of this size: few write(2) calls, small buffer.
constexpr int bytes_per_block = 64 * 1024;

Error archive_error(struct archive* a, std::string_view what) {
  std::string text = "archive ";
  text += what;
  text += ": ";
  const char* detail = archive_error_string(a);
  text += detail ? detail : "unknown libarchive error";
  // libarchive says only "Write error" when write(2) fails; the errno it kept is the
  // cause an operator needs ("No space left on device").
  const int err = archive_errno(a);
  if (err > 0) {  // libarchive's own errors are negative (ARCHIVE_ERRNO_MISC)
    const std::string cause = std::strerror(err);
    if (text.find(cause) == std::string::npos) text += ": " + cause;
  }
  return make_error(errc::io_failure, std::move(text));
}

struct EntryDeleter {
  void operator()(archive_entry* e) const noexcept { archive_entry_free(e); }
};

}  // namespace

Result<std::unique_ptr<ArchiveWriter>> ArchiveWriter::create(const std::filesystem::path& file,
                                                             const ArchiveOptions& opts) {
  std::unique_ptr<ArchiveWriter> w(new ArchiveWriter());
  w->fd_.reset(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!w->fd_) return os_error(errno, "create " + file.string());

  w->a_ = archive_write_new();
  if (!w->a_) return make_error(errc::io_failure, "archive: out of memory");
  struct archive* a = w->a_;

  // PAX like the reference writer. libarchive only adds an extended header when a member
  // needs one (long or non-ASCII name, large size or id), so most members are plain ustar.
  if (archive_write_set_format_pax(a) != ARCHIVE_OK) return archive_error(a, "format");

  const std::string level = std::to_string(opts.level);
  const char* filter = opts.format == ArchiveFormat::tar_zst ? "zstd" : "gzip";
  const int added = opts.format == ArchiveFormat::tar_zst ? archive_write_add_filter_zstd(a)
                                                          : archive_write_add_filter_gzip(a);
  if (added != ARCHIVE_OK) return archive_error(a, filter);
  if (archive_write_set_filter_option(a, filter, "compression-level", level.c_str()) != ARCHIVE_OK)
    return archive_error(a, "compression level");

  if (archive_write_set_bytes_per_block(a, bytes_per_block) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK)  // no padding after the stream
    return archive_error(a, "blocking");
  if (archive_write_open2(a, w.get(), nullptr, &ArchiveWriter::write_out, nullptr, nullptr) != ARCHIVE_OK)
    return archive_error(a, "open");
  return w;
}

ArchiveWriter::~ArchiveWriter() {
  if (!a_) return;
  if (!finished_) {
    // An abandoned archive (failed or cancelled build). Marking it failed makes close()
    // skip padding the open member to its announced size (up to gigabytes of zeros into a
    // file the caller is about to delete). close() must still run: only it releases the
    // compressor (zlib's deflate state) and the output block buffer, and free() skips it
    // once the archive is marked failed. It writes at most the small tar/gzip trailer.
    archive_write_fail(a_);
    archive_write_close(a_);
  }
  archive_write_free(a_);
}

Result<void> ArchiveWriter::header(std::string_view name, const struct stat& st, unsigned type,
                                   std::int64_t size) {
  std::unique_ptr<archive_entry, EntryDeleter> entry(archive_entry_new());
  if (!entry) return make_error(errc::io_failure, "archive: out of memory");
  const std::string path(name);
  archive_entry_copy_pathname(entry.get(), path.c_str());
  archive_entry_set_filetype(entry.get(), type);
  archive_entry_set_perm(entry.get(), st.st_mode & 07777);
  // Numeric ids only: names would tie the archive to this host's passwd/group files.
  archive_entry_set_uid(entry.get(), st.st_uid);
  archive_entry_set_gid(entry.get(), st.st_gid);
  // Whole seconds fit the ustar header; nanoseconds would cost a PAX header per member.
  archive_entry_set_mtime(entry.get(), st.st_mtim.tv_sec, 0);
  archive_entry_set_size(entry.get(), size);
  // nlink, dev and ino stay unset: every file is a full regular member, never a hard link.
  if (archive_write_header(a_, entry.get()) < ARCHIVE_WARN)
    return archive_error(a_, "header of " + path);
  return {};
}

Result<void> ArchiveWriter::add_directory(std::string_view name, const struct stat& st) {
  std::string dir(name);
  if (dir.empty() || dir.back() != '/') dir += '/';
  return header(dir, st, AE_IFDIR, 0);
}

Result<void> ArchiveWriter::add_file(std::string_view name, const struct stat& st, const Fill& fill) {
  const std::int64_t size = st.st_size;
  if (auto r = header(name, st, AE_IFREG, size); !r) return r;

  std::int64_t written = 0;
  auto sink = [&](std::span<const std::byte> chunk) -> Result<void> {
    if (static_cast<std::int64_t>(chunk.size()) > size - written)
      return make_error(errc::io_failure, "file " + std::string(name) + " changed while reading");
    while (!chunk.empty()) {
      const la_ssize_t n = archive_write_data(a_, chunk.data(), chunk.size());
      if (n <= 0) return archive_error(a_, "write of " + std::string(name));
      chunk = chunk.subspan(static_cast<std::size_t>(n));
      written += n;
    }
    return {};
  };
  if (auto r = fill(sink); !r) return r;
  if (written != size)
    return make_error(errc::io_failure, "file " + std::string(name) + " changed while reading");
  if (archive_write_finish_entry(a_) < ARCHIVE_WARN)
    return archive_error(a_, "member " + std::string(name));
  return {};
}

// Every byte leaving the compressor is hashed on its way to the file.
ssize_t ArchiveWriter::write_out(struct archive* a, void* self, const void* data, std::size_t size) {
  auto* w = static_cast<ArchiveWriter*>(self);
  const auto* p = static_cast<const std::byte*>(data);
  std::size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(w->fd_.get(), p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      archive_set_error(a, errno, "write");
      return -1;
    }
    w->hash_.update({p, static_cast<std::size_t>(n)});
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  w->written_ += size;
  return static_cast<ssize_t>(size);
}

Result<ArchiveSeal> ArchiveWriter::finish() {
  finished_ = true;
  if (archive_write_close(a_) != ARCHIVE_OK) return archive_error(a_, "close");
  return ArchiveSeal{.size = written_, .sha256 = hash_.finish()};
}

}  // namespace carsync::io
