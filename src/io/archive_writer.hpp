#pragma once
// A tar archive (PAX, numeric ids) compressed with gzip or zstd, written by libarchive to a
// file. Members are streamed: file content arrives in chunks, nothing is held whole.
#include "carsync/config.hpp"
#include "core/error.hpp"
#include "io/unique_fd.hpp"

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

struct archive;

namespace carsync::io {

struct ArchiveOptions {
  ArchiveFormat format = ArchiveFormat::tar_gz;
  int level = 6;
  // Content bytes read so far, for status readers on other threads (nullptr: not counted).
  std::atomic<std::uint64_t>* progress = nullptr;
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
  // Flushes compression and closes; returns the archive size in bytes.
  Result<std::uint64_t> finish();

 private:
  ArchiveWriter() = default;
  Result<void> header(std::string_view name, const struct stat& st, unsigned type, std::int64_t size);
  struct archive* a_ = nullptr;
  unique_fd fd_;
  bool finished_ = false;
};

}  // namespace carsync::io
