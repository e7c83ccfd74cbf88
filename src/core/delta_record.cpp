#include "core/delta_record.hpp"

#include "core/hex.hpp"

#include <string>

namespace carsync::core {
namespace {

namespace json = boost::json;

constexpr std::size_t max_cid_bytes = 256;
constexpr std::uint64_t max_exact_integer = std::uint64_t{1} << 53;  // beyond: not exact in a double

Error malformed(std::string what) {
  return Error{make_error_code(delta_errc::malformed_field), "record delta " + std::move(what)};
}

std::string hex(const Digest32& d) {
  return to_hex({reinterpret_cast<const unsigned char*>(d.data()), d.size()});
}

// A non-negative integer within 2^53 (what every JSON reader keeps exact).
Result<std::uint64_t> count(const json::object& o, std::string_view key, std::string_view where) {
  const json::value* v = o.if_contains(key);
  std::uint64_t n = 0;
  if (v && v->is_uint64()) n = v->get_uint64();
  else if (v && v->is_int64() && v->get_int64() >= 0) n = static_cast<std::uint64_t>(v->get_int64());
  else return malformed(std::string(where) + "." + std::string(key) + " must be a non-negative integer");
  if (n > max_exact_integer) return malformed(std::string(where) + "." + std::string(key) + " is above 2^53");
  return n;
}

Result<DeltaObject> object_at(const json::value& v, const std::string& where) {
  if (!v.is_object()) return malformed(where + " must be an object");
  const auto& o = v.get_object();
  DeltaObject out;
  const json::value* cid = o.if_contains("cid");
  if (!cid || !cid->is_string() || cid->get_string().empty() || cid->get_string().size() > max_cid_bytes)
    return malformed(where + ".cid must be a non-empty string of at most 256 bytes");
  out.cid = std::string(cid->get_string());
  auto size = count(o, "size", where);
  if (!size) return size.error();
  out.size = *size;
  const json::value* sha = o.if_contains("sha256");
  std::optional<Digest32> digest;
  if (sha && sha->is_string()) digest = parse_sha256_hex(std::string_view(sha->get_string()));
  if (!digest) return malformed(where + ".sha256 must be 64 lowercase hex digits");
  out.sha256 = *digest;
  return out;
}

}  // namespace

json::object to_json(const DeltaObject& o) {
  return {{"cid", o.cid}, {"size", o.size}, {"sha256", hex(o.sha256)}};
}

json::object to_json(const RecordDelta& d) {
  json::array packs;
  for (const auto& p : d.packs)
    packs.emplace_back(json::object{{"serial", p.serial}, {"cid", p.cid}, {"size", p.size}, {"sha256", hex(p.sha256)}});
  return {{"format", d.format}, {"serial", d.serial}, {"index", to_json(d.index)}, {"packs", std::move(packs)}};
}

Result<DeltaObject> delta_object_from_json(const json::value& v) { return object_at(v, "object"); }

Result<std::optional<RecordDelta>> record_delta(const json::value& record) {
  if (!record.is_object()) return std::optional<RecordDelta>{};
  const json::value* field = record.get_object().if_contains("delta");
  if (!field) return std::optional<RecordDelta>{};
  if (!field->is_object()) return malformed("must be an object");
  const auto& o = field->get_object();
  RecordDelta d;
  auto format = count(o, "format", "delta");
  if (!format) return format.error();
  if (*format != delta_format_version)
    return Error{make_error_code(delta_errc::unsupported_format),
                 "record delta format " + std::to_string(*format) + " is not supported (this build reads format " +
                     std::to_string(delta_format_version) + ")"};
  d.format = static_cast<std::uint32_t>(*format);
  auto serial = count(o, "serial", "delta");
  if (!serial) return serial.error();
  if (*serial == 0) return malformed("delta.serial must be at least 1");
  d.serial = *serial;
  const json::value* index = o.if_contains("index");
  if (!index) return malformed("delta.index is missing");
  auto idx = object_at(*index, "delta.index");
  if (!idx) return idx.error();
  d.index = std::move(*idx);
  const json::value* packs = o.if_contains("packs");
  if (!packs || !packs->is_array()) return malformed("delta.packs must be an array");
  if (packs->get_array().size() > max_record_packs)
    return malformed("delta.packs has " + std::to_string(packs->get_array().size()) + " entries, more than " +
                     std::to_string(max_record_packs));
  for (std::size_t i = 0; i < packs->get_array().size(); ++i) {
    const std::string where = "delta.packs[" + std::to_string(i) + "]";
    const json::value& p = packs->get_array()[i];
    auto obj = object_at(p, where);
    if (!obj) return obj.error();
    auto s = count(p.get_object(), "serial", where);
    if (!s) return s.error();
    if (*s == 0 || *s > d.serial)
      return malformed(where + ".serial " + std::to_string(*s) + " is not within 1.." + std::to_string(d.serial));
    if (!d.packs.empty() && *s <= d.packs.back().serial)
      return malformed(where + ".serial " + std::to_string(*s) + " does not follow " +
                       std::to_string(d.packs.back().serial) + " (packs are in ascending serial)");
    d.packs.push_back(PackRef{.serial = *s, .size = obj->size, .sha256 = obj->sha256, .cid = std::move(obj->cid)});
  }
  return std::optional<RecordDelta>{std::move(d)};
}

}  // namespace carsync::core
