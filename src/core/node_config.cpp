#include "carsync/config.hpp"

#include "core/instance_validation.hpp"
#include "core/json_text.hpp"
#include "core/sync_config.hpp"

#include <arpa/inet.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <span>

namespace carsync {
namespace {

namespace json = boost::json;

// A node configuration is a few kilobytes; anything near this is not one.
constexpr std::size_t max_config_bytes = 16 * 1024 * 1024;

// The keys each object may hold. Anything else stops start-up: a misspelt key would
// otherwise be silently ignored and its default used (SYNC is the exception, see
// core::parse_sync_config).
using Keys = std::span<const std::string_view>;
constexpr std::string_view node_keys[] = {"data_dir",      "node_id",        "backend", "volume_roots",
                                          "legacy_volumes_root", "docker_socket", "system_volume_image",
                                          "control_socket", "metrics_listen", "limits", "instances"};
constexpr std::string_view backend_keys[] = {"kind", "cstore_url", "r1fs_url", "store_dir"};
constexpr std::string_view limits_keys[] = {
    "archive_workers", "io_workers",      "uring_queue_depth", "read_block_size",   "rescan_interval_s",
    "step_timeout_s",  "store_timeout_s", "shutdown_grace_s",  "cleanup_timeout_s", "history_keep", "file_engine",
    "progress_interval_ms"};
constexpr std::string_view image_keys[] = {"dir", "size_mib"};
constexpr std::string_view instance_keys[] = {"id",      "container", "system_volume", "system_volume_image",
                                              "volumes", "SYNC",      "signing",       "trust"};
constexpr std::string_view signing_keys[] = {"key_file"};
constexpr std::string_view trust_keys[] = {"keys", "policy"};
constexpr std::string_view volume_keys[] = {"bind", "mode"};

constexpr std::uint64_t max_image_mib = 1024;
constexpr std::uint64_t default_image_mib = 10;  // the reference's 10M (spec §2.1)

// A problem with a value, and the dotted path of its key.
struct Problem {
  std::string message;
  std::string field;
};

std::string shown(const json::value& v) { return core::first_code_points(core::to_canonical_json(v), 80); }

[[noreturn]] void fail(const std::string& reason, std::string field) { throw ConfigError(reason, std::move(field)); }
[[noreturn]] void fail(Problem p) { throw ConfigError(p.message, std::move(p.field)); }

// ("limits", "io_workers") -> "limits.io_workers"; ("", "id") -> "id".
std::string join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

const json::value* given(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && !v->is_null() ? v : nullptr;
}

// `path` is the object's dotted path ("" for the document itself, then `root` names it).
void reject_unknown_keys(const json::object& o, Keys known, std::string_view path, std::string_view root = {}) {
  for (const auto& kv : o) {
    if (std::find(known.begin(), known.end(), kv.key()) != known.end()) continue;
    std::string message =
        "unknown key " + shown(json::value(kv.key())) + " in " + std::string(path.empty() ? root : path);
    if (const auto near = core::closest_key(kv.key(), known))
      message += " (did you mean \"" + std::string(*near) + "\"?)";
    fail(message, join(path, kv.key()));
  }
}

std::optional<std::uint64_t> as_count(const json::value& v) {
  if (v.is_uint64()) return v.get_uint64();
  if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::uint64_t>(v.get_int64());
  return std::nullopt;
}

std::string required_string(const json::object& o, std::string_view key) {
  const json::value* v = given(o, key);
  if (!v || !v->is_string() || v->get_string().empty())
    fail(std::string(key) + " must be a non-empty string", std::string(key));
  return std::string(v->get_string());
}

std::optional<std::string> optional_string(const json::object& o, std::string_view key, std::string_view path) {
  const json::value* v = given(o, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) fail(join(path, key) + " must be a string, got " + shown(*v), join(path, key));
  return std::string(v->get_string());
}

// "IPv4:PORT" or "[IPv6]:PORT", port 0..65535 (0: the system picks one).
bool is_listen_address(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size() || text.size() - colon - 1 > 5) return false;
  unsigned port = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9') return false;
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port > 65535) return false;
  std::string host(text.substr(0, colon));
  unsigned char addr[16];
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    return ::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), addr) == 1;
  return ::inet_pton(AF_INET, host.c_str(), addr) == 1;
}

std::string host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0)
    fail(std::string("gethostname failed: ") + std::strerror(errno), "node_id");
  return buf.data();
}

BackendConfig parse_backend(const json::value* v) {
  BackendConfig b;
  if (!v) return b;
  if (!v->is_object()) fail("backend must be an object", "backend");
  const json::object& o = v->get_object();
  reject_unknown_keys(o, backend_keys, "backend");
  if (auto kind = optional_string(o, "kind", "backend")) b.kind = *kind;
  if (b.kind != "local" && b.kind != "r1")
    fail("backend.kind must be \"local\" or \"r1\", got \"" + b.kind + "\"", "backend.kind");
  b.cstore_url = optional_string(o, "cstore_url", "backend").value_or("");
  b.r1fs_url = optional_string(o, "r1fs_url", "backend").value_or("");
  if (auto dir = optional_string(o, "store_dir", "backend")) {
    if (!dir->starts_with("/")) fail("backend.store_dir must be an absolute path, got \"" + *dir + "\"", "backend.store_dir");
    b.store_dir = *dir;
  }
  return b;
}

// An integer limit in [lo, hi]; the bounds keep a typo from asking for absurd resources.
template <class T>
void read_limit(const json::object& o, std::string_view key, T& out, std::uint64_t lo, std::uint64_t hi) {
  const json::value* v = given(o, key);
  if (!v) return;
  const std::string field = join("limits", key);
  const auto n = as_count(*v);
  if (!n) fail(field + " must be an integer, got " + shown(*v), field);
  if (*n < lo || *n > hi) {
    fail(field + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
             std::to_string(*n),
         field);
  }
  out = static_cast<T>(*n);
}

void read_seconds(const json::object& o, std::string_view key, std::chrono::seconds& out,
                  std::uint64_t hi = 7 * 24 * 3600) {
  auto n = static_cast<std::uint64_t>(out.count());
  read_limit(o, key, n, 1, hi);
  out = std::chrono::seconds(n);
}

RuntimeLimits parse_limits(const json::value* v) {
  RuntimeLimits l;
  if (!v) return l;
  if (!v->is_object()) fail("limits must be an object", "limits");
  const json::object& o = v->get_object();
  reject_unknown_keys(o, limits_keys, "limits");
  read_limit(o, "archive_workers", l.archive_workers, 1, 256);
  read_limit(o, "io_workers", l.io_workers, 1, 1024);
  read_limit(o, "uring_queue_depth", l.uring_queue_depth, 1, 4096);
  read_limit(o, "read_block_size", l.read_block_size, 4096, 64 * 1024 * 1024);
  read_seconds(o, "rescan_interval_s", l.rescan_interval);
  {
    auto ms = static_cast<std::uint64_t>(l.progress_interval.count());
    read_limit(o, "progress_interval_ms", ms, 50, 60'000);
    l.progress_interval = std::chrono::milliseconds(ms);
  }
  read_seconds(o, "step_timeout_s", l.step_timeout);
  read_seconds(o, "store_timeout_s", l.store_timeout);
  read_seconds(o, "shutdown_grace_s", l.shutdown_grace);
  // A clean-up step (restarting a container carsync stopped) is short; an hour is already absurd.
  read_seconds(o, "cleanup_timeout_s", l.cleanup_timeout, 3600);
  // Two: the latest and the one being retired.
  read_limit(o, "history_keep", l.history_keep, 2, 1'000'000);
  if (auto engine = optional_string(o, "file_engine", "limits")) {
    if (*engine != "auto" && *engine != "io_uring" && *engine != "portable")
      fail("limits.file_engine must be \"auto\", \"io_uring\" or \"portable\", got \"" + *engine + "\"",
           "limits.file_engine");
    l.file_engine = *engine;
  }
  return l;
}

std::optional<std::vector<std::string>> parse_volume_roots(const json::value* v) {
  if (!v) return std::nullopt;
  if (!v->is_array()) fail("volume_roots must be an array of absolute paths", "volume_roots");
  std::vector<std::string> roots;
  for (std::size_t i = 0; i < v->get_array().size(); ++i) {
    const json::value& r = v->get_array()[i];
    if (!r.is_string() || !r.get_string().starts_with("/"))
      fail("volume_roots entries must be absolute paths, got " + shown(r), "volume_roots[" + std::to_string(i) + "]");
    roots.emplace_back(r.get_string());
  }
  return roots;
}

// {"dir": "/abs", "size_mib": N}; `path` is where the object sits ("system_volume_image").
// Unknown keys are the caller's to reject (they throw even where bad values do not).
std::optional<Problem> parse_image(const json::value& v, std::string_view path, SystemVolumeImage& out) {
  if (!v.is_object())
    return Problem{std::string(path) + " must be an object {\"dir\": \"/abs/path\", \"size_mib\": N}",
                   std::string(path)};
  const json::object& o = v.get_object();
  const json::value* dir = given(o, "dir");
  if (!dir || !dir->is_string() || !dir->get_string().starts_with("/"))
    return Problem{join(path, "dir") + " must be an absolute path", join(path, "dir")};
  std::uint64_t mib = default_image_mib;
  if (const json::value* size = given(o, "size_mib")) {
    const auto n = as_count(*size);
    if (!n || *n < 1 || *n > max_image_mib)
      return Problem{join(path, "size_mib") + " must be an integer from 1 to " + std::to_string(max_image_mib) +
                         ", got " + shown(*size),
                     join(path, "size_mib")};
    mib = *n;
  }
  out = SystemVolumeImage{.image_dir = std::string(dir->get_string()), .size_bytes = mib * 1024 * 1024};
  return std::nullopt;
}

std::string volume_path(std::string_view host_root) { return "volumes[\"" + std::string(host_root) + "\"]"; }

// Every key of an instance, its system_volume_image and its volumes entries must be known,
// whatever the values: a misspelt key stops start-up even when a value nearby is also bad.
// `path` is the instance's dotted path ("instances[0]"), "" for a lone instance.
void reject_unknown_instance_keys(const json::object& o, std::string_view path) {
  reject_unknown_keys(o, instance_keys, path, "the instance");
  if (const json::value* img = given(o, "system_volume_image"); img && img->is_object())
    reject_unknown_keys(img->get_object(), image_keys, join(path, "system_volume_image"));
  if (const json::value* vols = given(o, "volumes"); vols && vols->is_object()) {
    for (const auto& kv : vols->get_object())
      if (kv.value().is_object())
        reject_unknown_keys(kv.value().get_object(), volume_keys, join(path, volume_path(kv.key())));
  }
  if (const json::value* s = given(o, "signing"); s && s->is_object())
    reject_unknown_keys(s->get_object(), signing_keys, join(path, "signing"));
  if (const json::value* t = given(o, "trust"); t && t->is_object())
    reject_unknown_keys(t->get_object(), trust_keys, join(path, "trust"));
}

// "signing": {"key_file": PATH | [PATH, ...]}. The files are read when the instance starts.
std::optional<Problem> parse_signing(const json::value& v, SigningConfig& out) {
  if (!v.is_object()) return Problem{"signing must be an object {\"key_file\": PATH}", "signing"};
  const json::value* files = given(v.get_object(), "key_file");
  if (!files) return Problem{"signing.key_file must name the secret key file (carsync keys generate)", "signing.key_file"};
  const json::array single{*files};
  const json::array& list = files->is_array() ? files->get_array() : single;
  if (list.empty()) return Problem{"signing.key_file must name at least one file", "signing.key_file"};
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string field = files->is_array() ? "signing.key_file[" + std::to_string(i) + "]" : "signing.key_file";
    if (!list[i].is_string() || !list[i].get_string().starts_with("/"))
      return Problem{field + " must be an absolute path, got " + shown(list[i]), field};
    out.key_files.emplace_back(std::string(list[i].get_string()));
  }
  return std::nullopt;
}

// "trust": {"keys": [PUBLIC_KEY, ...], "policy": "enforce" | "warn"}; every key must parse.
std::optional<Problem> parse_trust(const json::value& v, TrustConfig& out) {
  if (!v.is_object()) return Problem{"trust must be an object {\"keys\": [PUBLIC_KEY, ...]}", "trust"};
  const json::object& o = v.get_object();
  const json::value* keys = given(o, "keys");
  if (!keys || !keys->is_array() || keys->get_array().empty())
    return Problem{"trust.keys must be a non-empty list of public keys (carsync keys show)", "trust.keys"};
  for (std::size_t i = 0; i < keys->get_array().size(); ++i) {
    const json::value& k = keys->get_array()[i];
    const std::string field = "trust.keys[" + std::to_string(i) + "]";
    if (!k.is_string()) return Problem{field + " must be a public key string, got " + shown(k), field};
    out.keys.emplace_back(k.get_string());  // checked with the role (validate_signing_and_trust)
  }
  if (const json::value* policy = given(o, "policy")) {
    if (policy->is_string() && policy->get_string() == "enforce") out.policy = TrustPolicy::enforce;
    else if (policy->is_string() && policy->get_string() == "warn") out.policy = TrustPolicy::warn;
    else return Problem{"trust.policy must be \"enforce\" or \"warn\", got " + shown(*policy), "trust.policy"};
  }
  return std::nullopt;
}

// Fills everything but `id`; returns the first bad value, its field relative to the instance.
std::optional<Problem> parse_instance_fields(const json::object& o, InstanceConfig& inst) {
  if (const json::value* c = given(o, "container")) {
    if (!c->is_string() || c->get_string().empty())
      return Problem{"container must be a non-empty string or null", "container"};
    inst.container = std::string(c->get_string());
  }

  const json::value* sys = given(o, "system_volume");
  if (!sys || !sys->is_string() || !sys->get_string().starts_with("/"))
    return Problem{"system_volume must be an absolute host path", "system_volume"};
  inst.system_volume = std::string(sys->get_string());

  // Absent or null: the node's default (already in inst).
  if (const json::value* img = given(o, "system_volume_image")) {
    SystemVolumeImage own;
    if (auto problem = parse_image(*img, "system_volume_image", own)) return problem;
    inst.system_volume_image = std::move(own);
  }

  if (const json::value* vols = given(o, "volumes")) {
    if (!vols->is_object())
      return Problem{"volumes must be an object of {\"<host root>\": {\"bind\": \"<path>\"}}", "volumes"};
    // boost::json objects keep insertion order, which decides ties between equal binds.
    for (const auto& kv : vols->get_object()) {
      const std::string where = volume_path(kv.key());
      if (kv.key().empty() || !kv.key().starts_with("/"))
        return Problem{where + ": host root must be an absolute path", where};
      if (!kv.value().is_object()) return Problem{where + " must be an object with a string \"bind\"", where};
      const json::object& spec = kv.value().get_object();
      const json::value* bind = spec.if_contains("bind");
      if (!bind || !bind->is_string() || bind->get_string().empty())
        return Problem{where + ".bind must be a non-empty string", where + ".bind"};
      VolumeMount m{std::string(kv.key()), std::string(bind->get_string())};
      if (const json::value* mode = given(spec, "mode")) {
        if (!mode->is_string()) return Problem{where + ".mode must be a string", where + ".mode"};
        m.mode = std::string(mode->get_string());
      }
      inst.volumes.push_back(std::move(m));
    }
  }

  auto parsed = core::parse_sync_config(o.if_contains("SYNC"));
  inst.sync = std::move(parsed.config);
  if (parsed.error) return Problem{std::move(*parsed.error), std::move(parsed.error_field)};

  if (const json::value* signing = given(o, "signing")) {
    SigningConfig own;
    if (auto problem = parse_signing(*signing, own)) return problem;
    inst.signing = std::move(own);
  }
  if (const json::value* trust = given(o, "trust")) {
    TrustConfig own;
    if (auto problem = parse_trust(*trust, own)) return problem;
    inst.trust = std::move(own);
  }
  if (auto e = core::validate_signing_and_trust(inst)) return Problem{std::move(e->message), std::move(e->field)};
  return std::nullopt;
}

// One instance object, in a file (`path` = "instances[3]") or alone (`path` = "").
InstanceConfig parse_instance(const json::value& v, std::string_view path, const NodeConfig& defaults) {
  if (!v.is_object())
    fail((path.empty() ? std::string("an instance") : std::string(path)) + " must be an object", std::string(path));
  const json::object& o = v.get_object();
  reject_unknown_instance_keys(o, path);

  // Without a valid id the problem cannot be reported against an instance.
  const std::string id_field = join(path, "id");
  const json::value* id = given(o, "id");
  if (!id || !id->is_string() || id->get_string().empty()) fail(id_field + " must be a non-empty string", id_field);
  if (!core::valid_instance_id(id->get_string()))
    fail(id_field + " must be 1-128 of [A-Za-z0-9._-], not starting with '.', got " + shown(*id), id_field);

  InstanceConfig inst;
  inst.id = std::string(id->get_string());
  inst.system_volume_image = defaults.system_volume_image;
  if (auto problem = parse_instance_fields(o, inst)) {
    inst.error = "instance \"" + inst.id + "\": " + problem->message;
    inst.error_field = std::move(problem->field);
    inst.sync.enabled = false;
    inst.sync.role = Role::none;
  }
  return inst;
}

}  // namespace

NodeConfig parse_node_config(std::string_view json_text) {
  auto parsed = core::parse_json(json_text);
  if (!parsed) fail("configuration is not valid JSON: " + parsed.error().message, "");
  if (!parsed->is_object()) fail("configuration must be a JSON object", "");
  const json::object& root = parsed->get_object();
  reject_unknown_keys(root, node_keys, "", "the configuration");

  NodeConfig cfg;
  cfg.data_dir = required_string(root, "data_dir");
  const auto node_id = optional_string(root, "node_id", "");
  cfg.node_id = node_id && !node_id->empty() ? *node_id : host_name();
  cfg.backend = parse_backend(given(root, "backend"));
  cfg.volume_roots = parse_volume_roots(given(root, "volume_roots"));
  if (auto legacy = optional_string(root, "legacy_volumes_root", "")) cfg.legacy_volumes_root = *legacy;
  cfg.docker_socket = optional_string(root, "docker_socket", "");
  if (auto socket = optional_string(root, "control_socket", "")) {
    // A unix socket path must fit sockaddr_un with its NUL; better said now than at bind().
    if (!socket->starts_with("/") || socket->size() >= sizeof(sockaddr_un::sun_path))
      fail("control_socket must be an absolute path shorter than " + std::to_string(sizeof(sockaddr_un::sun_path)) +
               " bytes, got " + shown(json::value(*socket)),
           "control_socket");
    cfg.control_socket = *socket;
  }
  if (auto listen = optional_string(root, "metrics_listen", ""); listen && !listen->empty()) {
    if (!is_listen_address(*listen))
      fail("metrics_listen must be IP:PORT (\"127.0.0.1:9464\", \"[::1]:9464\"), got " + shown(json::value(*listen)),
           "metrics_listen");
    cfg.metrics_listen = *listen;
  }
  if (const json::value* img = given(root, "system_volume_image")) {
    if (img->is_object()) reject_unknown_keys(img->get_object(), image_keys, "system_volume_image");
    SystemVolumeImage image;
    if (auto problem = parse_image(*img, "system_volume_image", image)) fail(std::move(*problem));
    cfg.system_volume_image = std::move(image);
  }
  cfg.limits = parse_limits(given(root, "limits"));

  // After every node-level key: instances take the node's defaults.
  if (const json::value* list = given(root, "instances")) {
    if (!list->is_array()) fail("instances must be an array", "instances");
    std::set<std::string> ids;
    for (std::size_t i = 0; i < list->get_array().size(); ++i) {
      const std::string path = "instances[" + std::to_string(i) + "]";
      InstanceConfig inst = parse_instance(list->get_array()[i], path, cfg);
      if (!ids.insert(inst.id).second) fail("duplicate instance id \"" + inst.id + "\"", join(path, "id"));
      cfg.instances.push_back(std::move(inst));
    }
  }
  return cfg;
}

InstanceConfig parse_instance_config(std::string_view json_text, const NodeConfig& defaults) {
  if (json_text.size() > max_config_bytes)
    fail("instance is larger than " + std::to_string(max_config_bytes) + " bytes", "");
  auto parsed = core::parse_json(json_text);
  if (!parsed) fail("instance is not valid JSON: " + parsed.error().message, "");
  return parse_instance(*parsed, "", defaults);
}

NodeConfig load_node_config(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("cannot open " + file.string() + ": " + std::strerror(errno), "");
  std::string text;
  std::array<char, 64 * 1024> buf{};
  while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
    text.append(buf.data(), static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_config_bytes)
      fail(file.string() + " is larger than " + std::to_string(max_config_bytes) + " bytes", "");
  }
  if (in.bad()) fail("cannot read " + file.string(), "");
  try {
    return parse_node_config(text);
  } catch (const ConfigError& e) {
    throw ConfigError(file.string() + ": " + e.what(), e.field());
  }
}

}  // namespace carsync
