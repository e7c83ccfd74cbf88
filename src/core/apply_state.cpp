#include "core/apply_state.hpp"

#include "core/json_text.hpp"

namespace carsync::core {
namespace {

namespace json = boost::json;


std::optional<std::string> non_empty_string(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (!v || !v->is_string() || v->get_string().empty()) return std::nullopt;
  return std::string(v->get_string());
}

}  // namespace

void put_extracted_paths(json::object& doc, const std::vector<std::string>& paths) {
  json::array a;
  std::size_t written = 0;
  for (const auto& p : paths) {
    // As written: escaped string, quotes, plus a line's indentation, comma and newline.
    const json::value v(p);
    written += to_canonical_json(v).size() + 8;
    if (written > max_extracted_paths_bytes) break;
    a.push_back(v);
  }
  const bool truncated = a.size() < paths.size();
  doc["extracted_paths"] = std::move(a);
  if (truncated) {
    doc["extracted_paths_truncated"] = true;
    doc["extracted_count"] = paths.size();
  }
}

std::string_view to_string(ApplyState s) noexcept {
  switch (s) {
    case ApplyState::preparing: return "preparing";
    case ApplyState::failed_preflight: return "failed_preflight";
    case ApplyState::applying: return "applying";
    case ApplyState::applied: return "applied";
    case ApplyState::failed_rolled_back: return "failed_rolled_back";
    case ApplyState::uncertain: return "uncertain";
  }
  return "unknown";
}

ApplyIdentity identity_of(const json::value& record) {
  ApplyIdentity id{nullptr, nullptr};
  if (!record.is_object()) return id;
  if (const json::value* cid = record.get_object().if_contains("cid")) id.cid = *cid;
  if (const json::value* version = record.get_object().if_contains("version")) id.version = *version;
  return id;
}

json::object apply_state_document(ApplyState s, const ApplyIdentity& id, double now) {
  return {{"state", to_string(s)}, {"cid", id.cid}, {"version", id.version}, {"timestamp", now}};
}

json::object failed_preflight_state(const ApplyIdentity& id, double now, std::string_view stage,
                                    std::string_view error) {
  json::object doc = apply_state_document(ApplyState::failed_preflight, id, now);
  doc["stage"] = stage;
  doc["error"] = error;
  return doc;
}

json::object applied_state(const ApplyIdentity& id, double now, const std::vector<std::string>& extracted) {
  json::object doc = apply_state_document(ApplyState::applied, id, now);
  put_extracted_paths(doc, extracted);
  return doc;
}

json::object rolled_back_state(const ApplyIdentity& id, double now, std::string_view error,
                               const std::vector<std::string>& extracted) {
  json::object doc = apply_state_document(ApplyState::failed_rolled_back, id, now);
  doc["error"] = error;
  put_extracted_paths(doc, extracted);
  return doc;
}

json::object uncertain_state(const ApplyIdentity& id, double now, std::string_view error,
                             const std::vector<std::string>& extracted) {
  json::object doc = apply_state_document(ApplyState::uncertain, id, now);
  doc["error"] = error;
  put_extracted_paths(doc, extracted);
  doc["halted"] = true;
  return doc;
}

bool is_halted(const json::value* current_apply) noexcept {
  if (!current_apply || !current_apply->is_object()) return false;
  const json::value* halted = current_apply->get_object().if_contains("halted");
  return halted && halted->is_bool() && halted->get_bool();
}

json::object clear_halt(json::object current_apply, double now) {
  current_apply.erase("halted");
  current_apply["halt_cleared_at"] = now;
  return current_apply;
}

std::optional<std::string> dedupe_cid(const json::value* current_apply, const json::object* latest_received) {
  if (current_apply && current_apply->is_object()) {
    const json::object& state = current_apply->get_object();
    const json::value* s = state.if_contains("state");
    if (s && s->is_string() && s->get_string() == to_string(ApplyState::applied)) {
      if (auto cid = non_empty_string(state, "cid")) return cid;
    }
    // carsync carries the last applied CID through the states of a later attempt, so an
    // attempt interrupted before its history entry cannot make dedupe fall back to an older
    // entry (the reference's §8.8 consequence).
    if (auto cid = non_empty_string(state, "applied_cid")) return cid;
  }
  if (latest_received) return non_empty_string(*latest_received, "cid");
  return std::nullopt;
}

}  // namespace carsync::core
