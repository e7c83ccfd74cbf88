#include "cmd/cli_render.hpp"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <iterator>

namespace carsync::cmd {

namespace json = boost::json;

namespace {

const json::value* member(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && !v->is_null() ? v : nullptr;
}

const json::object* object_member(const json::object& o, std::string_view key) {
  const json::value* v = member(o, key);
  return v && v->is_object() ? &v->get_object() : nullptr;
}

std::string string_member(const json::object& o, std::string_view key) {
  const json::value* v = member(o, key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

double number_member(const json::object& o, std::string_view key, double fallback = 0) {
  const json::value* v = member(o, key);
  if (!v) return fallback;
  if (v->is_double()) return v->get_double();
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  return fallback;
}

std::uint64_t count_member(const json::object& o, std::string_view key) {
  const double d = number_member(o, key);
  return d > 0 ? static_cast<std::uint64_t>(d) : 0;
}

bool bool_member(const json::object& o, std::string_view key) {
  const json::value* v = member(o, key);
  return v && v->is_bool() && v->get_bool();
}

// The last success: a provider's publish or a consumer's apply.
const json::object* last_sync(const json::object& status) {
  if (const auto* p = object_member(status, "last_publish")) return p;
  return object_member(status, "last_apply");
}

// Cuts `s` to `width` display columns (the texts here are ASCII but for the bar).
std::string fit(std::string s, std::size_t width) {
  if (s.size() > width) s.resize(width);
  return s;
}

std::string utc_time(double epoch) {
  const std::time_t t = static_cast<std::time_t>(epoch);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::string human_bytes(std::uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  static constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes) / 1024;
  std::size_t u = 0;
  // Round first, so 1023.96 KiB becomes 1.0 MiB and not "1024.0 KiB".
  while (std::round(v * 10) / 10 >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, units[u]);
}

std::string human_rate(double bytes_per_second) {
  if (!(bytes_per_second >= 0)) return "-";
  return human_bytes(static_cast<std::uint64_t>(std::llround(bytes_per_second))) + "/s";
}

std::string human_age(double seconds) {
  if (!(seconds >= 0)) return "-";
  const auto s = static_cast<std::uint64_t>(seconds);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

std::string cid_prefix(std::string_view cid, std::size_t n) {
  if (cid.empty()) return "-";
  return std::string(cid.substr(0, n));
}

std::string instance_state(const json::object& status) {
  if (!bool_member(status, "enabled") || member(status, "config_error") ||
      string_member(status, "phase") == "disabled")
    return "disabled";
  if (bool_member(status, "halted")) return "halted";
  // A record no trusted key signed (or a rollback, an equivocation) stands out: it is not a
  // fault of this node and backing off will not make it go away.
  if (const auto* q = object_member(status, "quarantine"))
    return string_member(*q, "stage") == "signature" ? "untrusted" : "quarantined";
  if (const auto* error = object_member(status, "error")) {
    const json::object* ok = last_sync(status);
    if (!ok || number_member(*error, "time") > number_member(*ok, "time")) return "failing";
  }
  return "ok";
}

std::string progress_bar(std::uint64_t done, std::uint64_t total, std::size_t width) {
  width = std::max<std::size_t>(width, 3);
  const std::size_t inner = width - 2;
  if (total == 0) {
    // Unknown total (an archive being built): a "<=>" that moves one column per MiB done, so
    // the bar still shows that bytes are moving.
    if (inner < 3 || done == 0) return "[" + std::string(inner, '-') + "]";
    const std::size_t span = inner - 3 + 1;
    const std::size_t at = static_cast<std::size_t>((done >> 20) % span);
    return "[" + std::string(at, '-') + "<=>" + std::string(inner - 3 - at, '-') + "]";
  }
  const auto filled = static_cast<std::size_t>(static_cast<long double>(std::min(done, total)) / total * inner);
  return "[" + std::string(filled, '#') + std::string(inner - filled, '-') + "]";
}

std::string render_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + '\n';
  }
  return out;
}

std::string render_status(const json::object& node, double now) {
  std::vector<std::vector<std::string>> rows{{"INSTANCE", "ROLE", "PHASE", "LAST SYNC", "SIZE", "CID", "STATE"}};
  if (const json::value* list = member(node, "instances"); list && list->is_array()) {
    for (const json::value& v : list->get_array()) {
      if (!v.is_object()) continue;
      const json::object& s = v.get_object();
      const json::object* sync = last_sync(s);
      rows.push_back({string_member(s, "id"), string_member(s, "role"), string_member(s, "phase"),
                      sync ? human_age(now - number_member(*sync, "time")) + " ago" : "never",
                      sync ? human_bytes(count_member(*sync, "size")) : "-",
                      cid_prefix(string_member(s, "last_cid")), instance_state(s)});
    }
  }
  return render_table(rows);
}

std::string render_history(const json::object& history) {
  std::vector<std::vector<std::string>> rows{{"DIR", "WRITTEN", "VERSION", "CID", "SIZE"}};
  for (std::string_view dir : {"sent", "received"}) {
    const json::value* list = member(history, dir);
    if (!list || !list->is_array()) continue;
    for (const json::value& v : list->get_array()) {
      if (!v.is_object()) continue;
      const json::object& e = v.get_object();
      // carsync stamps each entry; the reference's have only the record's timestamp.
      double written = number_member(e, "history_written_at_ns") / 1e9;
      if (written <= 0) written = number_member(e, "timestamp");
      const json::object* manifest = object_member(e, "manifest");
      const json::value* version = member(e, "version");
      rows.push_back({std::string(dir), written > 0 ? utc_time(written) : "-",
                      version ? json::serialize(*version) : "-", string_member(e, "cid").empty() ? "-" : string_member(e, "cid"),
                      manifest && member(*manifest, "archive_size_bytes")
                          ? human_bytes(count_member(*manifest, "archive_size_bytes"))
                          : "-"});
    }
  }
  return render_table(rows);
}

bool in_flight(std::string_view phase) {
  for (std::string_view p : {"stopping", "archiving", "uploading", "publishing", "downloading", "scanning",
                             "applying", "restarting", "finishing"})
    if (phase == p) return true;
  return false;
}

void WatchModel::snapshot(const json::object& node, double now) {
  node_id_ = string_member(node, "node_id");
  std::map<std::string, Tracked> previous;
  previous.swap(instances_);
  if (const json::value* list = member(node, "instances"); list && list->is_array()) {
    for (const json::value& v : list->get_array()) {
      if (!v.is_object()) continue;
      const std::string id = string_member(v.get_object(), "id");
      // A reconnect keeps what was measured and printed for an instance that is still there.
      if (auto it = previous.find(id); it != previous.end()) instances_.insert(std::move(*it));
      set(v.get_object(), now);
    }
  }
}

void WatchModel::update(const json::object& event, double now) {
  const json::object* status = object_member(event, "instance");
  if (!status) return;
  if (bool_member(event, "removed")) {
    instances_.erase(string_member(*status, "id"));
    return;
  }
  set(*status, now);
}

void WatchModel::set(const json::object& status, double now) {
  Tracked& t = instances_[string_member(status, "id")];
  const std::string phase = string_member(status, "phase");
  const json::object* progress = object_member(status, "progress");
  const std::uint64_t done = progress ? count_member(*progress, "done") : 0;
  if (phase != t.phase || done < t.step_start_done) {  // a new step (or a retry from zero)
    t.phase = phase;
    t.step_start = now;
    t.step_start_done = done;
  }
  t.status = status;
}

double WatchModel::rate(const Tracked& t, double now) const {
  const double elapsed = now - t.step_start;
  const json::object* progress = object_member(t.status, "progress");
  const std::uint64_t done = progress ? count_member(*progress, "done") : 0;
  if (elapsed < 0.2 || done <= t.step_start_done) return -1;
  return static_cast<double>(done - t.step_start_done) / elapsed;
}

std::string WatchModel::line(const Tracked& t, double now, std::size_t width) const {
  const json::object& s = t.status;
  const std::string id = fmt::format("{:<16} {:<11}", string_member(s, "id"), t.phase);
  if (in_flight(t.phase)) {
    const json::object* progress = object_member(s, "progress");
    const std::uint64_t done = progress ? count_member(*progress, "done") : 0;
    const std::uint64_t total = progress ? count_member(*progress, "total") : 0;
    std::string numbers = total > 0 ? fmt::format("{:>3}% {} / {}", std::min<std::uint64_t>(100, done * 100 / total),
                                                  human_bytes(done), human_bytes(total))
                                    : human_bytes(done);
    numbers += "  " + human_rate(rate(t, now));
    // The bar takes what the terminal leaves, between 10 and 40 columns.
    const std::size_t used = id.size() + 1 + 1 + numbers.size();
    const std::size_t bar = width > used + 10 ? std::min<std::size_t>(40, width - used) : 10;
    return fit(id + " " + progress_bar(done, total, bar) + " " + numbers, width);
  }
  const json::object* sync = last_sync(s);
  std::string rest = fmt::format("{:<11} last sync {:<12} {:<10} {}", instance_state(s),
                                 sync ? human_age(now - number_member(*sync, "time")) + " ago" : "never",
                                 sync ? human_bytes(count_member(*sync, "size")) : "-",
                                 cid_prefix(string_member(s, "last_cid")));
  return fit(id + " " + rest, width);
}

std::vector<std::string> WatchModel::frame(double now, std::size_t width, std::size_t height) const {
  std::size_t busy = 0, halted = 0, quarantined = 0, failing = 0;
  std::vector<const Tracked*> order;
  for (const auto& [id, t] : instances_) {
    order.push_back(&t);
    busy += in_flight(t.phase);
    const std::string state = instance_state(t.status);
    halted += state == "halted";
    quarantined += state == "quarantined" || state == "untrusted";
    failing += state == "failing";
  }
  std::stable_partition(order.begin(), order.end(), [](const Tracked* t) { return in_flight(t->phase); });
  std::vector<std::string> out;
  out.push_back(fit(fmt::format("carsync {}: {} instances, {} in flight, {} failing, {} quarantined, {} halted",
                                node_id_, instances_.size(), busy, failing, quarantined, halted),
                    width));
  const std::size_t room = height > 1 ? height - 1 : 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (out.size() == room && i + 1 < order.size()) {
      out.push_back(fmt::format("... {} more", order.size() - i));
      break;
    }
    out.push_back(line(*order[i], now, width));
  }
  return out;
}

bool WatchModel::any_in_flight() const {
  for (const auto& [id, t] : instances_)
    if (in_flight(t.phase)) return true;
  return false;
}

std::string WatchModel::change_line(std::string_view id, double now) {
  auto it = instances_.find(std::string(id));
  if (it == instances_.end()) return {};
  // Without a terminal there is no width to fill; the rate is left out, so a line repeats
  // only when its state really changed.
  Tracked& t = it->second;
  const json::object& s = t.status;
  const json::object* progress = object_member(s, "progress");
  std::string text = fmt::format("{} {} {}", string_member(s, "id"), t.phase, instance_state(s));
  if (in_flight(t.phase) && progress) {
    const std::uint64_t total = count_member(*progress, "total");
    text += " " + human_bytes(count_member(*progress, "done"));
    if (total > 0) text += " / " + human_bytes(total);
  } else if (!string_member(s, "last_cid").empty()) {
    text += " cid " + string_member(s, "last_cid");
  }
  if (text == t.last_line) return {};
  t.last_line = text;
  return utc_time(now) + " " + text;
}

}  // namespace carsync::cmd
