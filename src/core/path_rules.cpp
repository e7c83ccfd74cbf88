#include "core/path_rules.hpp"

#include <fnmatch.h>

#include <vector>

namespace carsync::core {
namespace {

constexpr std::string_view fixed_volume_marker = "/fixed_volumes/mounts/";

std::vector<std::string_view> segments(std::string_view p) {
  std::vector<std::string_view> out;
  while (!p.empty()) {
    const auto slash = p.find('/');
    const auto seg = p.substr(0, slash);
    if (!seg.empty() && seg != ".") out.push_back(seg);
    if (slash == std::string_view::npos) break;
    p.remove_prefix(slash + 1);
  }
  return out;
}

bool has_dotdot_segment(std::string_view p) {
  while (true) {
    const auto slash = p.find('/');
    if (p.substr(0, slash) == "..") return true;
    if (slash == std::string_view::npos) return false;
    p.remove_prefix(slash + 1);
  }
}

Error rejected(std::string message) { return make_error(errc::path_rejected, std::move(message)); }

// Every component of `pattern` matches the leading components of `host_root`, and
// `host_root` has at least one more: strictly below.
bool strictly_below_pattern(std::string_view host_root, const std::string& pattern) {
  const auto host = segments(host_root);
  const auto pat = segments(pattern);
  if (pat.empty() || host.size() <= pat.size()) return false;
  for (std::size_t i = 0; i < pat.size(); ++i) {
    if (::fnmatch(std::string(pat[i]).c_str(), std::string(host[i]).c_str(), FNM_PATHNAME) != 0) return false;
  }
  return true;
}

// Rule 3: only host directories that really are volumes may be captured or restored.
bool volume_backed(const std::string& host_root, const MountPolicy& policy) {
  if (host_root.empty() || host_root.front() != '/') return false;
  if (policy.volume_roots) {
    for (const auto& root : *policy.volume_roots)
      if (strictly_below_pattern(host_root, root)) return true;
    return false;
  }
  const std::string with_slash = host_root + "/";
  std::string legacy = policy.legacy_root;
  // Without the slash "/x/container_volumes" would also admit "/x/container_volumes2".
  if (!legacy.empty() && legacy.back() != '/') legacy += '/';
  return with_slash.find(fixed_volume_marker) != std::string::npos ||
         (!legacy.empty() && with_slash.starts_with(legacy));
}

}  // namespace

std::string normalize_path(std::string_view p) {
  const bool absolute = !p.empty() && p.front() == '/';
  std::string out;
  for (const auto seg : segments(p)) {
    if (absolute || !out.empty()) out += '/';
    out += seg;
  }
  if (out.empty()) return absolute ? "/" : ".";
  return out;
}

Result<std::string> check_shape(std::string_view container_path) {
  const std::string shown(container_path);
  if (container_path.empty()) return rejected("container path must be a non-empty string");
  if (container_path.find('\0') != std::string_view::npos)
    return rejected("container path must not contain NUL bytes: " + shown);
  if (has_dotdot_segment(container_path))
    return rejected("container path must not contain '..' segments: " + shown);
  std::string norm = normalize_path(container_path);
  if (norm.front() != '/') return rejected("container path must be absolute: " + shown);
  if (path_within(norm, system_mount))
    return rejected("refusing to sync the system volume (anti-recursion): " + shown);
  return norm;
}

Result<ResolvedPath> resolve_mount(std::string_view container_path, std::span<const VolumeMount> mounts,
                                   const MountPolicy& policy) {
  auto shape = check_shape(container_path);
  if (!shape) return shape.error();
  const std::string& p = *shape;

  // Docker shadows a broader mount with a nested one, so the longest bind wins.
  const VolumeMount* winner = nullptr;
  std::string winner_bind;
  for (const auto& m : mounts) {
    std::string bind = normalize_path(m.bind);
    if (bind == "/" || bind.front() != '/') continue;  // "/" would cover everything
    if (path_within(p, bind) && (!winner || bind.size() > winner_bind.size())) {
      winner = &m;
      winner_bind = std::move(bind);
    }
  }
  if (!winner) return rejected("no mounted volume covers " + p);

  const std::string host_root = normalize_path(winner->host_root);
  if (!volume_backed(host_root, policy))
    return rejected("refusing non-volume-backed mount " + host_root + " for " + p);

  const std::string rel = p == winner_bind ? std::string() : p.substr(winner_bind.size() + 1);
  const std::string host_path = normalize_path(host_root + "/" + rel);
  if (!path_within(host_path, host_root)) return rejected("resolved host path escapes mount root: " + p);

  return ResolvedPath{p, host_root, std::move(winner_bind), rel};
}

bool path_within(std::string_view inner, std::string_view outer) noexcept {
  if (inner == outer) return true;
  if (outer == "/") return inner.starts_with('/');
  return inner.size() > outer.size() && inner.starts_with(outer) && inner[outer.size()] == '/';
}

}  // namespace carsync::core
