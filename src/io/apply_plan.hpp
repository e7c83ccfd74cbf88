#pragma once
// What a consumer will write, decided before the container is touched (spec §8.4): the
// output of the archive scan (io/archive_scan) and the input of the crash-safe commit
// (io/staged_apply). Every path is relative to one volume root, so the commit reaches it
// fd-relative from that root and never by an absolute path.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace carsync::io {

struct PlannedVolume {
  std::string host_root;  // normalised absolute host path of the volume root
  std::string bind;       // container mount point (for messages and extracted_paths)
};

struct PlannedEntry {
  std::string container_path;  // normalised, '/'-prefixed, no trailing '/'
  std::size_t volume = 0;      // index into ApplyPlan::volumes
  std::string rel;             // below the volume root; "" is the root itself
  bool is_dir = false;
  mode_t mode = 0;             // already normalised: (m & 0777) | 0644 (files) / 0755 (dirs)
  std::int64_t mtime_sec = 0;  // restored after writing
  std::int64_t mtime_nsec = 0;
  std::uint64_t size = 0;      // files
  std::string blob;            // files: name of the staged content inside staging_dir
};

// For mirror semantics: a directory (or file) of a manifest archive_path whose contents not
// in `entries` are removed.
struct MirrorScope {
  std::size_t volume = 0;
  std::string rel;
};

struct ApplyPlan {
  std::vector<PlannedVolume> volumes;
  std::vector<PlannedEntry> entries;   // archive order; a directory precedes its contents
  std::vector<MirrorScope> mirror_scopes;
  std::filesystem::path staging_dir;   // host-private; blobs live here
  std::uint64_t total_bytes = 0;
};

}  // namespace carsync::io
