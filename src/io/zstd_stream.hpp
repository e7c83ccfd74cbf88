#pragma once
// zstd through libzstd's streaming API, compressed by its own worker threads (one per thread
// of the compute pool, none without one). Jobs are kept small (ZSTD_c_jobSize) so the memory
// in flight stays a few MiB whatever the archive's size. The frame carries a content checksum
// like the zstd tool's, so `zstd -t` verifies it.
#include "io/stream_compressor.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

typedef struct ZSTD_CCtx_s ZSTD_CCtx;

namespace carsync::io {

class ComputePool;

class ZstdStream final : public StreamCompressor {
 public:
  // Fails when libzstd refuses the level or the worker count.
  static Result<std::unique_ptr<ZstdStream>> create(int level, ComputePool* compute, ByteSink sink);
  // Abandons: libzstd waits for the jobs its workers are running, then frees them.
  ~ZstdStream() override;

  Result<void> write(std::span<const std::byte> data) override;
  Result<void> finish() override;

 private:
  explicit ZstdStream(ByteSink sink);
  Result<void> compress(std::span<const std::byte> data, bool end);

  ByteSink sink_;
  ZSTD_CCtx* cctx_ = nullptr;
  std::vector<std::byte> out_;
  bool finished_ = false;
  std::optional<Error> failed_;
};

}  // namespace carsync::io
