#pragma once
// Why a delta transfer could not be used (core/delta_index.hpp). Every one of them makes the
// consumer fetch the full archive instead; none refuses the record (the reference ignores
// the delta field, and the full archive stays the authority).
#include <boost/system/error_code.hpp>

#include <string_view>
#include <type_traits>

namespace carsync::core {

enum class delta_errc {
  malformed_field = 1,   // the record's "delta" field is not what format 1 writes
  unsupported_format,    // an index or field of a format version this build does not know
  malformed_index,       // the index breaks a rule of its format (sizes, counts, fields)
  index_mismatch,        // the index is not the one the record names (size, SHA-256, archive)
  pack_mismatch,         // a pack is not the one the record names (size, SHA-256)
  frame_mismatch,        // a frame's bytes do not hash to its chunk id
  frame_size_mismatch,   // a frame decompresses to more or fewer bytes than its entry says
  base_unusable,         // the consumer's base is missing, unreadable or inconsistent
  archive_mismatch,      // the reassembled archive does not hash to the record's digest
};

const boost::system::error_category& delta_category() noexcept;

inline boost::system::error_code make_error_code(delta_errc e) noexcept {
  return {static_cast<int>(e), delta_category()};
}

// A short label for metrics and logs ("malformed_index", ...).
std::string_view to_string(delta_errc e) noexcept;

}  // namespace carsync::core

template <>
struct boost::system::is_error_code_enum<carsync::core::delta_errc> : std::true_type {};
