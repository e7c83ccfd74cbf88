#include "core/signing_key.hpp"

#include "core/canonical_json.hpp"
#include "core/hex.hpp"
#include "core/json_text.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>

namespace carsync::core {
namespace {

// libsodium must be initialised once before its CSPRNG and its fastest code paths are used;
// a function-local static makes the first call thread-safe.
void ensure_sodium() {
  static const bool ready = sodium_init() >= 0;
  if (!ready) throw std::runtime_error("libsodium initialisation failed");
}

using Sha256Bytes = std::array<unsigned char, crypto_hash_sha256_BYTES>;

Sha256Bytes sha256(std::string_view data) {
  Sha256Bytes out{};
  crypto_hash_sha256(out.data(), reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return out;
}

constexpr std::size_t check_bytes = 4;
constexpr std::size_t seed_bytes = crypto_sign_SEEDBYTES;

std::string key_id_of(const std::array<unsigned char, 32>& key) {
  const auto h = sha256({reinterpret_cast<const char*>(key.data()), key.size()});
  return to_hex({h.data(), key_id_hex_digits / 2});
}

std::array<unsigned char, check_bytes> check_of(std::string_view id, const std::array<unsigned char, 32>& key) {
  std::string input = "carsync public key";
  input += id;
  input.append(reinterpret_cast<const char*>(key.data()), key.size());
  const auto h = sha256(input);
  std::array<unsigned char, check_bytes> out{};
  std::copy_n(h.begin(), check_bytes, out.begin());
  return out;
}

std::string encode(std::span<const unsigned char> bytes, int variant) {
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), variant);
  out.resize(std::strlen(out.c_str()));
  return out;
}

// Strict decode: no ignored characters, the whole text consumed.
std::optional<std::string> decode(std::string_view text, int variant) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(),
                        nullptr, &len, &end, variant) != 0 ||
      end != text.data() + text.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

Error bad_key(std::string what) { return make_error(errc::bad_config, std::move(what)); }

}  // namespace

bool valid_key_id(std::string_view text) noexcept {
  return text.size() == key_id_hex_digits &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

PublicKey PublicKey::from_bytes(const std::array<unsigned char, 32>& bytes) {
  PublicKey k;
  k.bytes_ = bytes;
  k.id_ = key_id_of(bytes);
  return k;
}

Result<PublicKey> PublicKey::parse(std::string_view text) {
  if (!text.starts_with(public_key_prefix))
    return bad_key("public key must start with \"" + std::string(public_key_prefix) + "\"");
  text.remove_prefix(public_key_prefix.size());
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return bad_key("public key has no ':' after its key id");
  const std::string_view id = text.substr(0, colon);
  if (!valid_key_id(id)) return bad_key("public key id must be 16 lowercase hex digits");
  const auto raw = decode(text.substr(colon + 1), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  if (!raw) return bad_key("public key is not base64url (no padding)");
  if (raw->size() != 32 + check_bytes)
    return bad_key("public key has " + std::to_string(raw->size()) + " bytes, expected " +
                   std::to_string(32 + check_bytes));
  std::array<unsigned char, 32> bytes{};
  std::memcpy(bytes.data(), raw->data(), bytes.size());
  const auto check = check_of(id, bytes);
  if (std::memcmp(check.data(), raw->data() + 32, check_bytes) != 0)
    return bad_key("public key check failed: mistyped?");
  PublicKey key = from_bytes(bytes);
  if (key.id() != id) return bad_key("public key id " + std::string(id) + " does not belong to the key");
  return key;
}

std::string PublicKey::text() const {
  std::array<unsigned char, 32 + check_bytes> raw{};
  std::copy(bytes_.begin(), bytes_.end(), raw.begin());
  const auto check = check_of(id_, bytes_);
  std::copy(check.begin(), check.end(), raw.begin() + 32);
  return std::string(public_key_prefix) + id_ + ":" + encode(raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

bool PublicKey::verify(std::string_view message, const Ed25519Signature& sig) const noexcept {
  try {
    ensure_sodium();
  } catch (...) {
    return false;
  }
  return crypto_sign_verify_detached(sig.data(), reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), bytes_.data()) == 0;
}

SecretKey SecretKey::generate() {
  ensure_sodium();
  std::array<unsigned char, seed_bytes> seed{};
  randombytes_buf(seed.data(), seed.size());
  SecretKey key;
  std::array<unsigned char, 32> pk{};
  crypto_sign_seed_keypair(pk.data(), key.secret_.data(), seed.data());
  sodium_memzero(seed.data(), seed.size());
  key.public_ = PublicKey::from_bytes(pk);
  return key;
}

Result<SecretKey> SecretKey::parse_file_text(std::string_view text) {
  if (auto unique = check_unique_keys(text); !unique) return bad_key("secret key file: " + unique.error().message);
  auto doc = parse_json(text);
  if (!doc) return bad_key("secret key file is not JSON: " + doc.error().message);
  const auto* obj = doc->if_object();
  if (!obj) return bad_key("secret key file is not a JSON object");
  const auto* type = obj->if_contains("type");
  if (!type || !type->is_string() || type->get_string() != secret_key_type)
    return bad_key("secret key file \"type\" must be \"" + std::string(secret_key_type) + "\"");
  const auto* seed_text = obj->if_contains("seed");
  if (!seed_text || !seed_text->is_string()) return bad_key("secret key file has no \"seed\" string");
  auto seed = decode(seed_text->get_string(), sodium_base64_VARIANT_ORIGINAL);
  if (!seed || seed->size() != seed_bytes) {
    if (seed) sodium_memzero(seed->data(), seed->size());
    return bad_key("secret key file \"seed\" must be base64 of 32 bytes");
  }
  const auto* pub_text = obj->if_contains("public_key");
  if (!pub_text || !pub_text->is_string()) {
    sodium_memzero(seed->data(), seed->size());
    return bad_key("secret key file has no \"public_key\" string");
  }
  ensure_sodium();
  SecretKey key;
  std::array<unsigned char, 32> pk{};
  crypto_sign_seed_keypair(pk.data(), key.secret_.data(), reinterpret_cast<const unsigned char*>(seed->data()));
  sodium_memzero(seed->data(), seed->size());
  key.public_ = PublicKey::from_bytes(pk);
  auto stated = PublicKey::parse(pub_text->get_string());
  if (!stated) return bad_key("secret key file \"public_key\": " + stated.error().message);
  if (!(*stated == key.public_))
    return bad_key("secret key file \"public_key\" (" + stated->id() + ") does not match its seed (" +
                   key.public_.id() + ")");
  return key;
}

std::string SecretKey::file_text() const {
  // libsodium's secret key is seed ‖ public key: the seed is its first 32 bytes.
  std::string seed = encode({secret_.data(), seed_bytes}, sodium_base64_VARIANT_ORIGINAL);
  std::string out = "{\n  \"type\": \"" + std::string(secret_key_type) + "\",\n  \"seed\": \"" + seed +
                    "\",\n  \"public_key\": \"" + public_.text() + "\"\n}\n";
  sodium_memzero(seed.data(), seed.size());
  return out;
}

Ed25519Signature SecretKey::sign(std::string_view message) const noexcept {
  Ed25519Signature sig{};
  crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       secret_.data());
  return sig;
}

SecretKey::~SecretKey() { sodium_memzero(secret_.data(), secret_.size()); }

std::string to_base64(std::span<const unsigned char> bytes) { return encode(bytes, sodium_base64_VARIANT_ORIGINAL); }

Result<std::string> from_base64(std::string_view text) {
  auto out = decode(text, sodium_base64_VARIANT_ORIGINAL);
  if (!out) return make_error(errc::invalid_record, "not standard base64 (padded, no whitespace)");
  return *out;
}

}  // namespace carsync::core
