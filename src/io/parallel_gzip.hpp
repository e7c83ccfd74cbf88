#pragma once
// gzip on every core, as pigz does it: the input is cut into fixed blocks, each compressed
// as raw deflate primed with the 32 KiB before it (so matches reach back as in one stream)
// and ended on a byte boundary with an empty stored block (Z_SYNC_FLUSH), the last with
// Z_FINISH. The blocks concatenate into ONE deflate stream inside ONE gzip member, whose
// CRC-32 is combined from the blocks' (crc32_combine): gzip, GNU tar and Python's tarfile
// read it as any .gz. Each block's bytes depend only on its input, the 32 KiB before it and
// the level, so the output is the same whatever the number of threads. A block whose bytes
// are already compressed or random (looks_incompressible) is stored rather than deflated.
//
// Memory is bounded: at most `window` blocks (input and output) are in flight
// (io/ordered_window.hpp, shared with chunked_compressor). When the window is full the
// writing thread compresses queued blocks itself while it waits, so a busy pool slows the
// build but cannot stall it; without a pool everything runs inline.
#include "io/ordered_window.hpp"
#include "io/stream_compressor.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace carsync::io {

class ComputePool;

// Whether deflate would spend its time for nothing on `block`: bytes spread so evenly (an
// order-0 entropy of at least 7.995 bits per byte) that they are compressed or random.
// gzip costs ~50 MB/s a core on such data for no gain; zstd notices the same and stores it
// raw. The threshold sits above what any repeat within deflate's 32 KiB window can show: a
// block repeating a random unit of n bytes has about 8 - 184/n bits per byte, below 7.995
// up to n = 32 KiB, so content deflate could shrink is always deflated. Blocks under 64 KiB
// are never judged (their estimate is too noisy).
bool looks_incompressible(std::span<const std::byte> block) noexcept;

// A gzip member's framing as carsync writes it (RFC 1952), shared with the chunked archive's
// members: the 10-byte header (no name, MTIME 0 so the bytes depend on the input only, XFL
// as gzip sets it for `level`, OS Unix) and the 8-byte trailer (CRC-32, size mod 2^32).
std::array<std::uint8_t, 10> gzip_header(int level) noexcept;
std::array<std::uint8_t, 8> gzip_trailer(std::uint32_t crc, std::uint64_t size) noexcept;

// Raw deflate (RFC 1951, no zlib or gzip framing) of `data`, appended to `out`: stored
// (level 0) when looks_incompressible, primed with `dictionary` (the bytes before `data`) if
// any, ended with Z_FINISH when `finish` or else with a sync flush (a byte-aligned end that
// the next block's stream may follow). The bytes depend on the inputs alone. Returns an
// error text, empty on success. Both gzip writers build on it: ParallelGzip's blocks and
// the chunked archive's members.
std::string deflate_raw(int level, std::span<const std::byte> dictionary, std::span<const std::byte> data, bool finish,
                        std::vector<std::byte>& out);

struct ParallelGzipOptions {
  int level = 6;                          // zlib level, 0-9
  std::size_t block_size = 128 * 1024;    // input bytes per block (at least 32 KiB)
  ComputePool* compute = nullptr;         // nullptr: every block on the caller's thread
  // Blocks in flight at most; 0: 4 x the pool's threads + 4 (1 without a pool): ~3.5 MiB
  // with 2 threads, and slack enough that a writer woken late still finds the pool busy.
  std::size_t window = 0;
};

class ParallelGzip final : public StreamCompressor {
 public:
  ParallelGzip(const ParallelGzipOptions& opts, ByteSink sink);
  // Abandons: queued blocks are dropped, waits only for those being compressed right now.
  ~ParallelGzip() override;
  ParallelGzip(const ParallelGzip&) = delete;
  ParallelGzip& operator=(const ParallelGzip&) = delete;

  Result<void> write(std::span<const std::byte> data) override;
  Result<void> finish() override;

  struct Block;

 private:
  Result<void> submit(bool last);
  Result<void> emit(const Block& b);
  Result<void> output(std::span<const std::byte> bytes);
  Error fail(Error e);

  int level_;
  ByteSink sink_;
  std::size_t block_size_;
  std::vector<std::byte> next_;  // [32 KiB dictionary | data of the block being filled]
  std::size_t next_dict_ = 0;
  std::uint32_t crc_;
  std::uint64_t total_in_ = 0;
  bool header_sent_ = false;
  bool finished_ = false;
  std::optional<Error> failed_;
  // Last: destroyed first, so no block is being compressed once the rest goes.
  OrderedWindow window_;
};

}  // namespace carsync::io
