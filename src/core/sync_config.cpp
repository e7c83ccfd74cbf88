#include "core/sync_config.hpp"

#include "core/json_text.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <string_view>
#include <vector>

namespace carsync {

std::string_view to_string(Role r) noexcept {
  switch (r) {
    case Role::none: return "none";
    case Role::provider: return "provider";
    case Role::consumer: return "consumer";
  }
  return "none";
}

std::string_view to_string(ArchiveFormat f) noexcept {
  switch (f) {
    case ArchiveFormat::tar_gz: return "tar.gz";
    case ArchiveFormat::tar_zst: return "tar.zst";
  }
  return "tar.gz";
}

std::string_view to_string(TrustPolicy p) noexcept {
  return p == TrustPolicy::warn ? "warn" : "enforce";
}

}  // namespace carsync

namespace carsync::core {
namespace {

namespace json = boost::json;

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Python's float(): JSON numbers and numeric strings (which may spell inf or nan).
// Booleans are not numbers here, unlike in Python.
std::optional<double> as_number(const json::value* v) {
  if (!v) return std::nullopt;
  switch (v->kind()) {
    case json::kind::int64: return static_cast<double>(v->get_int64());
    case json::kind::uint64: return static_cast<double>(v->get_uint64());
    case json::kind::double_: return v->get_double();
    case json::kind::string: {
      std::string_view s = trim(v->get_string());
      if (!s.empty() && s.front() == '+') s.remove_prefix(1);
      double d = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
      if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
      return d;
    }
    default: return std::nullopt;
  }
}

std::optional<std::int64_t> as_integer(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return static_cast<std::int64_t>(v.get_uint64());
  return std::nullopt;
}

// A key whose absence (or null) means "use the default".
const json::value* given(const json::object& block, std::string_view key) {
  const json::value* v = block.if_contains(key);
  return v && !v->is_null() ? v : nullptr;
}

double clamp_interval(const json::value* v, double floor, double fallback) {
  const auto d = as_number(v);
  if (!d || !std::isfinite(*d)) return fallback;
  return std::max(*d, floor);
}

// Bounded so that a huge value cannot flood the log.
std::string shown(const json::value& v) { return first_code_points(to_canonical_json(v), 80); }

// Every key this parser reads; anything else in a SYNC block is reported and ignored.
constexpr std::string_view known_sync_keys[] = {
    "ENABLED", "KEY", "TYPE", "POLL_INTERVAL", "HSYNC_POLL_INTERVAL", "ALLOW_ONLINE_PROVIDER_CAPTURE",
    "CONSUMER_APPLY_MODE", "ARCHIVE_FORMAT", "COMPRESSION_LEVEL", "APPLY_SEMANTICS", "INITIAL_SYNC_TIMEOUT",
    "DELTA", "DELTA_VERSIONS", "DELTA_MIN_BYTES"};

// "SYNC.<key>: unknown key ignored (did you mean <known>?)". disabled_reason() reads these
// back to explain an absent ENABLED, so the pieces are named once, here.
constexpr std::string_view sync_prefix = "SYNC.";
constexpr std::string_view unknown_note = ": unknown key ignored";
constexpr std::string_view did_you_mean = " (did you mean ";

std::string unknown_key_warning(std::string_view key) {
  // Capped: the key is only echoed, and a huge one must not flood the log.
  std::string w = std::string(sync_prefix) + first_code_points(key, 80) + std::string(unknown_note);
  if (const auto near = closest_key(key, known_sync_keys)) w += std::string(did_you_mean) + std::string(*near) + "?)";
  return w;
}

// A SYNC problem that disables the instance: the message and the key it is about.
struct SyncProblem {
  std::string message;
  std::string field;
};

// The carsync-only keys; only consulted once the block is enabled with a valid KEY/TYPE.
std::optional<SyncProblem> parse_carsync_keys(const json::object& block, SyncConfig& cfg) {
  if (const auto* v = given(block, "ARCHIVE_FORMAT")) {
    if (v->is_string() && v->get_string() == "tar.gz") {
      cfg.archive_format = ArchiveFormat::tar_gz;
    } else if (v->is_string() && v->get_string() == "tar.zst") {
      cfg.archive_format = ArchiveFormat::tar_zst;
    } else {
      return SyncProblem{"SYNC.ARCHIVE_FORMAT must be \"tar.gz\" or \"tar.zst\", got " + shown(*v),
                         "SYNC.ARCHIVE_FORMAT"};
    }
  }

  const bool zstd = cfg.archive_format == ArchiveFormat::tar_zst;
  const int max_level = zstd ? 19 : 9;
  cfg.compression_level = zstd ? 3 : 6;
  if (const auto* v = given(block, "COMPRESSION_LEVEL")) {
    const auto level = as_integer(*v);
    if (!level || *level < 1 || *level > max_level) {
      return SyncProblem{"SYNC.COMPRESSION_LEVEL must be an integer from 1 to " + std::to_string(max_level) +
                             " for " + std::string(to_string(cfg.archive_format)) + ", got " + shown(*v),
                         "SYNC.COMPRESSION_LEVEL"};
    }
    cfg.compression_level = static_cast<int>(*level);
  }

  if (const auto* v = given(block, "APPLY_SEMANTICS")) {
    if (v->is_string() && v->get_string() == "overlay") {
      cfg.apply_semantics = ApplySemantics::overlay;
    } else if (v->is_string() && v->get_string() == "mirror") {
      cfg.apply_semantics = ApplySemantics::mirror;
    } else {
      return SyncProblem{"SYNC.APPLY_SEMANTICS must be \"overlay\" or \"mirror\", got " + shown(*v),
                         "SYNC.APPLY_SEMANTICS"};
    }
  }

  if (const auto* v = given(block, "INITIAL_SYNC_TIMEOUT")) {
    const bool is_number = v->is_number();
    const double d = is_number ? v->to_number<double>() : 0;
    if (!is_number || !std::isfinite(d) || d < 0)
      return SyncProblem{"SYNC.INITIAL_SYNC_TIMEOUT must be a number of seconds >= 0, got " + shown(*v),
                         "SYNC.INITIAL_SYNC_TIMEOUT"};
    cfg.initial_sync_timeout = d;
  }

  if (const auto* v = given(block, "DELTA")) {
    const auto flag = parse_flag(v);
    if (!flag) return SyncProblem{"SYNC.DELTA must be true or false, got " + shown(*v), "SYNC.DELTA"};
    cfg.delta = *flag;
  }
  if (const auto* v = given(block, "DELTA_VERSIONS")) {
    const auto k = as_integer(*v);
    if (!k || *k < 1 || *k > 64)
      return SyncProblem{"SYNC.DELTA_VERSIONS must be an integer from 1 to 64, got " + shown(*v),
                         "SYNC.DELTA_VERSIONS"};
    cfg.delta_versions = static_cast<std::uint32_t>(*k);
  }
  if (const auto* v = given(block, "DELTA_MIN_BYTES")) {
    const auto n = as_integer(*v);
    if (!n || *n < 0)
      return SyncProblem{"SYNC.DELTA_MIN_BYTES must be an integer >= 0, got " + shown(*v), "SYNC.DELTA_MIN_BYTES"};
    cfg.delta_min_bytes = static_cast<std::uint64_t>(*n);
  }
  return std::nullopt;
}

}  // namespace

double parse_poll_interval(const boost::json::value* v) { return clamp_interval(v, 1.0, 10.0); }

double parse_hsync_poll_interval(const boost::json::value* v) { return clamp_interval(v, 10.0, 60.0); }

std::optional<bool> parse_flag(const boost::json::value* v) {
  if (!v) return std::nullopt;
  if (v->is_bool()) return v->get_bool();
  if (const auto i = as_integer(*v); i && (*i == 0 || *i == 1)) return *i == 1;
  if (v->is_string()) {
    const std::string s = lower(trim(v->get_string()));
    if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
    if (s == "0" || s == "false" || s == "no" || s == "off" || s.empty()) return false;
  }
  return std::nullopt;
}

ParsedSync parse_sync_config(const boost::json::value* sync_block) {
  ParsedSync out;
  SyncConfig& cfg = out.config;
  if (sync_block && !sync_block->is_null() && !sync_block->is_object())
    cfg.warnings.push_back("SYNC: " + shown(*sync_block) + " is not an object; sync stays disabled");
  if (!sync_block || !sync_block->is_object()) return out;
  const json::object& block = sync_block->get_object();
  cfg.block_given = true;
  cfg.enabled_given = block.contains("ENABLED");

  // Before anything else: a near-miss (ENABLE) is the likely reason the block is disabled.
  for (const auto& kv : block) {
    if (std::find(std::begin(known_sync_keys), std::end(known_sync_keys), kv.key()) == std::end(known_sync_keys))
      cfg.warnings.push_back(unknown_key_warning(kv.key()));
  }

  // A present flag we cannot read is off; the warning tells the operator why.
  const auto flag = [&](std::string_view key) {
    const json::value* v = block.if_contains(key);
    if (!v) return false;
    if (const auto f = parse_flag(v)) return *f;
    cfg.warnings.push_back("SYNC." + std::string(key) + ": cannot read " + shown(*v) +
                           " as a boolean; using false");
    return false;
  };
  cfg.enabled = flag("ENABLED");
  cfg.allow_online_capture = flag("ALLOW_ONLINE_PROVIDER_CAPTURE");

  const auto interval = [&](std::string_view key, double fallback, double parsed) {
    const json::value* v = given(block, key);
    const auto d = as_number(v);
    if (v && (!d || !std::isfinite(*d)))
      cfg.warnings.push_back("SYNC." + std::string(key) + ": " + shown(*v) + " is not a finite number; using " +
                             std::to_string(static_cast<int>(fallback)) + " s");
    return parsed;
  };
  cfg.poll_interval = interval("POLL_INTERVAL", 10.0, parse_poll_interval(given(block, "POLL_INTERVAL")));
  cfg.hsync_poll_interval =
      interval("HSYNC_POLL_INTERVAL", 60.0, parse_hsync_poll_interval(given(block, "HSYNC_POLL_INTERVAL")));

  if (const auto* v = given(block, "CONSUMER_APPLY_MODE")) {
    if (v->is_string()) {
      cfg.consumer_apply_mode = std::string(v->get_string());
    } else {
      cfg.warnings.push_back("SYNC.CONSUMER_APPLY_MODE: " + shown(*v) + " is not a string; using offline_restart");
    }
  }

  const json::value* key = block.if_contains("KEY");
  if (key && key->is_string()) cfg.key = std::string(key->get_string());
  if (!cfg.enabled) return out;

  const auto disable = [&](SyncProblem problem) {
    cfg.enabled = false;
    cfg.role = Role::none;
    out.error = std::move(problem.message);
    out.error_field = std::move(problem.field);
    return out;
  };
  if (cfg.key.empty()) return disable({"SYNC.KEY must be a non-empty string", "SYNC.KEY"});

  const json::value* type = block.if_contains("TYPE");
  if (type && type->is_string() && type->get_string() == "provider") {
    cfg.role = Role::provider;
  } else if (type && type->is_string() && type->get_string() == "consumer") {
    cfg.role = Role::consumer;
  } else {
    return disable({"SYNC.TYPE must be \"provider\" or \"consumer\", got " +
                        (type ? shown(*type) : std::string("nothing")),
                    "SYNC.TYPE"});
  }

  if (auto problem = parse_carsync_keys(block, cfg)) return disable(std::move(*problem));
  return out;
}

std::string disabled_reason(const InstanceConfig& inst) {
  if (inst.error) return *inst.error;
  const SyncConfig& sync = inst.sync;
  if (sync.enabled) return "";

  // The reason, followed by the warnings that explain it (an unreadable value, a near-miss).
  const auto with_notes = [&](std::string reason, auto&& explains) {
    std::vector<std::string> notes;
    for (const auto& w : sync.warnings)
      if (auto note = explains(std::string_view(w))) notes.push_back(std::move(*note));
    for (std::size_t i = 0; i < notes.size(); ++i) reason += (i == 0 ? " (" : "; ") + notes[i];
    return notes.empty() ? reason : reason + ")";
  };
  const auto starting_with = [](std::string_view prefix) {
    return [prefix](std::string_view w) -> std::optional<std::string> {
      if (!w.starts_with(prefix)) return std::nullopt;
      return std::string(w);
    };
  };

  if (!sync.block_given) return with_notes("no SYNC block", starting_with("SYNC: "));
  if (sync.enabled_given) return with_notes("SYNC.ENABLED is false", starting_with("SYNC.ENABLED: "));
  // "SYNC.ENABLE: unknown key ignored (did you mean ENABLED?)" -> "SYNC.ENABLE was given: did you mean ENABLED?"
  const std::string near_miss = std::string(unknown_note) + std::string(did_you_mean) + "ENABLED?)";
  return with_notes("SYNC.ENABLED is absent", [&](std::string_view w) -> std::optional<std::string> {
    if (!w.starts_with(sync_prefix) || !w.ends_with(near_miss)) return std::nullopt;
    w.remove_suffix(near_miss.size());
    return std::string(w) + " was given: did you mean ENABLED?";
  });
}

std::size_t key_distance(std::string_view a, std::string_view b) {
  const auto same = [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  };
  // Three rows of the classic table: the one before the previous serves transpositions.
  std::vector<std::size_t> before(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same(a[i - 1], b[j - 1]) ? 0 : 1)});
      if (i > 1 && j > 1 && same(a[i - 1], b[j - 2]) && same(a[i - 2], b[j - 1]))
        cur[j] = std::min(cur[j], before[j - 2] + 1);
    }
    std::swap(before, prev);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::optional<std::string_view> closest_key(std::string_view key, std::span<const std::string_view> known) {
  std::optional<std::string_view> best;
  std::size_t best_distance = 0;
  for (std::string_view candidate : known) {
    // A third of the length: one slip in "KEY", two in "volumes", three at most anywhere.
    const std::size_t limit = std::clamp<std::size_t>(candidate.size() / 3, 1, 3);
    const std::size_t gap = std::max(key.size(), candidate.size()) - std::min(key.size(), candidate.size());
    if (gap > limit) continue;  // cannot be close; also keeps a huge key from costing anything
    const std::size_t d = key_distance(key, candidate);
    if (d <= limit && (!best || d < best_distance)) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

bool valid_instance_id(std::string_view id) {
  if (id.empty() || id.size() > 128 || id.front() == '.') return false;
  // ASCII ranges, not isalnum(): the answer must not depend on the process locale.
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

}  // namespace carsync::core
