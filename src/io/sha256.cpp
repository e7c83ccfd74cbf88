#include "io/sha256.hpp"

#include "core/hex.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace carsync::io {
namespace {

EVP_MD_CTX* evp(void* ctx) { return static_cast<EVP_MD_CTX*>(ctx); }

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  // Failure here means OpenSSL itself is broken (out of memory, no sha256): a bug path.
  if (!ctx_ || EVP_DigestInit_ex(evp(ctx_), EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(evp(ctx_));
    throw std::runtime_error("OpenSSL SHA-256 initialisation failed");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(evp(ctx_)); }

void Sha256::update(std::span<const std::byte> bytes) {
  if (EVP_DigestUpdate(evp(ctx_), bytes.data(), bytes.size()) != 1)
    throw std::runtime_error("OpenSSL SHA-256 update failed");
}

Sha256Digest Sha256::finish() {
  Sha256Digest d;
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(evp(ctx_), reinterpret_cast<unsigned char*>(d.data()), &len) != 1 || len != d.size())
    throw std::runtime_error("OpenSSL SHA-256 finalisation failed");
  return d;
}

std::string to_hex(const Sha256Digest& d) {
  return core::to_hex({reinterpret_cast<const unsigned char*>(d.data()), d.size()});
}

}  // namespace carsync::io
