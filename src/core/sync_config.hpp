#pragma once
// Parsing of the SYNC block (spec §3.1) and of the reference's loose scalar conventions,
// plus the helpers the node configuration parser shares with it (unknown-key suggestions,
// instance ids) and the one-line answer to "why is this instance not syncing?".
#include "carsync/config.hpp"

#include <boost/json/value.hpp>

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace carsync::core {

// Parses a SYNC block. A missing or non-object block is {} (disabled). When the block is
// enabled but KEY, TYPE or a carsync key is invalid, the returned config has enabled=false,
// `error` says why and `error_field` is the key's path ("SYNC.KEY"). Unknown keys are kept
// out of the config and become warnings naming the closest known key.
struct ParsedSync {
  SyncConfig config;
  std::optional<std::string> error;
  std::string error_field;
};
ParsedSync parse_sync_config(const boost::json::value* sync_block);

// §3.1 scalar conventions, exposed for the tests of each.
double parse_poll_interval(const boost::json::value* v);         // <1 -> 1, non-numeric -> 10
double parse_hsync_poll_interval(const boost::json::value* v);   // <10 -> 10, non-numeric -> 60
// Booleans as-is; "1,true,yes,on" / "0,false,no,off,''" (trimmed, any case); ints 0/1.
// Anything else is nullopt (callers fall back to false and warn).
std::optional<bool> parse_flag(const boost::json::value* v);

// Why `inst` is not syncing: its configuration error, "no SYNC block", "SYNC.ENABLED is
// false" or "SYNC.ENABLED is absent" (with the warning that explains it, e.g. a near-miss
// key). "" when it is enabled and valid.
std::string disabled_reason(const InstanceConfig& inst);

// Case-insensitive optimal-string-alignment distance (Levenshtein plus adjacent
// transpositions): "volumse" -> "volumes" is 1.
std::size_t key_distance(std::string_view a, std::string_view b);

// The known key closest to `key`, if one is close enough to be a plausible typo (distance at
// most a third of the known key's length, between 1 and 3); ties go to the earlier key.
std::optional<std::string_view> closest_key(std::string_view key, std::span<const std::string_view> known);

// 1-128 characters of [A-Za-z0-9._-], not starting with '.': the id names files and
// directories (history, <id>.img), so it can never be "..", hidden or contain a '/'.
bool valid_instance_id(std::string_view id);

}  // namespace carsync::core
