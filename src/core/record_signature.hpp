#pragma once
// Signed sync records: what a provider adds, what a consumer checks before it downloads.
//
// A signed record carries three extra fields (the reference ignores unknown fields, so a
// reference consumer still applies it):
//   "sync_key":   the key it was published under;
//   "sequence":   the provider's monotonic sequence, an integer in [1, 2^53];
//   "signatures": [{"alg": "ed25519", "key_id": "<16 hex>", "sig": "<base64, 64 bytes>"}, ...]
// Each signature covers
//   "carsync-record-signature-v1\n" ‖ hkey ‖ "\n" ‖ sync key ‖ "\n" ‖ RFC 8785 text of the
//   record without "signatures"
// so every field (metadata, manifest, archive_sha256, sequence, any future one) is covered,
// and a record cannot be replayed under another key. A record is signed only with its
// "archive_sha256": the consumer then verifies the download against it while it streams.
#include "core/canonical_json.hpp"
#include "core/history.hpp"
#include "core/signature_error.hpp"
#include "core/signing_key.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::core {

inline constexpr std::string_view signature_domain = "carsync-record-signature-v1";
inline constexpr std::string_view signature_algorithm = "ed25519";
inline constexpr std::int64_t max_signed_sequence = std::int64_t{1} << 53;  // round-trips a double

// The bytes a signature covers (see above). Error when the record cannot be canonicalised.
Result<std::string> signed_message(const boost::json::object& record, std::string_view hkey,
                                   std::string_view sync_key);

// The sequence a provider signs next: greater than `last` (the last it signed; 0: none
// known) and at least the wall clock in milliseconds, so that it keeps increasing when a
// provider loses its state (reinstall) or two providers share a key.
std::int64_t next_sequence(std::int64_t last, double now) noexcept;

// Adds "sync_key", "sequence" and one signature per key to `record` (replacing any
// present). Error when the record has no "archive_sha256", when it cannot be
// canonicalised, or `keys` is empty.
Result<void> sign_record(boost::json::object& record, std::string_view hkey, std::string_view sync_key,
                         std::int64_t sequence, std::span<const SecretKey> keys);

// What a consumer last accepted from each key, carried as "trust" by every document of
// state/current_apply.json: {"keys": {"<key id>": {"sequence": N, "cid": "<cid>"}, ...}}
struct TrustState {
  struct Accepted {
    std::int64_t sequence = 0;
    std::string cid;
    friend bool operator==(const Accepted&, const Accepted&) = default;
  };
  std::map<std::string, Accepted> keys;  // by key id

  boost::json::object to_json() const;
  // Error (errc::invalid_record) when the document has the wrong shape; entries with a
  // malformed key id or sequence make it wrong too (the caller then rebuilds from history).
  static Result<TrustState> from_json(const boost::json::value& doc);
  friend bool operator==(const TrustState&, const TrustState&) = default;
};

// The result of checking one record. `error` unset: accepted, by `key_ids` (every trusted
// key whose signature verified) at `sequence`.
struct SignatureVerdict {
  std::optional<signature_errc> error;
  std::string reason;  // for people: names the key id, sequences, CIDs, field as relevant
  std::vector<std::string> key_ids;
  std::int64_t sequence = 0;
  bool alert() const noexcept { return error == signature_errc::equivocation; }
};

// Checks, in order: signed at all; every entry well-formed ("alg" ed25519, key id, sig);
// "sequence" and "sync_key" well-formed; sync_key equals ours; "archive_sha256" present;
// canonicalisable; at least one entry by a trusted key, and every entry by a trusted key
// verifies (entries by other keys are ignored: a provider rotating keys signs with both);
// then per verifying key against `state`: a lower sequence is a rollback, the same sequence
// with another CID an equivocation, the same sequence with the same CID the record accepted
// before (a retry after a crash between accepting and applying).
SignatureVerdict verify_record(const boost::json::value& record, std::string_view hkey, std::string_view sync_key,
                               std::span<const PublicKey> trusted, const TrustState& state);

// `state` after accepting `verdict` (which must have no error) for the record's `cid`.
TrustState accept(TrustState state, const SignatureVerdict& verdict, std::string_view cid);

// History entries of a signed record carry "signed_sequence" and "signed_by" (the key ids
// that verified, consumer; that signed, provider). ("sequence" in a history entry is the
// history's own write order, core/history.hpp.)
void put_signature_fields(boost::json::object& history_entry, std::int64_t sequence,
                          std::span<const std::string> key_ids);

// Rebuilt from received history entries (any order) when current_apply.json (or its
// "trust") is missing or corrupt: per key id the highest "signed_sequence" of an entry whose "signed_by" lists it,
// with that entry's "cid". Entries without those fields (unsigned, or written by the
// reference) are skipped.
TrustState trust_state_from_history(std::span<const HistoryEntry> entries);

// The highest "signed_sequence" among sent history entries (0: none): a provider's `last`
// for next_sequence after a restart.
std::int64_t last_signed_sequence(std::span<const HistoryEntry> entries) noexcept;

}  // namespace carsync::core
