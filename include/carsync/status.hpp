#pragma once
// What carsync reports about itself: per instance, and for the node. Phases and stages are
// enums (for programs) with to_string() (for people and JSON).
#include "carsync/config.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace carsync {

// What an instance is doing right now.
enum class Phase {
  starting,     // provisioning, recovery (before the first lifecycle)
  idle,         // waiting for a request (provider) or a new record (consumer)
  disabled,     // SYNC disabled, configuration invalid or system volume unavailable
  gated,        // consumer: container held stopped until the first snapshot (INITIAL_SYNC_TIMEOUT)
  stopping,     // stopping the container before reading or writing its volumes
  archiving,    // provider: building the archive
  uploading,    // provider: uploading the archive to the content store
  publishing,   // provider: publishing the record and writing the response
  downloading,  // consumer: fetching the archive
  scanning,     // consumer: checking and staging every member while the app runs
  applying,     // consumer: journaled commit into the volumes (container stopped)
  restarting,   // starting the container again
  finishing,    // history, response / last_apply, retirement
  halted,       // an uncertain apply: container kept stopped until unhalt
  removing,     // remove_instance: finishing or cancelling its work
};
std::string_view to_string(Phase p) noexcept;
// Whether InstanceStatus::progress counts bytes in this phase (archiving, uploading,
// downloading, scanning, applying); in the others it stays as it was.
bool moves_bytes(Phase p) noexcept;

// Where the last failure happened. The provider's and consumer's stages of the spec, plus
// configuration and the system volume.
enum class Stage {
  none,
  config,
  system_volume,
  validation,
  runtime_stop,
  archive_build,
  r1fs_upload,
  chainstore_publish,
  chainstore_fetch,
  r1fs_download,
  extract,
  commit,
  signature,  // consumer: a record no trusted key signed (or a rollback, replay, equivocation)
  recovery,
  cancelled,
};
std::string_view to_string(Stage s) noexcept;

struct LastError {
  Stage stage = Stage::none;
  std::string message;
  double time = 0;  // wall clock, seconds since the epoch
};

// One published or applied snapshot.
struct SyncPoint {
  std::string cid;
  std::int64_t version = 0;  // the record's version (provider wall-clock seconds)
  double time = 0;           // when it was published / applied, seconds since the epoch
  std::uint64_t size = 0;    // archive bytes
};

// The current step's progress; total 0 when it is not known in advance.
struct Progress {
  std::uint64_t done = 0;
  std::uint64_t total = 0;
};

struct QuarantineInfo {
  std::string cid;
  Stage stage = Stage::none;
  std::uint64_t failure_count = 0;
  double until = 0;  // next attempt, seconds since the epoch
};

struct InstanceStatus {
  std::string id;
  Role role = Role::none;
  bool enabled = false;
  std::optional<std::string> config_error;  // why the instance is disabled
  Phase phase = Phase::starting;
  Progress progress;                        // bytes of the current step
  std::uint64_t requests_ok = 0;
  std::uint64_t requests_failed = 0;
  std::optional<std::string> last_cid;
  std::optional<std::string> last_error;    // "<stage>: <text>" of the last failure
  std::optional<LastError> error;           // the same, typed
  std::optional<SyncPoint> last_publish;    // provider
  std::optional<SyncPoint> last_apply;      // consumer
  std::optional<QuarantineInfo> quarantine; // consumer: the current record is backing off
  bool halted = false;
  // Consumer with "trust": records refused (or, policy warn, applied unverified) because
  // their signature did not verify; the last one's reason is in `error` (stage signature).
  std::uint64_t signature_failures = 0;
  double last_duration_s = 0;               // claim -> response / fetch -> applied
  std::uint64_t generation = 0;             // the node generation of this instance's last change
};

struct NodeStatus {
  std::string node_id;
  std::string file_engine;  // "io_uring" or "portable"
  bool running = false;
  std::uint64_t generation = 0;  // bumps on every change of any instance (and on add/remove)
  std::vector<InstanceStatus> instances;
};

// One change, delivered to Node::subscribe callbacks in generation order.
struct StatusEvent {
  std::uint64_t generation = 0;
  InstanceStatus instance;  // the instance's status after the change
  bool removed = false;     // the instance left the node (instance holds its last status)
  // Only the byte counters moved: a sample of a step in progress, sent every
  // limits.progress_interval while the counter moves (phase changes are never of this kind).
  bool progress = false;
};

}  // namespace carsync
