#include "io/sha256.hpp"

#include <gtest/gtest.h>

#include <string_view>

namespace carsync::io {
namespace {

std::string hex_of(std::string_view text, std::size_t split) {
  Sha256 h;
  h.update(std::as_bytes(std::span(text.data(), split)));
  h.update(std::as_bytes(std::span(text.data() + split, text.size() - split)));
  return to_hex(h.finish());
}

// FIPS 180-2 vectors; the split proves updates are incremental.
TEST(Sha256Test, KnownVectorsInAnyPieces) {
  EXPECT_EQ(hex_of("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex_of("abc", 1), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 20),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

}  // namespace
}  // namespace carsync::io
