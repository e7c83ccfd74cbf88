#pragma once
// Offline capture (spec §6.3, §7.3): walks each resolved source fd-relative from its volume
// root and streams it into an archive. Members are named by container path without the
// leading '/'. Symlinks anywhere fail with "symlink", special files with "not a regular file
// or directory", a missing source with "does not exist". Hard-linked files are stored as
// full regular members.
#include "core/error.hpp"
#include "core/path_rules.hpp"
#include "io/archive_writer.hpp"
#include "io/file_engine.hpp"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace carsync::io {

struct CaptureStats {
  std::uint64_t archive_size = 0;
  Sha256Digest archive_sha256{};  // of the archive file's bytes, hashed while written
  std::uint64_t files = 0;
  std::uint64_t directories = 0;
  std::uint64_t content_bytes = 0;
  // Chunked archives (ArchiveOptions::chunked): every frame, and the plain tar's size.
  std::vector<core::FrameInfo> frames;
  std::uint64_t plain_size = 0;
};

// Builds `out` from the sources in order. On failure `out` is removed. `cancel` is polled
// between members and blocks so shutdown can abandon a long build.
Result<CaptureStats> build_offline_archive(std::span<const core::ResolvedPath> sources,
                                           const std::filesystem::path& out,
                                           const ArchiveOptions& opts, FileReader& reader,
                                           const std::atomic<bool>* cancel = nullptr);

}  // namespace carsync::io
