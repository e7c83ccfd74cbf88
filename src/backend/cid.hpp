#pragma once
// CIDv1 for raw blobs: multibase 'b' (RFC 4648 base32, lowercase, no padding) of
// <0x01 version><0x55 raw codec><0x12 sha2-256><0x20 length><32-byte digest>.
#include "core/error.hpp"
#include "io/sha256.hpp"

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace carsync::backend {

using io::Sha256;
using io::Sha256Digest;

std::string cid_from_digest(const Sha256Digest& d);
// Parses a CID produced by cid_from_digest; anything else is errc::invalid_record.
Result<Sha256Digest> digest_from_cid(std::string_view cid);

std::string base32_lower(std::span<const std::byte> bytes);
Result<std::string> base32_decode(std::string_view text);

}  // namespace carsync::backend
