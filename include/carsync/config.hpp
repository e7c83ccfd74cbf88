#pragma once
// Node configuration: what a supervisor hands to carsync::Node. Parsed from one JSON file
// by carsync::load_node_config; see README "Configuration reference".
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace carsync {

enum class Role { none, provider, consumer };
enum class ArchiveFormat { tar_gz, tar_zst };
enum class ApplySemantics { overlay, mirror };

std::string_view to_string(Role r) noexcept;
std::string_view to_string(ArchiveFormat f) noexcept;  // "tar.gz" / "tar.zst"

// The SYNC block of one instance (spec §3.1 plus carsync's own keys).
struct SyncConfig {
  bool enabled = false;
  std::string key;
  Role role = Role::none;
  double poll_interval = 10.0;         // seconds; carsync reacts to events, this is the safety cadence
  double hsync_poll_interval = 60.0;   // seconds, >= 10
  bool allow_online_capture = false;
  std::string consumer_apply_mode = "offline_restart";
  ArchiveFormat archive_format = ArchiveFormat::tar_gz;
  int compression_level = 6;           // gzip 1..9, zstd 1..19
  ApplySemantics apply_semantics = ApplySemantics::overlay;
  std::optional<double> initial_sync_timeout;  // seconds; 0 = forever; absent = no gate
  // Delta transfer (README "Delta transfer"). A provider writes chunked archives and, for an
  // archive of at least delta_min_bytes of tar, uploads an index and a pack per version and
  // names the packs of the last delta_versions versions in the record; a consumer keeps its
  // last applied archive as the base and fetches only the packs it lacks.
  bool delta = true;
  std::uint32_t delta_versions = 8;           // K: 1..64
  std::uint64_t delta_min_bytes = 1u << 20;   // plain tar bytes
  // Non-fatal notes from parsing (unknown SYNC keys, fallbacks), logged at start-up and reload.
  std::vector<std::string> warnings;
  // What the file said, so a disabled instance can tell "no SYNC block" from "SYNC.ENABLED
  // is absent" from "SYNC.ENABLED is false" (core::disabled_reason).
  bool block_given = false;    // SYNC was an object
  bool enabled_given = false;  // ... with an ENABLED key (any value)
  friend bool operator==(const SyncConfig&, const SyncConfig&) = default;
};

// One host directory bound into the container (Docker's host-root -> {bind, mode}).
struct VolumeMount {
  std::string host_root;
  std::string bind;
  std::string mode = "rw";
  friend bool operator==(const VolumeMount&, const VolumeMount&) = default;
};

// The system volume as the reference provisions it (spec §2.1): a fixed-size ext4 image
// loop-mounted at InstanceConfig::system_volume. Absent: system_volume is a plain directory.
struct SystemVolumeImage {
  // Where the image lives: <image_dir>/<instance id>.img (one image per instance; it and its
  // contents survive restarts and removal of the instance).
  std::filesystem::path image_dir;
  std::uint64_t size_bytes = 10 * 1024 * 1024;  // the reference's 10M
  friend bool operator==(const SystemVolumeImage&, const SystemVolumeImage&) = default;
};

// "signing": {"key_file": PATH | [PATH, ...]} on a provider instance: every record it
// publishes is signed with each key (several: rotation without a flag day). The files are
// `carsync keys generate` output, mode 0600; they are read when the instance starts.
struct SigningConfig {
  std::vector<std::filesystem::path> key_files;  // at least one, absolute
  friend bool operator==(const SigningConfig&, const SigningConfig&) = default;
};

// What a consumer does with a record no trusted key signed: refuse it (quarantine, stage
// signature) or apply it and log a warning.
enum class TrustPolicy { enforce, warn };
std::string_view to_string(TrustPolicy p) noexcept;

// "trust": {"keys": [PUBLIC_KEY, ...], "policy": "enforce" | "warn"} on a consumer
// instance: a record is applied only when a listed key signed it for this sync key with a
// sequence newer than the last applied from that key. Keys are `carsync keys show` text,
// checked when the configuration is parsed (a mistyped key is a configuration error).
struct TrustConfig {
  std::vector<std::string> keys;  // at least one, each a valid public key text
  TrustPolicy policy = TrustPolicy::enforce;
  friend bool operator==(const TrustConfig&, const TrustConfig&) = default;
};

struct InstanceConfig {
  std::string id;
  std::optional<std::string> container;  // container name or id; nullopt = no runtime
  std::filesystem::path system_volume;   // host dir the container sees as /r1en_system
  // "system_volume_image": {"dir": PATH, "size_mib": N} at instance level, else the node's
  // default (NodeConfig::system_volume_image); nullopt: system_volume is a plain directory.
  std::optional<SystemVolumeImage> system_volume_image;
  std::vector<VolumeMount> volumes;      // in configuration order (ties resolve to first)
  SyncConfig sync;
  std::optional<SigningConfig> signing;  // provider only
  std::optional<TrustConfig> trust;      // consumer only
  // Set when the instance's configuration is invalid: the instance stays disabled and this
  // names the offending field. Other instances run.
  std::optional<std::string> error;
  std::string error_field;  // the offending key's dotted path when error is set

  friend bool operator==(const InstanceConfig&, const InstanceConfig&) = default;
};

struct BackendConfig {
  std::string kind = "local";  // "local" (embedded stores under data_dir) or "r1"
  std::string cstore_url;      // r1 only; empty: the spec's environment variables
  std::string r1fs_url;        // r1 only; empty: the spec's environment variables
  // local only: where the embedded stores live (cas/, kv/); empty: data_dir. Several nodes
  // (each with its own data_dir) may share one store directory, as hosts share ChainStore.
  std::filesystem::path store_dir;
};

struct RuntimeLimits {
  unsigned archive_workers = 2;   // concurrent archive builds / extractions (CPU-bound)
  unsigned io_workers = 8;        // concurrent blocking filesystem jobs
  unsigned uring_queue_depth = 16;
  std::size_t read_block_size = 256 * 1024;
  std::chrono::seconds rescan_interval{30};       // safety rescan of every control dir
  // While a step moves bytes, its progress is announced (StatusEvent::progress) this often.
  std::chrono::milliseconds progress_interval{500};
  std::chrono::seconds step_timeout{600};         // deadline of one archive build / upload / apply step
  std::chrono::seconds store_timeout{60};         // deadline of one store call
  std::chrono::seconds shutdown_grace{30};        // bounded wait before terminal cancellation
  // Deadline of each clean-up step that runs after a cancellation (restarting a container
  // carsync stopped, finishing an apply's bookkeeping): the "small bound" past the grace.
  std::chrono::seconds cleanup_timeout{20};
  // History entries kept per instance and direction (sent/received) once retired; an entry
  // still awaiting its retirement is kept regardless (spec §9.3, §12 item 7).
  std::size_t history_keep = 64;
  // "portable" (pread with the kernel's read-ahead), "io_uring" or "auto" (io_uring where
  // the kernel allows it). Portable by default: with compression on every core, io_uring's
  // buffered reads run on kernel io-wq threads that compete with the compressors, and it
  // measured no faster (README, Measurements).
  std::string file_engine = "portable";
};

struct NodeConfig {
  std::filesystem::path data_dir = "/var/lib/carsync";
  std::string node_id;  // defaults to the host name
  BackendConfig backend;
  // Host roots rule 3 accepts (§6.2). nullopt: the reference's two rules apply.
  std::optional<std::vector<std::string>> volume_roots;
  std::string legacy_volumes_root = "/edge_node/_local_cache/_data/container_volumes/";
  // The Docker Engine socket for instances with a container ("unix:///path" or a path);
  // nullopt: DOCKER_HOST, else /var/run/docker.sock.
  std::optional<std::string> docker_socket;
  // Default system-volume image settings for instances that name none ("system_volume_image").
  std::optional<SystemVolumeImage> system_volume_image;
  // The control API's unix socket (carsyncd serves it; docs/control-api.md).
  std::string control_socket = "/run/carsync.sock";
  // A read-only TCP address for /metrics, the status page and status reads ("IP:PORT");
  // empty: none.
  std::string metrics_listen;
  RuntimeLimits limits;
  std::vector<InstanceConfig> instances;
};

// A configuration that cannot be used at all: bad JSON, a bad node-level value, an unknown
// key anywhere but inside SYNC, an instance without a valid id. A bad instance-level value
// does not throw: it lands in InstanceConfig::error and only that instance stays disabled.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& what, std::string field = {})
      : std::runtime_error(what), field_(std::move(field)) {}
  // The offending key's dotted path ("limits.io_workers", "instances[2].id"), when known.
  const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

// Unknown keys at the node, backend, limits and instance level throw, naming the key and the
// closest known one; unknown SYNC keys (the reference tolerates them) become warnings.
NodeConfig parse_node_config(std::string_view json_text);
// One instance object as it appears in "instances" (the supervisor API's and the control
// API's input), by the same rules as in a file: bad values land in InstanceConfig::error /
// error_field; invalid JSON, a non-object (field ""), an unknown key (field = its path in
// the object, "volumse") or a missing or invalid "id" (field "id") throw ConfigError.
// `defaults` supplies the node-wide system_volume_image.
InstanceConfig parse_instance_config(std::string_view json_text, const NodeConfig& defaults);
NodeConfig load_node_config(const std::filesystem::path& file);

}  // namespace carsync
