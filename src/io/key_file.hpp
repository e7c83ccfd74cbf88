#pragma once
// Secret key files on disk (format: core/signing_key.hpp). Written once, never replaced,
// readable by their owner only — the rules ssh applies to its identity files.
#include "core/error.hpp"
#include "core/signing_key.hpp"

#include <filesystem>

namespace carsync::io {

// Creates `path` with mode 0600 (O_EXCL: an existing file, or a symlink, is never
// overwritten: errc::io_failure "... exists"), writes the key and fsyncs file and directory.
Result<void> write_new_secret_key(const std::filesystem::path& path, const core::SecretKey& key);

// Reads a key file. Refused (errc::bad_config, naming the path): not a regular file (a
// symlink is not followed), readable or writable by group or others ("mode 0644: must not
// be accessible by group or others; chmod 600 <path>"), larger than 4 KiB, or bad content.
Result<core::SecretKey> read_secret_key(const std::filesystem::path& path);

}  // namespace carsync::io
