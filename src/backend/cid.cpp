#include "backend/cid.hpp"

#include <algorithm>
#include <cstdint>

namespace carsync::backend {

namespace {

constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz234567";

// CIDv1 prefix: version 1, codec raw (0x55), multihash sha2-256 (0x12) of 32 bytes.
constexpr std::array<std::byte, 4> kCidPrefix{std::byte{0x01}, std::byte{0x55}, std::byte{0x12},
                                              std::byte{0x20}};

int base32_value(char c) {
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= '2' && c <= '7') return c - '2' + 26;
  return -1;
}

}  // namespace

std::string base32_lower(std::span<const std::byte> bytes) {
  std::string out;
  out.reserve((bytes.size() * 8 + 4) / 5);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (std::byte b : bytes) {
    buffer = (buffer << 8) | std::to_integer<std::uint32_t>(b);
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out.push_back(kAlphabet[(buffer >> bits) & 0x1f]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (5 - bits)) & 0x1f]);
  return out;
}

Result<std::string> base32_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 5 / 8);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    int v = base32_value(c);
    if (v < 0) return make_error(errc::invalid_record, "invalid base32 character");
    buffer = (buffer << 5) | static_cast<std::uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  // Unpadded RFC 4648 leaves fewer than 5 spare bits, all zero; anything else is not the
  // encoding of any byte string, and accepting it would give one value several spellings.
  if (bits >= 5 || (buffer & ((1u << bits) - 1)) != 0)
    return make_error(errc::invalid_record, "invalid base32 length or trailing bits");
  return out;
}

std::string cid_from_digest(const Sha256Digest& d) {
  std::array<std::byte, kCidPrefix.size() + 32> bytes{};
  std::copy(kCidPrefix.begin(), kCidPrefix.end(), bytes.begin());
  std::copy(d.begin(), d.end(), bytes.begin() + kCidPrefix.size());
  return "b" + base32_lower(bytes);
}

Result<Sha256Digest> digest_from_cid(std::string_view cid) {
  auto bad = [&] { return make_error(errc::invalid_record, "not a CIDv1 raw sha2-256: " + std::string(cid)); };
  if (cid.empty() || cid.front() != 'b') return bad();
  auto raw = base32_decode(cid.substr(1));
  if (!raw) return bad();
  const std::string& bytes = *raw;
  if (bytes.size() != kCidPrefix.size() + 32) return bad();
  for (std::size_t i = 0; i < kCidPrefix.size(); ++i)
    if (static_cast<std::byte>(bytes[i]) != kCidPrefix[i]) return bad();
  Sha256Digest d;
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<std::byte>(bytes[kCidPrefix.size() + i]);
  return d;
}

}  // namespace carsync::backend
