#pragma once
// A tar archive (PAX, numeric ids) compressed with gzip or zstd, written to a file. libarchive
// writes the plain tar; our compressor (parallel_gzip, zstd_stream) compresses it on the
// compute pool's threads and the result is hashed on its way to the file. Members are
// streamed: file content arrives in chunks, nothing is held whole.
#include "carsync/config.hpp"
#include "core/delta_index.hpp"
#include "core/error.hpp"
#include "io/sha256.hpp"
#include "io/stream_compressor.hpp"
#include "io/unique_fd.hpp"

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

struct archive;

namespace carsync::io {

class ChunkedCompressor;
class ComputePool;

struct ArchiveOptions {
  ArchiveFormat format = ArchiveFormat::tar_gz;
  int level = 6;
  // Content bytes read so far, for status readers on other threads (nullptr: not counted).
  std::atomic<std::uint64_t>* progress = nullptr;
  // Parallel compression on this pool; nullptr: on the caller's thread only.
  ComputePool* compute = nullptr;
  // The delta format (io/chunked_compressor.hpp): independent frames cut at content-defined
  // boundaries, listed in ArchiveSeal::frames.
  bool chunked = false;
};

// What a finished archive is: its size and the SHA-256 of its bytes, hashed as they were
// written, so neither the upload nor the embedded store reads the file again.
struct ArchiveSeal {
  std::uint64_t size = 0;
  Sha256Digest sha256{};
  // Chunked archives only: every frame in order, and the plain tar's size.
  std::vector<core::FrameInfo> frames;
  std::uint64_t plain_size = 0;
};

class ArchiveWriter {
 public:
  // Creates `file` (O_EXCL). The caller deletes it on failure.
  static Result<std::unique_ptr<ArchiveWriter>> create(const std::filesystem::path& file,
                                                       const ArchiveOptions& opts);
  ~ArchiveWriter();

  // Directory member; the name gets a trailing '/' like the reference writer.
  Result<void> add_directory(std::string_view name, const struct stat& st);
  // Regular file member of st.st_size bytes; `fill` must push exactly that many bytes
  // through the sink it is given.
  using Fill = std::function<Result<void>(const std::function<Result<void>(std::span<const std::byte>)>&)>;
  Result<void> add_file(std::string_view name, const struct stat& st, const Fill& fill);
  // Flushes compression and closes; returns the archive's size and digest.
  Result<ArchiveSeal> finish();

 private:
  ArchiveWriter() = default;
  Result<void> header(std::string_view name, const struct stat& st, unsigned type, std::int64_t size);
  // libarchive's write callback: the plain tar, into the compressor (la_ssize_t is ssize_t
  // on Linux).
  static ssize_t write_out(struct archive*, void* self, const void* data, std::size_t size);
  // The compressor's output: hashed, then written to the file.
  Result<void> write_file(std::span<const std::byte> bytes);
  // A libarchive failure as our error; a compressor or file failure is named by its cause.
  Error archive_error(std::string_view what) const;

  struct archive* a_ = nullptr;
  unique_fd fd_;
  Sha256 hash_;
  std::uint64_t written_ = 0;
  std::unique_ptr<StreamCompressor> compressor_;
  ChunkedCompressor* chunked_ = nullptr;  // compressor_ when the archive is chunked
  std::optional<Error> compressor_error_;  // why write_out refused bytes
  bool opened_ = false;    // archive_write_open2 succeeded
  bool finished_ = false;
  bool abandoned_ = false;  // being destroyed unfinished: nothing more is compressed
};

}  // namespace carsync::io
