#pragma once
// The consumer's archive scan (spec §8.4 step 5): reads a downloaded snapshot archive once,
// validates every member against the manifest, the consumer's mounts and the current volume
// contents (§6.4), and stages file contents as blobs in a host-private directory. Nothing is
// written into any volume; the result is the plan the staged commit executes.
#include "carsync/config.hpp"
#include "core/error.hpp"
#include "core/path_rules.hpp"
#include "io/apply_plan.hpp"
#include "io/sha256.hpp"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace carsync::io {

// Bounds on what one hostile or oversized archive may cost the host (§12 item 23).
struct ScanLimits {
  std::uint64_t max_member_bytes = 8ull << 30;
  std::uint64_t max_total_bytes = 32ull << 30;
  // Decompressed file bytes per compressed archive byte; enforced once the file bytes pass
  // 1 MiB, so small, highly compressible snapshots are never refused.
  double max_expansion_ratio = 1000.0;
  std::uint64_t max_members = 1'000'000;
};

struct ScanContext {
  std::span<const VolumeMount> mounts;               // this consumer's volume map
  const core::MountPolicy* policy = nullptr;         // nullptr: the default policy
  // The record's archive_paths: every member must lie at or below one. Each that resolves
  // on this consumer also yields a mirror scope (record validation refuses the others).
  std::vector<std::string> manifest_paths;
  ScanLimits limits;
  bool fsync_blobs = false;
  // Bytes staged so far, for status readers on other threads (nullptr: not counted).
  std::atomic<std::uint64_t>* progress = nullptr;
  // The archive file must hash to this (hashed while it streams); a mismatch is
  // errc::corrupt_archive and every staged blob is removed, so nothing is applied.
  std::optional<Sha256Digest> expected_sha256;
};

// Scans `archive` (tar compressed with gzip or zstd) and stages every regular member as
// "<staging_dir>/<member index, 6 digits>.blob". `staging_dir` must exist and should be
// empty; on failure every blob written is removed again and the first violation is
// returned (errc::corrupt_archive, path_rejected, escapes_root, not_regular,
// limit_exceeded, cancelled, or an OS error). `cancel` is polled between members and
// between data blocks, and by the reader thread (io/archive_source) that reads, hashes and
// decompresses the file ahead of the tar parsing. The whole file is read before the plan is
// returned: bytes after the last gzip member / zstd frame are hashed but not decoded.
Result<ApplyPlan> scan_and_stage(const std::filesystem::path& archive, const ScanContext& ctx,
                                 const std::filesystem::path& staging_dir,
                                 const std::atomic<bool>* cancel = nullptr);

}  // namespace carsync::io
