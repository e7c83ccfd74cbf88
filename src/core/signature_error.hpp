#pragma once
// Why a consumer refused a record's signature: one enum, its own error category
// ("carsync.signature"), tested over every value. Each value is also the `reason` label of
// the signature-failure metric (to_string).
#include <boost/system/error_code.hpp>

#include <string_view>
#include <type_traits>

namespace carsync::core {

enum class signature_errc {
  unsigned_record = 1,    // no "signatures" (stripped, or a provider without signing)
  malformed_signature,    // "signatures"/"sequence"/"sync_key" of the wrong shape, sig not base64 of 64 bytes
  unsupported_algorithm,  // an entry's "alg" is not "ed25519"
  unknown_key,            // no entry is by a trusted key
  bad_signature,          // a trusted key's signature does not verify (tampered record)
  wrong_sync_key,         // signed for another sync key (or hkey)
  not_canonical,          // cannot be canonicalised: a number that does not round-trip, NaN, ...
  missing_archive_hash,   // signed, but without "archive_sha256": the bytes would be unbound
  rollback,               // sequence not newer than the last applied from that key (rollback, replay)
  equivocation,           // same key, same sequence, another CID: an alert
};

const boost::system::error_category& signature_category() noexcept;

inline boost::system::error_code make_error_code(signature_errc e) noexcept {
  return {static_cast<int>(e), signature_category()};
}

// "unsigned", "malformed", "algorithm", "unknown_key", "bad_signature", "wrong_sync_key",
// "not_canonical", "missing_archive_hash", "rollback", "equivocation".
std::string_view to_string(signature_errc e) noexcept;

}  // namespace carsync::core

template <>
struct boost::system::is_error_code_enum<carsync::core::signature_errc> : std::true_type {};
