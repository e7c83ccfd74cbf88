#pragma once
// Lowercase hex of bytes: digests, key ids. The one hex writer (io::to_hex uses it) and
// digest reader.
#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace carsync::core {

std::string to_hex(std::span<const unsigned char> bytes);

// A SHA-256 digest spelt as 64 lowercase hex digits (the one spelling carsync writes);
// nullopt for any other text, uppercase included.
std::optional<std::array<std::byte, 32>> parse_sha256_hex(std::string_view text) noexcept;

}  // namespace carsync::core
