#pragma once
// Ed25519 keys (libsodium) and their text forms.
//
// Public key text, one line:  "carsync-ed25519:<key id>:<base64url(key ‖ check)>"
//   key id  16 lowercase hex digits: the first 8 bytes of SHA-256(key); records name the
//           signing key by it and people can tell keys apart by it;
//   check   the first 4 bytes of SHA-256("carsync public key" ‖ key id ‖ key): a mistyped
//           or truncated key (or a key id pasted beside the wrong key) is refused.
// base64url without padding, so the text is one word in JSON, a shell and a URL.
//
// Secret key file (`carsync keys generate`), JSON:
//   {"type": "carsync-ed25519-secret-key", "seed": "<base64 of the 32-byte seed>",
//    "public_key": "<public key text>"}
// The public key is derived from the seed when read; a file whose "public_key" disagrees
// is refused. The file itself is written and read by io/key_file.hpp.
#include "core/error.hpp"

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace carsync::core {

inline constexpr std::string_view public_key_prefix = "carsync-ed25519:";
inline constexpr std::string_view secret_key_type = "carsync-ed25519-secret-key";
inline constexpr std::size_t key_id_hex_digits = 16;

using Ed25519Signature = std::array<unsigned char, 64>;

class PublicKey {
 public:
  // Error (errc::bad_config) saying which part is wrong: prefix, key id, base64, length or
  // check ("public key check failed: mistyped?").
  static Result<PublicKey> parse(std::string_view text);
  static PublicKey from_bytes(const std::array<unsigned char, 32>& bytes);

  const std::array<unsigned char, 32>& bytes() const noexcept { return bytes_; }
  const std::string& id() const noexcept { return id_; }
  std::string text() const;

  // Ed25519 verification of `sig` over `message` (libsodium, strict encoding checks).
  bool verify(std::string_view message, const Ed25519Signature& sig) const noexcept;

  friend bool operator==(const PublicKey& a, const PublicKey& b) noexcept { return a.bytes_ == b.bytes_; }

 private:
  std::array<unsigned char, 32> bytes_{};
  std::string id_;
};

// True when `text` looks like a key id (16 lowercase hex digits).
bool valid_key_id(std::string_view text) noexcept;

class SecretKey {
 public:
  // A fresh key from libsodium's CSPRNG.
  static SecretKey generate();
  // The file's JSON text; Error (errc::bad_config) naming what is wrong (not JSON, wrong
  // type, seed not base64 of 32 bytes, public_key disagreeing with the seed).
  static Result<SecretKey> parse_file_text(std::string_view text);
  // The file's JSON text (ends with a newline).
  std::string file_text() const;

  const PublicKey& public_key() const noexcept { return public_; }
  Ed25519Signature sign(std::string_view message) const noexcept;

  SecretKey(const SecretKey&) = default;
  SecretKey& operator=(const SecretKey&) = default;
  ~SecretKey();  // wipes the secret (sodium_memzero)

 private:
  SecretKey() = default;
  std::array<unsigned char, 64> secret_{};  // libsodium's seed ‖ public key form
  PublicKey public_;
};

// Standard base64 (with padding) as the record's "sig" uses it; decode refuses anything
// else (whitespace, url alphabet, bad padding, non-zero trailing bits).
std::string to_base64(std::span<const unsigned char> bytes);
Result<std::string> from_base64(std::string_view text);

}  // namespace carsync::core
