#pragma once
// The id of a delta frame (core/delta_index.hpp): XXH3-128 of the frame's compressed bytes,
// big-endian, in the first 16 bytes of the 32-byte ChunkId (the rest zero).
//
// Why not SHA-256: the id names content for deduplication; integrity rests on SHA-256
// elsewhere (every pack against the record's digest before its frames are used, and the
// whole reassembled archive against the record's archive_sha256). A second SHA-256 pass
// over every archive cost the provider ~0.4 s per 700 MB (27 % of its CPU against 16 %
// without it); XXH3 costs ~0.03 s. A collision, even a crafted one, can only make a
// reassembly fail its archive hash, and the consumer then fetches the full archive.
#include "core/delta_index.hpp"

#include <cstddef>
#include <span>

namespace carsync::io {

core::ChunkId frame_id(std::span<const std::byte> frame) noexcept;

// The same over a frame read in pieces.
class FrameIdHasher {
 public:
  FrameIdHasher() noexcept;
  ~FrameIdHasher();
  FrameIdHasher(const FrameIdHasher&) = delete;
  FrameIdHasher& operator=(const FrameIdHasher&) = delete;
  void update(std::span<const std::byte> bytes) noexcept;
  core::ChunkId finish() noexcept;

 private:
  void* state_;  // XXH3_state_t, aligned as xxhash needs
};

}  // namespace carsync::io
