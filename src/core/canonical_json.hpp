#pragma once
// RFC 8785 (JSON Canonicalization Scheme) text of a value: what a record signature covers,
// so that a store re-serialising the record (key order, whitespace, escapes, number
// spelling) does not break it. And the duplicate-key check JCS presumes of its input.
#include "core/error.hpp"

#include <boost/json/value.hpp>

#include <string>
#include <string_view>

namespace carsync::core {

// RFC 8785: object members sorted by their UTF-16 code units, no whitespace, strings with
// only the mandatory escapes (\" \\ \b \f \n \r \t, other controls as \u00xx, lowercase
// hex), numbers as ECMAScript's Number.prototype.toString of the IEEE double (shortest
// round-trip digits; integers up to 1e21 without exponent; -0 as 0).
// Error (errc::invalid_record, naming the JSON path, e.g. "metadata.n") for a number that
// does not survive the trip through a double — an integer beyond ±2^53 whose double prints
// other digits (2^53+1; 106479179934990340, the text of a double, does survive) — and for
// NaN or an infinity; every implementation would then sign different bytes.
Result<std::string> canonical_json(const boost::json::value& v);

// Error (errc::invalid_record) naming the first key that appears twice in one object of
// `json_text`, e.g. "duplicate key \"cid\" in $" or "... in $.manifest"; boost::json (like
// Python) keeps the last silently, so two readers could see two records. Malformed text is
// left to the parser: only duplicates are reported here.
Result<void> check_unique_keys(std::string_view json_text);

}  // namespace carsync::core
