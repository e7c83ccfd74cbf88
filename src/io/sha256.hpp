#pragma once
// Incremental SHA-256 (OpenSSL EVP): archives are hashed while they are written and while
// they are read, so no step needs a second pass over their bytes.
#include <array>
#include <cstddef>
#include <span>
#include <string>

namespace carsync::io {

using Sha256Digest = std::array<std::byte, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::span<const std::byte> bytes);
  Sha256Digest finish();

 private:
  void* ctx_;
};

// Lowercase hex of a digest (64 characters).
std::string to_hex(const Sha256Digest& d);

}  // namespace carsync::io
