#pragma once
// Delta transfer, format 1 (README "Delta transfer"): the archive is a concatenation of
// independent frames (gzip members or zstd frames), one per content-defined chunk of the
// plain tar. Each publish uploads, beside the archive, an INDEX (every frame of the archive
// in order, and where a consumer can fetch it) and a PACK (the frames the previous version
// lacked, concatenated). A consumer holding an earlier archive (its base) fetches the index,
// the packs holding the frames it lacks, and reassembles the new archive byte for byte.
//
// A chunk is named by the XXH3-128 of its frame (the compressed bytes; io/frame_id.hpp, in
// the first 16 bytes of the id): frames are deterministic for a given codec and level, so an
// unchanged chunk keeps its id, and a frame fetched from a pack is checked by hashing it,
// without decompressing it. Integrity rests on SHA-256: of every pack (the record names it)
// and of the whole reassembled archive.
//
// Index file (little-endian; fixed-size fields so that parsing is bounds checks only):
//   header (128 bytes):
//     magic "CSDELTA\0" | u32 format (1) | u32 codec (1 gzip, 2 zstd) |
//     u32 min | u32 avg | u32 max (chunker) | u32 reserved (0) |
//     u64 serial | u64 chunk count | u64 archive size | u64 plain size |
//     32 bytes archive SHA-256 | 32 bytes zero (reserved)
//   then per chunk (64 bytes): 32 bytes id | u32 plain size | u32 frame size |
//     u64 pack serial | u64 offset in that pack | u64 reserved (0)
// Every frame of the archive, in archive order: the frames' sizes add up to the archive's,
// and frame i starts where frame i-1 ends. `pack serial`/`offset` say which version's pack
// holds the frame and where; a chunk occurring twice has identical entries.
//
// Sans-I/O: building, parsing and validating indexes, and the plans on both sides.
#include "core/cdc_chunker.hpp"
#include "core/delta_error.hpp"
#include "core/error.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace carsync::core {

inline constexpr std::uint32_t delta_format_version = 1;
inline constexpr std::size_t delta_index_header_bytes = 128;
inline constexpr std::size_t delta_index_entry_bytes = 64;
// An index names at most this many chunks (~8 TiB of plain tar at format 1's 1 MiB maximum
// chunk, 256 MiB of index): a larger count is refused before anything is allocated.
inline constexpr std::uint64_t max_delta_chunks = 1u << 22;

using Digest32 = std::array<std::byte, 32>;  // SHA-256; io::Sha256Digest's type
using ChunkId = Digest32;

enum class FrameCodec : std::uint32_t { gzip = 1, zstd = 2 };

// One frame of an archive as the compressor produced it, in archive order.
struct FrameInfo {
  ChunkId id{};                  // io::frame_id of the frame's bytes
  std::uint32_t plain_size = 0;  // bytes of tar in the chunk
  std::uint32_t frame_size = 0;  // bytes of the compressed frame
  friend bool operator==(const FrameInfo&, const FrameInfo&) = default;
};

struct ChunkEntry {
  ChunkId id{};
  std::uint32_t plain_size = 0;
  std::uint32_t frame_size = 0;
  std::uint64_t pack_serial = 0;  // the version whose pack holds this frame
  std::uint64_t pack_offset = 0;  // where in that pack
  friend bool operator==(const ChunkEntry&, const ChunkEntry&) = default;
};

struct DeltaIndex {
  std::uint32_t format = delta_format_version;
  FrameCodec codec = FrameCodec::gzip;
  ChunkerParams chunker = chunker_v1;
  std::uint64_t serial = 0;  // this version's place in the provider's chain (1, 2, ...)
  std::uint64_t archive_size = 0;
  std::uint64_t plain_size = 0;
  Digest32 archive_sha256{};
  std::vector<ChunkEntry> chunks;  // archive order
  friend bool operator==(const DeltaIndex&, const DeltaIndex&) = default;
};

std::vector<std::byte> encode_index(const DeltaIndex& index);

// Parses and validates everything the index alone can show, naming the first fault:
// magic, format (unknown -> errc::unsupported), codec, chunker params, count vs bytes, every
// size (a frame of 0 bytes, a plain size above the chunker's maximum, a frame larger than
// its codec's bound for its plain size, sums that overflow or differ from the header's),
// reserved fields, pack serials above the index's own, and a chunk id whose entries differ.
// Errors (Error::code in core/delta_error.hpp's category): delta_errc::malformed_index,
// delta_errc::unsupported_format (a format version from the future).
Result<DeltaIndex> parse_index(std::span<const std::byte> bytes);

// The most a frame of `plain` bytes may take in `codec` (its worst-case bound plus framing).
std::uint64_t max_frame_size(FrameCodec codec, std::uint64_t plain) noexcept;

// ---- provider ----------------------------------------------------------------------------

// Where a frame of the new archive goes into the new pack.
struct PackPiece {
  std::uint64_t archive_offset = 0;  // of the frame in the new archive
  std::uint32_t size = 0;
};

struct NewVersion {
  DeltaIndex index;               // the new archive's index (serial = the new serial)
  std::vector<PackPiece> pack;    // frames to copy from the archive into the pack, in order
  std::uint64_t pack_size = 0;    // sum of pack[].size
};

// The index and pack of a new version `serial` built from `frames`. A frame the previous
// version's index holds keeps its location there (a pack of an earlier version); any other
// goes into this version's pack, once (a chunk occurring twice is stored once). Without a
// previous index (first publish, or the provider lost it) every frame is new. `archive`
// fields (size, plain size, digest, codec) are copied into the index as given.
NewVersion plan_version(std::span<const FrameInfo> frames, const DeltaIndex* previous,
                        std::uint64_t serial, FrameCodec codec, const Digest32& archive_sha256);

// ---- consumer ----------------------------------------------------------------------------

// A pack the record names (core/delta_record.hpp).
struct PackRef {
  std::uint64_t serial = 0;
  std::uint64_t size = 0;
  Digest32 sha256{};
  std::string cid;
};

enum class FetchMode { delta, full };

// Why a consumer fetches the full archive instead of packs (also "delta" when it does not).
enum class FullReason {
  none,             // delta
  no_base,          // nothing applied yet through carsync, or the base is unusable
  other_chain,      // the base's codec or chunker differs from the new index's
  pack_missing,     // a lacking frame lives in a pack the record no longer names (K exceeded)
  no_pack,          // the provider made no pack for this version (its new frames reached
                    // half the archive): the archive is the way to fetch it
  not_cheaper,      // the packs would cost as much as the archive
};
std::string_view to_string(FullReason r) noexcept;

// Where each frame of the new archive comes from.
struct FrameSource {
  bool from_base = false;
  std::uint64_t offset = 0;       // in the base archive, or in the pack
  std::uint64_t pack_serial = 0;  // when !from_base
};

struct FetchPlan {
  FetchMode mode = FetchMode::full;
  FullReason reason = FullReason::no_base;
  std::vector<PackRef> packs;          // to fetch, ascending serial (delta only)
  std::uint64_t fetch_bytes = 0;       // sum of packs' sizes (delta only)
  std::vector<FrameSource> sources;    // one per next.chunks entry (delta only)
};

// Which frames of `next` the base lacks and the packs that hold them. Full when there is no
// base, when a lacking frame's pack is not among `packs`, or when the packs' bytes reach
// `archive_size` (the archive is then as cheap, and needs no base). `base` may be null.
FetchPlan plan_fetch(const DeltaIndex* base, const DeltaIndex& next, std::span<const PackRef> packs);

}  // namespace carsync::core
