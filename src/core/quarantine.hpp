#pragma once
// Quarantine of a record the consumer failed to apply (spec §8.7): one file per
// (CID, manifest) slot with exponential backoff. Hashing is the caller's job (core has no
// crypto): it SHA-256s quarantine_digest_input() and passes the 64 lowercase hex digits.
//
// carsync differs from the reference in two ways: the backoff exponent goes to 6, so the
// 3600 s cap is reached (§12 item 18), and commit and container-stop failures are
// quarantined as well (§12 items 10 and 17).
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace carsync::core {

inline constexpr double quarantine_base_backoff_s = 60;
inline constexpr double quarantine_max_backoff_s = 3600;

// The manifest a record contributes to its slot: record.manifest, falsy -> {}.
boost::json::value quarantine_manifest(const boost::json::value& record);

// Canonical JSON (§8.7) of {"cid": cid, "manifest": manifest}; the text to SHA-256.
std::string quarantine_digest_input(const boost::json::value& cid, const boost::json::value& manifest);
// The same for a record: its cid (null when absent) and quarantine_manifest(record).
std::string quarantine_digest_input(const boost::json::value& record);

// str(cid) with every non-alphanumeric character replaced by '_', at most 32 characters;
// "no_cid" for a falsy cid.
std::string quarantine_safe_cid(const boost::json::value& cid);

// "<safe_cid>__<first 16 hex digits of digest_hex>.json"
std::string quarantine_file_name(const boost::json::value& cid, std::string_view digest_hex);

// Seconds to wait after the n-th consecutive failure: min(3600, 60 * 2^min(n-1, 6)).
double quarantine_backoff(std::int64_t failure_count) noexcept;

struct QuarantineFailure {
  boost::json::value cid;
  boost::json::value version;
  std::string manifest_digest;  // 64 hex
  std::string stage;
  std::string error;
  double now = 0;
};

// The record to write after a failure, continuing `previous` (the parsed previous file, or
// nullptr; anything unusable counts as none): failure_count + 1, first_seen preserved.
boost::json::object next_quarantine_record(const boost::json::value* previous, const QuarantineFailure& f);

// True when `record` is an object whose numeric next_retry_after is after now, unless now
// is before its last_failed (the wall clock was stepped back since: retry now).
bool quarantine_active(const boost::json::value& record, double now) noexcept;

}  // namespace carsync::core
