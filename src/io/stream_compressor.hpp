#pragma once
// A compressor between a byte stream and a sink: the archive writer feeds it the plain tar
// and it hands the compressed bytes, strictly in stream order, to the sink (the archive file
// and its hash). Implementations: parallel_gzip.hpp (tar.gz), zstd_stream.hpp (tar.zst).
#include "core/error.hpp"

#include <cstddef>
#include <functional>
#include <span>

namespace carsync::io {

// Receives compressed bytes; an error ends the stream (the compressor returns it from then on).
using ByteSink = std::function<Result<void>(std::span<const std::byte>)>;

class StreamCompressor {
 public:
  virtual ~StreamCompressor() = default;  // without finish(): abandoned, no more output
  // Takes `data`; its compressed form reaches the sink now or during a later call.
  virtual Result<void> write(std::span<const std::byte> data) = 0;
  // Compresses what is left and ends the stream: every byte has reached the sink.
  virtual Result<void> finish() = 0;
};

}  // namespace carsync::io
