#include "core/record.hpp"

#include "core/hex.hpp"
#include "core/json_text.hpp"

namespace carsync::core {
namespace {

namespace json = boost::json;

bool is_integer(const json::value& v) noexcept { return v.is_int64() || v.is_uint64(); }

// Bounded rendering of a foreign value inside a reason.
std::string shown(const json::value& v, std::size_t cap = 200) {
  return first_code_points(to_canonical_json(v), cap);
}

const json::value& member_or_null(const json::object& o, std::string_view key) {
  static const json::value null;
  const json::value* v = o.if_contains(key);
  return v ? *v : null;
}

constexpr std::string_view archive_sha256_key = "archive_sha256";

// 64 lowercase hex digits, decoded; else nullopt.
std::optional<std::array<std::byte, 32>> parse_sha256_hex(const json::value& v) {
  if (!v.is_string()) return std::nullopt;
  return core::parse_sha256_hex(std::string_view(v.get_string()));
}

}  // namespace

std::optional<std::array<std::byte, 32>> record_archive_sha256(const boost::json::value& record) {
  if (!record.is_object()) return std::nullopt;
  const json::value* v = record.get_object().if_contains(archive_sha256_key);
  return v ? parse_sha256_hex(*v) : std::nullopt;
}

boost::json::object build_manifest(const SyncRequest& req, const PublishedSnapshot& snap) {
  json::array paths;
  for (const auto& p : req.archive_paths) paths.emplace_back(p);
  return {
      {"schema_version", manifest_schema_version},
      {"archive_paths", std::move(paths)},
      {"archive_format", to_string(snap.format)},
      {"archive_size_bytes", snap.archive_size_bytes},
      {"encryption", manifest_encryption},
      {"runtime", req.runtime.to_json()},
  };
}

boost::json::object build_record(const SyncRequest& req, const PublishedSnapshot& snap) {
  json::value node_id = nullptr;
  if (snap.node_id) node_id = *snap.node_id;
  json::object record{
      {"cid", snap.cid},
      {"version", snap.version},
      {"timestamp", snap.timestamp},
      {"node_id", std::move(node_id)},
      {"metadata", req.metadata},
      {"runtime", req.runtime.to_json()},
      {"manifest", build_manifest(req, snap)},
  };
  if (snap.archive_sha256) record[archive_sha256_key] = *snap.archive_sha256;
  if (snap.delta) record["delta"] = *snap.delta;
  return record;
}

namespace {

// `mounts` null: no consumer to map archive_paths onto; they must still pass the §6.1 shape rules.
std::vector<std::string> check_manifest(const boost::json::value& record, const std::span<const VolumeMount>* mounts,
                                        const MountPolicy& policy);

std::vector<std::string> check_record(const boost::json::value& record, const std::span<const VolumeMount>* mounts,
                                      const MountPolicy& policy) {
  if (!record.is_object()) return {"sync record is not a dict"};
  const json::object& rec = record.get_object();

  std::vector<std::string> reasons;
  const json::value& cid = member_or_null(rec, "cid");
  if (!cid.is_string() || cid.get_string().empty())
    reasons.push_back("sync record cid must be a non-empty string, got " + shown(cid));
  const json::value& version = member_or_null(rec, "version");
  if (!is_integer(version)) reasons.push_back("sync record version must be an integer, got " + shown(version));
  // Optional (the reference neither writes nor reads it), but a present one is checked:
  // the consumer verifies the archive against it.
  if (const json::value* sha = rec.if_contains(archive_sha256_key); sha && !parse_sha256_hex(*sha))
    reasons.push_back("sync record archive_sha256 must be 64 lowercase hex digits, got " + shown(*sha));

  if (!to_reference_json_within(record, max_record_written_bytes))
    reasons.push_back("sync record is larger than " + std::to_string(max_record_written_bytes) +
                      " bytes as written; its history entry could not be read back");

  auto manifest_reasons = check_manifest(record, mounts, policy);
  reasons.insert(reasons.end(), std::make_move_iterator(manifest_reasons.begin()),
                 std::make_move_iterator(manifest_reasons.end()));
  return reasons;
}

std::vector<std::string> check_manifest(const boost::json::value& record, const std::span<const VolumeMount>* mounts,
                                        const MountPolicy& policy) {
  if (!record.is_object()) return {"manifest record is not a dict"};
  const json::value& raw = member_or_null(record.get_object(), "manifest");
  static const json::object empty;
  if (truthy(raw) && !raw.is_object()) return {"manifest must be a JSON object"};
  const json::object& manifest = raw.is_object() ? raw.get_object() : empty;

  std::vector<std::string> reasons;
  const json::value& schema = member_or_null(manifest, "schema_version");
  const std::string max_schema = std::to_string(manifest_schema_version);
  if (!is_integer(schema)) {
    reasons.push_back("manifest schema_version must be an integer (max supported " + max_schema + "), got " +
                      shown(schema));
  } else if (schema.is_uint64() ? schema.get_uint64() > static_cast<std::uint64_t>(manifest_schema_version)
                                : schema.get_int64() > manifest_schema_version) {
    reasons.push_back("unsupported manifest schema_version " + shown(schema) + " (max supported " + max_schema + ")");
  }

  const json::value& format = member_or_null(manifest, "archive_format");
  if (!(format.is_string() && (format.get_string() == to_string(ArchiveFormat::tar_gz) ||
                               format.get_string() == to_string(ArchiveFormat::tar_zst)))) {
    reasons.push_back("unsupported manifest archive_format " + shown(format) +
                      " (expected \"tar.gz\" or \"tar.zst\")");
  }

  const json::value& encryption = member_or_null(manifest, "encryption");
  if (!(encryption.is_string() && encryption.get_string() == manifest_encryption)) {
    reasons.push_back("unsupported manifest encryption " + shown(encryption) + " (expected \"" +
                      std::string(manifest_encryption) + "\")");
  }

  const json::value& paths = member_or_null(manifest, "archive_paths");
  if (!paths.is_array() || paths.get_array().empty()) {
    reasons.push_back("archive_paths must be a non-empty list of container-absolute paths");
    return reasons;
  }
  json::array invalid, unmapped;
  std::string unmapped_why;
  for (const json::value& entry : paths.get_array()) {
    if (!entry.is_string() || entry.get_string().empty()) {
      invalid.push_back(entry);
      continue;
    }
    if (!mounts) {
      if (auto shape = check_shape(entry.get_string()); !shape) {
        unmapped.push_back(entry);
        if (!unmapped_why.empty()) unmapped_why += "; ";
        unmapped_why += shape.error().message;
      }
      continue;
    }
    // Routing is by container path, so every path must land in one of *our* volumes.
    auto resolved = resolve_mount(entry.get_string(), *mounts, policy);
    if (!resolved) {
      unmapped.push_back(entry);
      if (!unmapped_why.empty()) unmapped_why += "; ";
      unmapped_why += resolved.error().message;
    }
  }
  if (!invalid.empty()) reasons.push_back("invalid archive_paths entries: " + shown(invalid, 2000));
  if (!unmapped.empty()) {
    reasons.push_back((mounts ? "unmapped archive_paths on this consumer: " : "invalid archive_paths entries: ") +
                      shown(unmapped, 2000) + " (" + unmapped_why + ")");
  }
  return reasons;
}

}  // namespace

std::vector<std::string> validate_record(const boost::json::value& record, std::span<const VolumeMount> mounts,
                                         const MountPolicy& policy) {
  return check_record(record, &mounts, policy);
}

std::vector<std::string> validate_manifest(const boost::json::value& record, std::span<const VolumeMount> mounts,
                                           const MountPolicy& policy) {
  return check_manifest(record, &mounts, policy);
}

std::vector<std::string> validate_record_shape(const boost::json::value& record) {
  return check_record(record, nullptr, MountPolicy{});
}

}  // namespace carsync::core
