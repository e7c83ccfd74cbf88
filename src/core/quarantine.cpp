#include "core/quarantine.hpp"

#include "core/json_text.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

namespace carsync::core {
namespace {

namespace json = boost::json;

constexpr std::size_t safe_cid_chars = 32;
constexpr std::size_t digest_chars_in_name = 16;
constexpr std::int64_t max_backoff_exponent = 6;

bool ascii_alnum(unsigned char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::optional<double> number(const json::value* v) noexcept {
  if (!v) return std::nullopt;
  if (v->is_double()) return v->get_double();
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  return std::nullopt;
}

const json::value* member(const json::value* o, std::string_view key) noexcept {
  return o && o->is_object() ? o->get_object().if_contains(key) : nullptr;
}

}  // namespace

json::value quarantine_manifest(const json::value& record) {
  const json::value* m = member(&record, "manifest");
  if (!m || !truthy(*m)) return json::object{};
  return *m;
}

std::string quarantine_digest_input(const json::value& cid, const json::value& manifest) {
  return to_canonical_json(json::object{{"cid", cid}, {"manifest", manifest}});
}

std::string quarantine_digest_input(const json::value& record) {
  const json::value* cid = member(&record, "cid");
  return quarantine_digest_input(cid ? *cid : json::value(nullptr), quarantine_manifest(record));
}

std::string quarantine_safe_cid(const json::value& cid) {
  if (!truthy(cid)) return "no_cid";
  // str() of a non-string CID: its JSON text is the closest portable rendering.
  const std::string text = cid.is_string() ? std::string(cid.get_string()) : to_canonical_json(cid);
  std::string safe;
  // Counted in code points like history names: a whole multi-byte character becomes one '_'.
  for (std::size_t i = 0; i < text.size() && safe.size() < safe_cid_chars;) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t len = 1;
    if (c >= 0xC0)
      while (i + len < text.size() && (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80) ++len;
    safe += ascii_alnum(c) ? static_cast<char>(c) : '_';
    i += len;
  }
  return safe;
}

std::string quarantine_file_name(const json::value& cid, std::string_view digest_hex) {
  return quarantine_safe_cid(cid) + "__" + std::string(digest_hex.substr(0, digest_chars_in_name)) + ".json";
}

double quarantine_backoff(std::int64_t failure_count) noexcept {
  const std::int64_t exponent = std::clamp<std::int64_t>(failure_count - 1, 0, max_backoff_exponent);
  return std::min(quarantine_max_backoff_s, quarantine_base_backoff_s * std::ldexp(1.0, static_cast<int>(exponent)));
}

json::object next_quarantine_record(const json::value* previous, const QuarantineFailure& f) {
  std::int64_t count = 0;
  const json::value* c = member(previous, "failure_count");
  if (c && c->is_int64() && c->get_int64() > 0 && c->get_int64() < INT64_MAX) count = c->get_int64();
  count += 1;
  const double first_seen = number(member(previous, "first_seen")).value_or(f.now);

  json::object q;
  q["cid"] = f.cid;
  q["version"] = f.version;
  q["manifest_digest"] = f.manifest_digest;
  q["stage"] = f.stage;
  q["error"] = f.error;
  q["failure_count"] = count;
  q["first_seen"] = first_seen;
  q["last_failed"] = f.now;
  q["next_retry_after"] = f.now + quarantine_backoff(count);
  return q;
}

bool quarantine_active(const json::value& record, double now) noexcept {
  const auto next = number(member(&record, "next_retry_after"));
  if (!next || now >= *next) return false;
  // A wall clock that reads before the failure was stepped back: what is left of the wait
  // can no longer be told, and waiting for the clock to catch up would hold the record for
  // the length of the step (a year, for a clock set back a year). Retry now; a failure
  // re-arms the backoff from the new clock.
  const auto last = number(member(&record, "last_failed"));
  return !(last && now < *last);
}

}  // namespace carsync::core
