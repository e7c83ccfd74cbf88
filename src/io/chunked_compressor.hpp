#pragma once
// The delta format's archive (core/delta_index.hpp): the plain tar is cut at content-defined
// boundaries (core::CdcChunker) and each chunk is compressed as an independent frame, a gzip
// member for tar.gz or a zstd frame (with its content size and checksum) for tar.zst. The
// frames concatenate into an ordinary .tar.gz / .tar.zst that gzip, zstd, GNU tar and
// Python's tarfile read unchanged.
//
// Chunks are compressed on the compute pool, several at once, and leave in stream order
// through the same bounded window as parallel_gzip (at most `window` chunks in flight, the
// writing thread compressing the oldest itself when no pool thread works on the stream).
// A frame's bytes depend only on its chunk, the codec and the level, so an unchanged chunk
// gives the same frame (and chunk id) in every version, at any thread count.
#include "core/delta_index.hpp"
#include "io/stream_compressor.hpp"

#include <cstddef>
#include <memory>
#include <vector>

namespace carsync::io {

class ComputePool;

struct ChunkedOptions {
  core::FrameCodec codec = core::FrameCodec::gzip;
  int level = 6;                       // gzip 0-9, zstd 1-19
  core::ChunkerParams chunker = core::chunker_v1;
  ComputePool* compute = nullptr;      // nullptr: every chunk on the caller's thread
  // Chunks in flight; 0: 2 x the pool's threads + 2 (1 without a pool). Memory: at most
  // window x (max chunk + its compressed bound), ~12 MiB with 2 threads at format 1.
  std::size_t window = 0;
};

class ChunkedCompressor final : public StreamCompressor {
 public:
  // Fails when the level is out of range for the codec.
  static Result<std::unique_ptr<ChunkedCompressor>> create(const ChunkedOptions& opts, ByteSink sink);
  // Abandons: queued chunks are dropped; waits only for those being compressed right now.
  ~ChunkedCompressor() override;

  Result<void> write(std::span<const std::byte> data) override;
  Result<void> finish() override;

  // After finish(): every frame of the archive in order (id = io::frame_id of its bytes,
  // computed on the pool beside the compression). An empty stream gives one empty frame
  // (plain_size 0), so the output is still a valid .gz / .zst.
  const std::vector<core::FrameInfo>& frames() const noexcept;
  std::uint64_t plain_size() const noexcept;

  struct Impl;

 private:
  explicit ChunkedCompressor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace carsync::io
