#pragma once
// Container path rules (spec §6.1) and mount resolution (§6.2). Purely lexical: symlink
// safety is the job of the fd-relative filesystem layer (io/secure_fs).
#include "carsync/config.hpp"
#include "core/error.hpp"

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::core {

inline constexpr std::string_view system_mount = "/r1en_system";

// Which host roots rule 3 accepts.
struct MountPolicy {
  // When set, a host root must lie strictly below one of these directories (each may use
  // shell wildcards per component, e.g. "/var/lib/edge/*/fixed_volumes/mounts").
  std::optional<std::vector<std::string>> volume_roots;
  // Reference rule 3's legacy root (only consulted when volume_roots is unset).
  std::string legacy_root = "/edge_node/_local_cache/_data/container_volumes/";
};

// Lexical normalisation: collapses every run of '/', drops '.' segments and a trailing
// '/'. Leading slashes collapse to one ([recommend] of §6.1). Does not resolve "..".
std::string normalize_path(std::string_view p);

// §6.1 shape rules; returns the normalised container path.
Result<std::string> check_shape(std::string_view container_path);

struct ResolvedPath {
  std::string container_path;  // normalised
  std::string host_root;       // normalised host root of the winning mount
  std::string bind;            // winning bind, without trailing '/'
  std::string rel;             // path below host_root ("" for the root itself), no leading '/'
  std::string host_path() const { return rel.empty() ? host_root : host_root + "/" + rel; }
};

// §6.2 rules 1-6 (longest bind wins, ties to the first in order).
Result<ResolvedPath> resolve_mount(std::string_view container_path,
                                   std::span<const VolumeMount> mounts,
                                   const MountPolicy& policy);

// True when `inner` equals `outer` or lies below it (both normalised, '/'-separated).
bool path_within(std::string_view inner, std::string_view outer) noexcept;

}  // namespace carsync::core
