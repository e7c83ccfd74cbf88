#pragma once
// Parsing of the SYNC block (spec §3.1) and of the reference's loose scalar conventions.
#include "carsync/config.hpp"

#include <boost/json/value.hpp>

#include <optional>
#include <string>

namespace carsync::core {

// Parses a SYNC block. A missing or non-object block is {} (disabled). When the block is
// enabled but KEY or TYPE is invalid, the returned config has enabled=false and `error`
// names the field.
struct ParsedSync {
  SyncConfig config;
  std::optional<std::string> error;
};
ParsedSync parse_sync_config(const boost::json::value* sync_block);

// §3.1 scalar conventions, exposed for the tests of each.
double parse_poll_interval(const boost::json::value* v);         // <1 -> 1, non-numeric -> 10
double parse_hsync_poll_interval(const boost::json::value* v);   // <10 -> 10, non-numeric -> 60
// Booleans as-is; "1,true,yes,on" / "0,false,no,off,''" (trimmed, any case); ints 0/1.
// Anything else is nullopt (callers fall back to false and warn).
std::optional<bool> parse_flag(const boost::json::value* v);

}  // namespace carsync::core
