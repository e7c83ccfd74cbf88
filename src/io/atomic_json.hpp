#pragma once
// Atomic JSON file replacement (spec §2.5), fd-relative to a directory descriptor.
#include "core/error.hpp"
#include "core/json_text.hpp"

#include <boost/json/value.hpp>

#include <filesystem>
#include <string_view>

namespace carsync::io {

// Writes `.<name>.<random>.tmp` (O_EXCL, 0600) in dir_fd with the reference JSON format,
// fsyncs, chmods 0644, renames over `name` and fsyncs the directory. On failure the temp
// file is unlinked and the target is untouched. A value whose text would exceed
// core::max_json_file_bytes is refused (errc::limit_exceeded): it could not be read back.
Result<void> write_json_at(int dir_fd, std::string_view name, const boost::json::value& v);

// Same for an absolute host path: creates missing parents (0755), refuses a symlinked or
// non-directory parent (errc::unsafe_control_file, message contains "unsafe").
Result<void> write_json_file(const std::filesystem::path& file, const boost::json::value& v);

// Reads and parses a JSON file (no-follow), capped at max_bytes.
Result<boost::json::value> read_json_at(int dir_fd, std::string_view name,
                                        std::size_t max_bytes = core::max_json_file_bytes);

}  // namespace carsync::io
