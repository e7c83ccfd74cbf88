// The delta format's frame id: XXH3-128, big-endian, in the first half of the 32-byte id.
#include "io/frame_id.hpp"

#include "core/hex.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace carsync::io {
namespace {

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string hex(const core::ChunkId& id) {
  return core::to_hex({reinterpret_cast<const unsigned char*>(id.data()), id.size()});
}

TEST(FrameId, IsPinnedByTheFormat) {
  // Any change here changes every chunk id: consumers' bases would stop matching.
  EXPECT_EQ(hex(frame_id(bytes_of(""))), "99aa06d3014798d86001c324468d497f" + std::string(32, '0'));
  EXPECT_EQ(hex(frame_id(bytes_of("carsync"))).substr(32), std::string(32, '0'));
}

TEST(FrameId, PiecesGiveTheSameIdAsTheWhole) {
  std::string frame;
  for (std::uint32_t i = 0; i < 300000; ++i) frame.push_back(static_cast<char>(i * 7919u % 251u));
  const auto whole = frame_id(bytes_of(frame));
  for (std::size_t piece : {1u, 63u, 64u, 240u, 4096u, 65537u}) {
    FrameIdHasher h;
    for (std::size_t at = 0; at < frame.size(); at += piece)
      h.update(bytes_of(frame).subspan(at, std::min(piece, frame.size() - at)));
    EXPECT_EQ(h.finish(), whole) << piece;
  }
  std::string other = frame;
  other[150000] ^= 1;
  EXPECT_NE(frame_id(bytes_of(other)), whole);
}

}  // namespace
}  // namespace carsync::io
