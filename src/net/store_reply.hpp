#pragma once
// What the R1FS and CStore clients make of a reply body (spec §3, §4): the JSON envelope's
// `result`, and each call's reading of it. Pure functions over bytes a node sent, apart
// from the clients' I/O so that they can be tested and fuzzed on their own.
#include "core/error.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <string_view>

namespace carsync::net {

// The `result` of a JSON envelope. A body that is not JSON, has no `result`, or whose
// `result` is an object with an "error" key is a failure naming `what` (§4).
Result<boost::json::value> envelope_result_of(std::string_view body, const std::string& what);

// R1FS add_file: the non-empty `cid` string of the result object.
Result<std::string> add_file_cid(const boost::json::value& result, const std::string& what);
// R1FS delete_file: a result object with "success": true; else its message.
Result<void> delete_file_outcome(const boost::json::value& result, const std::string& what);
// CStore hset: a boolean result (null reads as false).
Result<bool> hset_outcome(const boost::json::value& result, const std::string& what);
// CStore hgetall: an object result (null reads as an empty hash, §5.6).
Result<boost::json::object> hgetall_outcome(boost::json::value result, const std::string& what);
// CStore hsync: an object result.
Result<void> hsync_outcome(const boost::json::value& result, const std::string& what);

}  // namespace carsync::net
