#pragma once
// Content-defined chunking of the plain tar stream (FastCDC, Xia et al. 2016/2020): a Gear
// rolling hash, cut where its top bits are zero, with normalised chunking (a harder mask
// before the average size, an easier one after) so chunk sizes cluster around the average.
// The hash at a byte depends only on the 64 bytes ending there, so after an insertion or a
// deletion the cuts fall again where they fell before, and only the chunks around the change
// differ. The Gear table and the sizes are fixed by the delta format version (a different
// table would cut differently and make every chunk look new).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace carsync::core {

struct ChunkerParams {
  std::uint32_t min_size = 0;  // no cut before this many bytes (the hash is not even computed)
  std::uint32_t avg_size = 0;  // a power of two: the normalisation point
  std::uint32_t max_size = 0;  // a cut here whatever the hash says
  friend bool operator==(const ChunkerParams&, const ChunkerParams&) = default;
};

// Delta format 1: 64 KiB / 256 KiB / 1 MiB.
inline constexpr ChunkerParams chunker_v1{64 * 1024, 256 * 1024, 1024 * 1024};

// The 256 64-bit Gear values of format 1 (SplitMix64 from a fixed seed; pinned by tests).
const std::array<std::uint64_t, 256>& gear_table_v1() noexcept;

// Whether `p` is usable: 64 <= min < avg < max <= 16 MiB, avg a power of two.
bool valid_chunker_params(const ChunkerParams& p) noexcept;

// A streaming chunker: feed the stream in pieces of any size; cuts come out at the same
// stream offsets whatever the pieces.
class CdcChunker {
 public:
  explicit CdcChunker(ChunkerParams p = chunker_v1) noexcept;

  // Scans `data` (the stream's next bytes) for the end of the current chunk. Returns the
  // number of bytes of `data` that complete it (the cut falls after them; the next chunk
  // starts at data[n]), or nullopt when the chunk goes on past `data` (all of it consumed).
  std::optional<std::size_t> find_cut(std::span<const std::byte> data) noexcept;

  // Bytes of the current (unfinished) chunk seen so far.
  std::uint64_t pending() const noexcept { return length_; }

 private:
  ChunkerParams p_;
  std::uint64_t mask_small_;  // before avg_size: harder (more bits)
  std::uint64_t mask_large_;  // after: easier
  std::uint64_t hash_ = 0;
  std::uint64_t length_ = 0;
};

// The chunk lengths of `data` taken as a whole stream, in order (the last may be shorter than
// min_size). For tests and tools; the archive writer feeds a CdcChunker as bytes arrive.
std::vector<std::uint32_t> chunk_lengths(std::span<const std::byte> data, ChunkerParams p = chunker_v1);

}  // namespace carsync::core
