#include "io/archive_writer.hpp"

#include "io/chunked_compressor.hpp"
#include "io/parallel_gzip.hpp"
#include "io/zstd_stream.hpp"

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

// The plain tar leaves libarchive in blocks of this size: few calls into the compressor.
constexpr int bytes_per_block = 64 * 1024;

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
  if (archive_write_set_format_pax(a) != ARCHIVE_OK) return w->archive_error("format");
  // No libarchive filter: its gzip and zstd filters compress on this thread only.
  if (archive_write_add_filter_none(a) != ARCHIVE_OK) return w->archive_error("filter");

  ArchiveWriter* self = w.get();  // the writer outlives its compressor (a member)
  ByteSink to_file = [self](std::span<const std::byte> bytes) { return self->write_file(bytes); };
  if (opts.chunked) {
    // The delta format: independent frames, one per content-defined chunk.
    auto c = ChunkedCompressor::create(
        ChunkedOptions{.codec = opts.format == ArchiveFormat::tar_zst ? core::FrameCodec::zstd : core::FrameCodec::gzip,
                       .level = opts.level,
                       .compute = opts.compute},
        std::move(to_file));
    if (!c) return c.error();
    w->chunked_ = c->get();
    w->compressor_ = std::move(*c);
  } else if (opts.format == ArchiveFormat::tar_zst) {
    auto z = ZstdStream::create(opts.level, opts.compute, std::move(to_file));
    if (!z) return z.error();
    w->compressor_ = std::move(*z);
  } else {
    if (opts.level < 0 || opts.level > 9)
      return make_error(errc::io_failure, "gzip compression level " + std::to_string(opts.level) + " is not 0-9");
    w->compressor_ = std::make_unique<ParallelGzip>(
        ParallelGzipOptions{.level = opts.level, .compute = opts.compute}, std::move(to_file));
  }

  if (archive_write_set_bytes_per_block(a, bytes_per_block) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK)  // no padding after the stream
    return w->archive_error("blocking");
  if (archive_write_open2(a, w.get(), nullptr, &ArchiveWriter::write_out, nullptr, nullptr) != ARCHIVE_OK)
    return w->archive_error("open");
  w->opened_ = true;
  return w;
}

ArchiveWriter::~ArchiveWriter() {
  if (!a_) return;
  // A handle that was never opened (create() failed) is only freed: closing it crashes.
  if (opened_ && !finished_) {
    // An abandoned archive (failed or cancelled build). Marking it failed makes close()
    // skip padding the open member to its announced size (up to gigabytes of zeros into a
    // file the caller is about to delete). close() must still run: only it releases the
    // output block buffer, and free() skips it once the archive is marked failed. What it
    // still writes (the tar trailer) is dropped by write_out; the compressor, destroyed
    // after this, drops its queued blocks.
    abandoned_ = true;
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
    return archive_error("header of " + path);
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
      if (n <= 0) return archive_error("write of " + std::string(name));
      chunk = chunk.subspan(static_cast<std::size_t>(n));
      written += n;
    }
    return {};
  };
  if (auto r = fill(sink); !r) return r;
  if (written != size)
    return make_error(errc::io_failure, "file " + std::string(name) + " changed while reading");
  if (archive_write_finish_entry(a_) < ARCHIVE_WARN)
    return archive_error("member " + std::string(name));
  return {};
}

// The plain tar, as libarchive produces it, goes to the compressor.
ssize_t ArchiveWriter::write_out(struct archive* a, void* self, const void* data, std::size_t size) {
  auto* w = static_cast<ArchiveWriter*>(self);
  if (w->abandoned_) return static_cast<ssize_t>(size);  // nobody will read it
  auto r = w->compressor_->write({static_cast<const std::byte*>(data), size});
  if (!r) {
    w->compressor_error_ = r.error();
    archive_set_error(a, -1, "%s", r.error().message.c_str());  // -1: not an errno (misc)
    return -1;
  }
  return static_cast<ssize_t>(size);
}

// Every byte leaving the compressor is hashed on its way to the file.
Result<void> ArchiveWriter::write_file(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_.get(), bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(errno, "write");  // keeps the cause: "No space left on device"
    }
    hash_.update(bytes.first(static_cast<std::size_t>(n)));
    bytes = bytes.subspan(static_cast<std::size_t>(n));
    written_ += static_cast<std::uint64_t>(n);
  }
  return {};
}

Error ArchiveWriter::archive_error(std::string_view what) const {
  std::string text = "archive ";
  text += what;
  text += ": ";
  // The compressor's or the file's own words name the cause ("write: No space left on
  // device"); libarchive would only say that its callback failed.
  if (compressor_error_) return make_error(errc::io_failure, text + compressor_error_->message);
  const char* detail = a_ ? archive_error_string(a_) : nullptr;
  text += detail ? detail : "unknown libarchive error";
  const int err = a_ ? archive_errno(a_) : 0;
  if (err > 0) {  // libarchive's own errors are negative (ARCHIVE_ERRNO_MISC)
    const std::string cause = std::strerror(err);
    if (text.find(cause) == std::string::npos) text += ": " + cause;
  }
  return make_error(errc::io_failure, std::move(text));
}

Result<ArchiveSeal> ArchiveWriter::finish() {
  finished_ = true;
  // close() sends the tar trailer through write_out; then the compressor ends its stream.
  if (archive_write_close(a_) != ARCHIVE_OK) return archive_error("close");
  if (auto r = compressor_->finish(); !r) return make_error(errc::io_failure, "archive close: " + r.error().message);
  ArchiveSeal seal;
  seal.size = written_;
  seal.sha256 = hash_.finish();
  if (chunked_) {  // the delta format's frames, in archive order
    seal.frames = chunked_->frames();
    seal.plain_size = chunked_->plain_size();
  }
  return seal;
}

}  // namespace carsync::io
