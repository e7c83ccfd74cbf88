#pragma once
// Lowercase hex of bytes: digests, key ids. The one hex writer (io::to_hex uses it).
#include <span>
#include <string>

namespace carsync::core {

std::string to_hex(std::span<const unsigned char> bytes);

}  // namespace carsync::core
