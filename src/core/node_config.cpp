#include "carsync/config.hpp"

#include "core/json_text.hpp"
#include "core/sync_config.hpp"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

namespace carsync {
namespace {

namespace json = boost::json;

// A node configuration is a few kilobytes; anything near this is not one.
constexpr std::size_t max_config_bytes = 16 * 1024 * 1024;

std::string shown(const json::value& v) { return core::first_code_points(core::to_canonical_json(v), 80); }

[[noreturn]] void fail(const std::string& reason) { throw ConfigError(reason); }

const json::value* given(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && !v->is_null() ? v : nullptr;
}

std::string required_string(const json::object& o, std::string_view key) {
  const json::value* v = given(o, key);
  if (!v || !v->is_string() || v->get_string().empty()) fail(std::string(key) + " must be a non-empty string");
  return std::string(v->get_string());
}

std::optional<std::string> optional_string(const json::object& o, std::string_view key, std::string_view where) {
  const json::value* v = given(o, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) fail(std::string(where) + std::string(key) + " must be a string, got " + shown(*v));
  return std::string(v->get_string());
}

std::string host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0) fail(std::string("gethostname failed: ") + std::strerror(errno));
  return buf.data();
}

BackendConfig parse_backend(const json::value* v) {
  BackendConfig b;
  if (!v) return b;
  if (!v->is_object()) fail("backend must be an object");
  const json::object& o = v->get_object();
  if (auto kind = optional_string(o, "kind", "backend.")) b.kind = *kind;
  if (b.kind != "local" && b.kind != "r1") fail("backend.kind must be \"local\" or \"r1\", got \"" + b.kind + "\"");
  b.cstore_url = optional_string(o, "cstore_url", "backend.").value_or("");
  b.r1fs_url = optional_string(o, "r1fs_url", "backend.").value_or("");
  return b;
}

// An integer limit in [lo, hi]; the bounds keep a typo from asking for absurd resources.
template <class T>
void read_limit(const json::object& o, std::string_view key, T& out, std::uint64_t lo, std::uint64_t hi) {
  const json::value* v = given(o, key);
  if (!v) return;
  std::uint64_t n = 0;
  if (v->is_uint64()) {
    n = v->get_uint64();
  } else if (v->is_int64() && v->get_int64() >= 0) {
    n = static_cast<std::uint64_t>(v->get_int64());
  } else {
    fail("limits." + std::string(key) + " must be an integer, got " + shown(*v));
  }
  if (n < lo || n > hi) {
    fail("limits." + std::string(key) + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
         ", got " + std::to_string(n));
  }
  out = static_cast<T>(n);
}

void read_seconds(const json::object& o, std::string_view key, std::chrono::seconds& out) {
  auto n = static_cast<std::uint64_t>(out.count());
  read_limit(o, key, n, 1, 7 * 24 * 3600);
  out = std::chrono::seconds(n);
}

RuntimeLimits parse_limits(const json::value* v) {
  RuntimeLimits l;
  if (!v) return l;
  if (!v->is_object()) fail("limits must be an object");
  const json::object& o = v->get_object();
  read_limit(o, "archive_workers", l.archive_workers, 1, 256);
  read_limit(o, "io_workers", l.io_workers, 1, 1024);
  read_limit(o, "uring_queue_depth", l.uring_queue_depth, 1, 4096);
  read_limit(o, "read_block_size", l.read_block_size, 4096, 64 * 1024 * 1024);
  read_seconds(o, "rescan_interval_s", l.rescan_interval);
  read_seconds(o, "step_timeout_s", l.step_timeout);
  read_seconds(o, "store_timeout_s", l.store_timeout);
  read_seconds(o, "shutdown_grace_s", l.shutdown_grace);
  if (auto engine = optional_string(o, "file_engine", "limits.")) {
    if (*engine != "auto" && *engine != "io_uring" && *engine != "portable")
      fail("limits.file_engine must be \"auto\", \"io_uring\" or \"portable\", got \"" + *engine + "\"");
    l.file_engine = *engine;
  }
  return l;
}

std::optional<std::vector<std::string>> parse_volume_roots(const json::value* v) {
  if (!v) return std::nullopt;
  if (!v->is_array()) fail("volume_roots must be an array of absolute paths");
  std::vector<std::string> roots;
  for (const auto& r : v->get_array()) {
    if (!r.is_string() || !r.get_string().starts_with("/"))
      fail("volume_roots entries must be absolute paths, got " + shown(r));
    roots.emplace_back(r.get_string());
  }
  return roots;
}

// Fills everything but `id`; returns the first problem, named by its field.
std::optional<std::string> parse_instance_fields(const json::object& o, InstanceConfig& inst) {
  if (const json::value* c = given(o, "container")) {
    if (!c->is_string() || c->get_string().empty()) return "container must be a non-empty string or null";
    inst.container = std::string(c->get_string());
  }

  const json::value* sys = given(o, "system_volume");
  if (!sys || !sys->is_string() || !sys->get_string().starts_with("/"))
    return "system_volume must be an absolute host path";
  inst.system_volume = std::string(sys->get_string());

  if (const json::value* vols = given(o, "volumes")) {
    if (!vols->is_object()) return "volumes must be an object of {\"<host root>\": {\"bind\": \"<path>\"}}";
    // boost::json objects keep insertion order, which decides ties between equal binds.
    for (const auto& kv : vols->get_object()) {
      const std::string where = "volumes[\"" + std::string(kv.key()) + "\"]";
      if (kv.key().empty() || !kv.key().starts_with("/")) return where + ": host root must be an absolute path";
      if (!kv.value().is_object()) return where + " must be an object with a string \"bind\"";
      const json::object& spec = kv.value().get_object();
      const json::value* bind = spec.if_contains("bind");
      if (!bind || !bind->is_string() || bind->get_string().empty())
        return where + ".bind must be a non-empty string";
      VolumeMount m{std::string(kv.key()), std::string(bind->get_string())};
      if (const json::value* mode = given(spec, "mode")) {
        if (!mode->is_string()) return where + ".mode must be a string";
        m.mode = std::string(mode->get_string());
      }
      inst.volumes.push_back(std::move(m));
    }
  }

  auto parsed = core::parse_sync_config(o.if_contains("SYNC"));
  inst.sync = std::move(parsed.config);
  return parsed.error;
}

InstanceConfig parse_instance(const json::value& v, std::size_t index) {
  const std::string where = "instances[" + std::to_string(index) + "]";
  if (!v.is_object()) fail(where + " must be an object");
  const json::object& o = v.get_object();
  const json::value* id = o.if_contains("id");
  // Without an id the problem cannot be reported against an instance.
  if (!id || !id->is_string() || id->get_string().empty()) fail(where + ".id must be a non-empty string");

  InstanceConfig inst;
  inst.id = std::string(id->get_string());
  if (auto error = parse_instance_fields(o, inst)) {
    inst.error = "instance \"" + inst.id + "\": " + *error;
    inst.sync.enabled = false;
    inst.sync.role = Role::none;
  }
  return inst;
}

}  // namespace

NodeConfig parse_node_config(std::string_view json_text) {
  auto parsed = core::parse_json(json_text);
  if (!parsed) fail("configuration is not valid JSON: " + parsed.error().message);
  if (!parsed->is_object()) fail("configuration must be a JSON object");
  const json::object& root = parsed->get_object();

  NodeConfig cfg;
  cfg.data_dir = required_string(root, "data_dir");
  const auto node_id = optional_string(root, "node_id", "");
  cfg.node_id = node_id && !node_id->empty() ? *node_id : host_name();
  cfg.backend = parse_backend(given(root, "backend"));
  cfg.volume_roots = parse_volume_roots(given(root, "volume_roots"));
  if (auto legacy = optional_string(root, "legacy_volumes_root", "")) cfg.legacy_volumes_root = *legacy;
  cfg.docker_socket = optional_string(root, "docker_socket", "");
  cfg.limits = parse_limits(given(root, "limits"));

  if (const json::value* list = given(root, "instances")) {
    if (!list->is_array()) fail("instances must be an array");
    std::set<std::string> ids;
    for (std::size_t i = 0; i < list->get_array().size(); ++i) {
      InstanceConfig inst = parse_instance(list->get_array()[i], i);
      if (!ids.insert(inst.id).second) fail("duplicate instance id \"" + inst.id + "\"");
      cfg.instances.push_back(std::move(inst));
    }
  }
  return cfg;
}

NodeConfig load_node_config(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("cannot open " + file.string() + ": " + std::strerror(errno));
  std::string text;
  std::array<char, 64 * 1024> buf{};
  while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
    text.append(buf.data(), static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_config_bytes) fail(file.string() + " is larger than " + std::to_string(max_config_bytes) + " bytes");
  }
  if (in.bad()) fail("cannot read " + file.string());
  try {
    return parse_node_config(text);
  } catch (const ConfigError& e) {
    throw ConfigError(file.string() + ": " + e.what());
  }
}

}  // namespace carsync
