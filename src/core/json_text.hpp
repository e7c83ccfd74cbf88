#pragma once
// JSON text in the reference's formats, and strict parsing of untrusted bodies.
#include "core/error.hpp"

#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace carsync::core {

// The reference's on-disk format (§2.5): keys sorted, 2-space indent, non-ASCII escaped
// as \uXXXX (surrogate pairs beyond the BMP), no trailing newline. Doubles are written in
// shortest round-trip form and always keep a fraction or exponent so they stay floats.
std::string to_reference_json(const boost::json::value& v);

// Every JSON file carsync reads back (state, history, quarantine) is read with this cap,
// and none is written larger: a file it writes can always be read again.
inline constexpr std::size_t max_json_file_bytes = 16 * 1024 * 1024;

// to_reference_json, or nullopt once the text would exceed `limit` bytes (memory stays
// near `limit` however large the indented form of a deeply nested value would grow).
std::optional<std::string> to_reference_json_within(const boost::json::value& v, std::size_t limit);

// Compact form with sorted keys, separators "," and ":", ASCII-escaped: the canonical
// text hashed for quarantine digests (§8.7).
std::string to_canonical_json(const boost::json::value& v);

// Validates strict UTF-8 (no overlongs, no surrogates, nothing beyond U+10FFFF).
// On failure the message describes the first bad byte offset.
Result<void> check_utf8(std::string_view bytes);

// Parses one JSON document. Errors carry the parser's detail text. Doubles are converted
// from their text correctly rounded (std::from_chars), not by Boost.JSON 1.81's parser.
Result<boost::json::value> parse_json(std::string_view text);

// Parses one JSON document in Python's dialect, as its json module writes it: the tokens
// NaN, Infinity and -Infinity stand for non-finite floats. Records from a reference
// provider are read with it; what carsync itself writes never holds those tokens.
// A key repeated in one object is refused (errc::invalid_record, check_unique_keys'
// message; malformed text is errc::invalid_request), unlike parse_json, which keeps the last.
Result<boost::json::value> parse_json_python(std::string_view text);

// The first n code points of a valid UTF-8 string (raw_body cap, §5.4).
std::string first_code_points(std::string_view utf8, std::size_t n);

// Python-style truthiness of a JSON value (null, false, 0, 0.0, "", [], {} are falsy).
bool truthy(const boost::json::value& v) noexcept;

}  // namespace carsync::core
