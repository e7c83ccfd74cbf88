#pragma once
// The ChainStore sync record and its manifest (spec §7.4, §8.4 step 1).
#include "carsync/config.hpp"
#include "core/path_rules.hpp"
#include "core/request.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace carsync::core {

inline constexpr std::string_view sync_hkey = "CHAINSTORE_SYNC";
inline constexpr std::int64_t manifest_schema_version = 1;
inline constexpr std::string_view manifest_encryption = "r1fs-default";
// A record larger than this as written is refused: the received-history entry keeps its
// manifest and metadata (plus at most max_extracted_paths_bytes of paths) and must stay
// within max_json_file_bytes to be read back. A record built from any valid request fits.
inline constexpr std::size_t max_record_written_bytes = 8 * 1024 * 1024;

struct PublishedSnapshot {
  std::string cid;
  std::int64_t version = 0;     // int(now())
  double timestamp = 0;         // now()
  std::optional<std::string> node_id;
  ArchiveFormat format = ArchiveFormat::tar_gz;
  std::uint64_t archive_size_bytes = 0;
  // SHA-256 of the archive's bytes, 64 lowercase hex digits (hashed while it was built);
  // written as the record's "archive_sha256", an extra field the reference ignores.
  std::optional<std::string> archive_sha256;
  // The record's "delta" field (core/delta_record.hpp), another extra field; nullopt: none.
  std::optional<boost::json::object> delta;
};

boost::json::object build_manifest(const SyncRequest& req, const PublishedSnapshot& snap);
boost::json::object build_record(const SyncRequest& req, const PublishedSnapshot& snap);

// The record's "archive_sha256" as bytes; nullopt when absent or malformed (validation
// refuses a malformed one). The array is io::Sha256Digest's type (core cannot name io).
std::optional<std::array<std::byte, 32>> record_archive_sha256(const boost::json::value& record);

// §8.4 step 1: every reason a record cannot be applied on this consumer. Empty = valid.
// Accepts archive_format "tar.gz" and "tar.zst".
std::vector<std::string> validate_record(const boost::json::value& record,
                                         std::span<const VolumeMount> mounts,
                                         const MountPolicy& policy);
// Every rule of validate_record but the consumer's own: without mounts, archive_paths need
// only pass the shape rules (absolute, no '..', not the system volume). For a tool writing a
// record for consumers it does not know (`carsync kv hset`).
std::vector<std::string> validate_record_shape(const boost::json::value& record);
// The manifest-only part ("manifest record is not a dict" for a non-object record).
std::vector<std::string> validate_manifest(const boost::json::value& record,
                                           std::span<const VolumeMount> mounts,
                                           const MountPolicy& policy);

}  // namespace carsync::core
