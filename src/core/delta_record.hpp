#pragma once
// The record's "delta" field (delta format 1), an extra field the reference ignores:
//
//   "delta": {"format": 1, "serial": S,
//             "index": {"cid": C, "size": N, "sha256": HEX},
//             "packs": [{"serial": S', "cid": C, "size": N, "sha256": HEX}, ...]}
//
// `index` is this version's index (core/delta_index.hpp); `packs` are the packs of the last
// K versions that have one, ascending serial (a version whose frames were mostly new has no
// pack: its frames are fetched with the full archive). A record without the field, or with
// one this build cannot read, is applied from its full archive as before.
#include "core/delta_error.hpp"
#include "core/delta_index.hpp"
#include "core/error.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace carsync::core {

// At most this many packs in a record (a larger K is refused by the configuration).
inline constexpr std::size_t max_record_packs = 64;

struct DeltaObject {
  std::string cid;
  std::uint64_t size = 0;
  Digest32 sha256{};
  friend bool operator==(const DeltaObject&, const DeltaObject&) = default;
};

struct RecordDelta {
  std::uint32_t format = delta_format_version;
  std::uint64_t serial = 0;
  DeltaObject index;
  std::vector<PackRef> packs;  // ascending serial, each <= serial
};

boost::json::object to_json(const RecordDelta& d);
// One object of the field ({"cid","size","sha256"}), as history entries keep them too.
boost::json::object to_json(const DeltaObject& o);
Result<DeltaObject> delta_object_from_json(const boost::json::value& v);

// The record's field: nullopt when absent; an error (delta_errc::malformed_field or
// unsupported_format, naming the part) when present but unusable. Checks shapes and ranges:
// format, serial >= 1, sizes within 2^53, sha256 as 64 lowercase hex, CIDs non-empty strings
// of at most 256 bytes, packs strictly ascending by serial, none above `serial`, at most
// max_record_packs.
Result<std::optional<RecordDelta>> record_delta(const boost::json::value& record);

}  // namespace carsync::core
