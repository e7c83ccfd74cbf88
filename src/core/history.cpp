#include "core/history.hpp"

#include "core/json_text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>
#include <unordered_set>
#include <limits>

namespace carsync::core {
namespace {

namespace json = boost::json;

constexpr std::size_t cid_chars_in_name = 12;

bool ascii_alnum(unsigned char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::optional<std::int64_t> integer_member(const json::object& o, std::string_view key) noexcept {
  const json::value* v = o.if_contains(key);
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return static_cast<std::int64_t>(v->get_uint64());
  return std::nullopt;
}

const json::value& cid_of(const HistoryEntry& e) noexcept {
  static const json::value null;
  const json::value* v = e.body.if_contains("cid");
  return v ? *v : null;
}

bool already_retired(const HistoryEntry& e) noexcept {
  const json::value* deletion = e.body.if_contains("deletion");
  if (!deletion || !deletion->is_object()) return false;
  const json::value* at = deletion->get_object().if_contains("deleted_at");
  return at && !at->is_null();
}

}  // namespace

std::string_view to_string(HistoryDir d) noexcept { return d == HistoryDir::sent ? "sent" : "received"; }

std::string history_file_name(std::int64_t version, std::string_view cid) {
  std::string safe;
  // 12 characters of the CID, counted in code points like the reference; anything that is
  // not an ASCII letter or digit (a whole multi-byte character included) becomes one '_'.
  std::size_t taken = 0;
  for (std::size_t i = 0; i < cid.size() && taken < cid_chars_in_name; ++taken) {
    const auto c = static_cast<unsigned char>(cid[i]);
    std::size_t len = 1;
    if (c >= 0xC0) {
      while (i + len < cid.size() && (static_cast<unsigned char>(cid[i + len]) & 0xC0) == 0x80) ++len;
    }
    safe += ascii_alnum(c) ? static_cast<char>(c) : '_';
    i += len;
  }
  if (safe.empty()) safe = "no_cid";
  return fmt::format("{:010d}__{}.json", version, safe);
}

OrderKey order_key(const HistoryEntry& e) noexcept {
  return OrderKey{integer_member(e.body, "sequence").value_or(-1),
                  integer_member(e.body, "history_written_at_ns").value_or(e.mtime_ns)};
}

void sort_by_write_order(std::vector<HistoryEntry>& entries) {
  // The file name breaks ties so that the order never depends on directory enumeration.
  std::sort(entries.begin(), entries.end(), [](const HistoryEntry& a, const HistoryEntry& b) {
    const OrderKey ka = order_key(a), kb = order_key(b);
    if (ka != kb) return ka < kb;
    return a.file_name < b.file_name;
  });
}

std::int64_t max_sequence(const std::vector<HistoryEntry>& entries) noexcept {
  std::int64_t highest = 0;
  for (const auto& e : entries) highest = std::max(highest, order_key(e).sequence);
  return highest;
}

std::optional<std::size_t> retirement_target(const std::vector<HistoryEntry>& sorted) {
  if (sorted.size() < 2) return std::nullopt;
  const json::value& latest_cid = cid_of(sorted.back());
  for (std::size_t i = sorted.size() - 1; i-- > 0;) {
    const HistoryEntry& e = sorted[i];
    if (cid_of(e) == latest_cid || already_retired(e)) continue;
    if (!truthy(cid_of(e))) return std::nullopt;
    return i;
  }
  return std::nullopt;
}

std::vector<std::size_t> retirement_targets(const std::vector<HistoryEntry>& sorted) {
  std::vector<std::size_t> out;
  const auto first = retirement_target(sorted);
  if (!first) return out;
  const json::value& latest_cid = cid_of(sorted.back());
  for (std::size_t i = *first + 1; i-- > 0;) {
    const HistoryEntry& e = sorted[i];
    if (cid_of(e) == latest_cid || already_retired(e) || !truthy(cid_of(e))) continue;
    out.push_back(i);
  }
  return out;
}

std::vector<std::size_t> prunable(const std::vector<HistoryEntry>& sorted, std::size_t keep) {
  std::vector<std::size_t> out;
  if (sorted.size() <= keep) return out;
  // CIDs of entries newer than the one looked at: such an entry stands for the same content.
  std::unordered_set<std::string_view> newer;
  for (std::size_t i = sorted.size(); i-- > 0;) {
    const HistoryEntry& e = sorted[i];
    const json::value& cid = cid_of(e);
    const bool beyond_keep = sorted.size() - i > keep;
    if (beyond_keep) {
      const bool shadowed = cid.is_string() && newer.contains(std::string_view(cid.get_string()));
      if ((already_retired(e) || shadowed || !truthy(cid)) && !delta_pending(e)) out.push_back(i);
    }
    if (cid.is_string()) newer.insert(std::string_view(cid.get_string()));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

namespace {

const json::object* delta_of(const HistoryEntry& e) noexcept {
  const json::value* d = e.body.if_contains("delta");
  return d && d->is_object() ? &d->get_object() : nullptr;
}

// The CID of a delta object not yet deleted; empty when absent, malformed or deleted.
std::string_view live_cid(const json::object& delta, std::string_view part) noexcept {
  const json::value* o = delta.if_contains(part);
  if (!o || !o->is_object()) return {};
  const json::value* deleted = o->get_object().if_contains("deleted_at");
  if (deleted && !deleted->is_null()) return {};
  const json::value* cid = o->get_object().if_contains("cid");
  return cid && cid->is_string() ? std::string_view(cid->get_string()) : std::string_view{};
}

// Every delta object of an entry, with its part name ("index", "pack", "replaced/<n>").
template <class F>
void for_each_delta_object(const json::object& delta, F f) {
  for (std::string_view part : {std::string_view("index"), std::string_view("pack")})
    if (const json::value* o = delta.if_contains(part); o && o->is_object()) f(std::string(part), o->get_object());
  if (const json::value* r = delta.if_contains("replaced"); r && r->is_array())
    for (std::size_t i = 0; i < r->get_array().size(); ++i)
      if (const auto& o = r->get_array()[i]; o.is_object()) f("replaced/" + std::to_string(i), o.get_object());
}

std::string_view live(const json::object& o) noexcept {
  const json::value* deleted = o.if_contains("deleted_at");
  if (deleted && !deleted->is_null()) return {};
  const json::value* cid = o.if_contains("cid");
  return cid && cid->is_string() ? std::string_view(cid->get_string()) : std::string_view{};
}

}  // namespace

bool delta_pending(const HistoryEntry& e) noexcept {
  const json::object* d = delta_of(e);
  bool pending = false;
  if (d) for_each_delta_object(*d, [&](const std::string&, const json::object& o) { pending |= !live(o).empty(); });
  return pending;
}

void carry_replaced_delta(const json::object& old, json::object& replacement) {
  const json::value* od = old.if_contains("delta");
  if (!od || !od->is_object()) return;
  std::unordered_set<std::string> kept;
  if (const json::value* nd = replacement.if_contains("delta"); nd && nd->is_object())
    for_each_delta_object(nd->get_object(), [&](const std::string&, const json::object& o) {
      if (auto c = live(o); !c.empty()) kept.emplace(c);
    });
  json::array carried;
  for_each_delta_object(od->get_object(), [&](const std::string&, const json::object& o) {
    if (auto c = live(o); !c.empty() && kept.insert(std::string(c)).second) carried.emplace_back(o);
  });
  if (carried.empty()) return;
  json::value& nd = replacement["delta"];
  if (!nd.is_object()) nd = json::object{};
  json::value& r = nd.as_object()["replaced"];
  if (!r.is_array()) r = json::array{};
  for (auto& o : carried) r.as_array().push_back(std::move(o));
}

std::vector<DeltaRetirement> delta_retirement_targets(const std::vector<HistoryEntry>& sorted) {
  std::vector<DeltaRetirement> out;
  if (sorted.empty()) return out;
  std::unordered_set<std::string_view> named;
  if (const json::object* latest = delta_of(sorted.back())) {
    if (auto cid = live_cid(*latest, "index"); !cid.empty()) named.insert(cid);
    if (auto cid = live_cid(*latest, "pack"); !cid.empty()) named.insert(cid);
    if (const json::value* packs = latest->if_contains("record_packs"); packs && packs->is_array())
      for (const auto& p : packs->get_array())
        if (p.is_string()) named.insert(std::string_view(p.get_string()));
  }
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const json::object* d = delta_of(sorted[i]);
    if (!d) continue;
    const bool newest = i + 1 == sorted.size();
    for_each_delta_object(*d, [&](const std::string& part, const json::object& o) {
      const auto cid = live(o);
      // The newest entry's own index and pack are what the record names; what it replaced is not.
      if (cid.empty() || named.contains(cid) || (newest && !part.starts_with("replaced/"))) return;
      out.push_back({i, part, std::string(cid)});
    });
  }
  return out;
}

boost::json::object null_deletion() {
  return {{"deleted_at", nullptr}, {"deletion_succeeded", nullptr}, {"deletion_error", nullptr}};
}

boost::json::object deletion_result(std::optional<double> deleted_at, bool succeeded,
                                    std::optional<std::string> error) {
  json::object out;
  out["deleted_at"] = deleted_at ? json::value(*deleted_at) : json::value(nullptr);
  out["deletion_succeeded"] = succeeded;
  out["deletion_error"] = error ? json::value(*error) : json::value(nullptr);
  return out;
}

}  // namespace carsync::core
