#include "io/frame_id.hpp"

// Header-only: the hash is inlined here, and nothing links libxxhash.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace carsync::io {

namespace {

core::ChunkId id_of(XXH128_hash_t h) noexcept {
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, h);
  core::ChunkId id{};
  for (std::size_t i = 0; i < sizeof canonical.digest; ++i) id[i] = static_cast<std::byte>(canonical.digest[i]);
  return id;
}

}  // namespace

core::ChunkId frame_id(std::span<const std::byte> frame) noexcept { return id_of(XXH3_128bits(frame.data(), frame.size())); }

// XXH3_createState allocates with the alignment XXH3_state_t needs (64 bytes).
FrameIdHasher::FrameIdHasher() noexcept : state_(XXH3_createState()) {
  if (state_) XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_));
}

FrameIdHasher::~FrameIdHasher() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void FrameIdHasher::update(std::span<const std::byte> bytes) noexcept {
  if (state_) XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), bytes.data(), bytes.size());
}

// Without a state (out of memory) the id is all zero, which no frame's id equals in practice:
// the frame is then refused as a mismatch and the consumer fetches the full archive.
core::ChunkId FrameIdHasher::finish() noexcept {
  return state_ ? id_of(XXH3_128bits_digest(static_cast<XXH3_state_t*>(state_))) : core::ChunkId{};
}

}  // namespace carsync::io
