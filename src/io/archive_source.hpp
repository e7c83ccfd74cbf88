#pragma once
// The decompressing read side of a downloaded snapshot archive: a thread of its own reads
// the file in large blocks, hashes every byte of it (SHA-256) and inflates gzip or zstd into
// a few fixed buffers that the scan thread consumes as raw tar. Reading, hashing and
// decompression thus overlap the tar parsing and the staging writes, while memory stays
// bounded by buffers × buffer_bytes (plus one read block and the decoder's state).
#include "core/error.hpp"
#include "io/sha256.hpp"
#include "io/unique_fd.hpp"

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace carsync::io {

enum class ArchiveCompression { gzip, zstd };

struct ArchiveSourceOptions {
  std::size_t buffers = 4;                // decompressed-output buffers in flight
  std::size_t buffer_bytes = 1u << 20;    // size of each
  std::size_t read_bytes = 1u << 20;      // one read(2) of compressed input
  // Polled by the reader between blocks: once set, it stops with errc::cancelled.
  const std::atomic<bool>* cancel = nullptr;
};

class ArchiveSource {
 public:
  // Opens `archive` and detects its compression from the magic bytes (gzip 1f 8b, zstd
  // 28 b5 2f fd); anything else is errc::corrupt_archive naming what was found. The reader
  // thread starts here.
  static Result<std::unique_ptr<ArchiveSource>> open(const std::filesystem::path& archive,
                                                     ArchiveSourceOptions options = {});

  // Stops the reader (if still running) and joins it.
  ~ArchiveSource();
  ArchiveSource(const ArchiveSource&) = delete;
  ArchiveSource& operator=(const ArchiveSource&) = delete;

  ArchiveCompression compression() const noexcept { return compression_; }
  std::uint64_t file_size() const noexcept { return file_size_; }

  // The next block of decompressed (tar) bytes, valid until the next call; an empty span at
  // the end of the compressed stream. The first failure (corrupt or truncated data, a read
  // error, cancellation) is returned as soon as the reader meets it, and again thereafter.
  Result<std::span<const std::byte>> next();

  // The first failure met so far, if any (for callers whose own reader reported a generic
  // error after next() failed).
  std::optional<Error> error() const;

  // To be called once the consumer has all it needs (the tar end marker): drains what is
  // left of the stream, decoding at most `trailing_budget` more bytes (so the last member's
  // checksum is still verified) and only reading and hashing the file past that, waits for
  // the end of the file and returns the SHA-256 of all its bytes, or the first failure.
  Result<Sha256Digest> finish(std::uint64_t trailing_budget = 1u << 20);

 private:
  ArchiveSource(unique_fd fd, std::string name, std::uint64_t size, ArchiveCompression c,
                ArchiveSourceOptions o);
  void run(std::stop_token stop);
  // Reads, hashes and decodes the whole file; the failure that ended it early, if any.
  Result<void> pump(std::stop_token& stop, Sha256& hash);
  // Blocks until a free buffer is available (nullptr when stopped).
  std::vector<std::byte>* acquire(std::stop_token& stop);
  void publish(std::vector<std::byte>* buf, std::size_t used);

  const unique_fd fd_;
  const std::string name_;  // the archive's path, for messages
  const std::uint64_t file_size_;
  const ArchiveCompression compression_;
  const ArchiveSourceOptions options_;

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::vector<std::vector<std::byte>> storage_;
  std::vector<std::vector<std::byte>*> free_;
  struct Filled {
    std::vector<std::byte>* buf;
    std::size_t used;
  };
  std::deque<Filled> filled_;
  std::vector<std::byte>* held_ = nullptr;  // handed to the consumer by the last next()
  bool ended_ = false;                      // the reader reached the end of the file
  std::optional<Error> error_;
  std::optional<Sha256Digest> digest_;
  std::atomic<bool> skip_decoding_{false};  // set by finish() once the budget is spent

  std::jthread reader_;  // last: started once everything above exists, joined first
};

}  // namespace carsync::io
