#pragma once
// Streaming file reads with a fixed number of blocks in flight. The io_uring engine keeps
// `queue_depth` reads queued ahead of the consumer and requeues short reads and -EAGAIN;
// the portable engine uses pread. The choice is made once at start-up: io_uring is probed
// and refused kernels or seccomp profiles (ENOSYS, EPERM) fall back to the portable engine.
#include "core/error.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

namespace carsync::io {

enum class EngineKind { io_uring, portable };
std::string_view to_string(EngineKind k) noexcept;

struct EngineOptions {
  unsigned queue_depth = 16;
  std::size_t block_size = 256 * 1024;
};

// Receives the file's bytes in order; returning an error aborts the stream.
using ChunkSink = std::function<Result<void>(std::span<const std::byte>)>;

class FileReader {
 public:
  virtual ~FileReader() = default;
  virtual EngineKind kind() const noexcept = 0;
  // Streams exactly `size` bytes of fd from offset 0. A file that turns out shorter or
  // longer than `size` (changed while read) fails with errc::io_failure.
  virtual Result<void> stream(int fd, std::uint64_t size, const ChunkSink& sink) = 0;
};

// Memory bound: queue_depth * block_size per reader.
Result<std::unique_ptr<FileReader>> make_uring_reader(const EngineOptions& opts);
std::unique_ptr<FileReader> make_portable_reader(const EngineOptions& opts);

// Engine selection at start-up: "auto" probes io_uring once per process.
EngineKind select_engine(std::string_view preference);
// A reader of the selected kind (falls back to portable if the ring cannot be created).
std::unique_ptr<FileReader> make_reader(EngineKind kind, const EngineOptions& opts);

}  // namespace carsync::io
