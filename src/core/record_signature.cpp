#include "core/record_signature.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace carsync::core {
namespace {

namespace json = boost::json;

// An integer JSON value in [lo, max_signed_sequence], else nullopt (doubles are not sequences).
std::optional<std::int64_t> sequence_of(const json::value* v, std::int64_t lo = 1) noexcept {
  if (!v) return std::nullopt;
  std::int64_t n = 0;
  if (v->is_int64()) n = v->get_int64();
  else if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(max_signed_sequence))
    n = static_cast<std::int64_t>(v->get_uint64());
  else return std::nullopt;
  if (n < lo || n > max_signed_sequence) return std::nullopt;
  return n;
}

SignatureVerdict refuse(signature_errc e, std::string reason) {
  SignatureVerdict v;
  v.error = e;
  v.reason = std::move(reason);
  return v;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string cid_of(const json::object& record) {
  const auto* c = record.if_contains("cid");
  return c && c->is_string() ? std::string(c->get_string()) : std::string();
}

struct Entry {
  std::string key_id;
  Ed25519Signature sig{};
};

}  // namespace

Result<std::string> signed_message(const boost::json::object& record, std::string_view hkey,
                                   std::string_view sync_key) {
  json::object covered = record;
  covered.erase("signatures");
  auto text = canonical_json(covered);
  if (!text) return text.error();
  std::string out;
  out.reserve(signature_domain.size() + hkey.size() + sync_key.size() + text->size() + 3);
  out += signature_domain;
  out += '\n';
  out += hkey;
  out += '\n';
  out += sync_key;
  out += '\n';
  out += *text;
  return out;
}

std::int64_t next_sequence(std::int64_t last, double now) noexcept {
  std::int64_t next = std::max<std::int64_t>(last, 0) + 1;
  const double ms = std::floor(now * 1000.0);
  if (std::isfinite(ms) && ms > static_cast<double>(next))
    next = ms >= static_cast<double>(max_signed_sequence) ? max_signed_sequence : static_cast<std::int64_t>(ms);
  return std::min(next, max_signed_sequence);
}

Result<void> sign_record(boost::json::object& record, std::string_view hkey, std::string_view sync_key,
                         std::int64_t sequence, std::span<const SecretKey> keys) {
  if (keys.empty()) return make_error(errc::invalid_record, "no signing key given");
  const auto* hash = record.if_contains("archive_sha256");
  if (!hash || !hash->is_string())
    return make_error(errc::invalid_record, "a record is signed only with its \"archive_sha256\"");
  if (sequence < 1 || sequence > max_signed_sequence)
    return make_error(errc::invalid_record, "sequence " + std::to_string(sequence) + " outside [1, 2^53]");
  json::object signed_record = record;
  signed_record["sync_key"] = sync_key;
  signed_record["sequence"] = sequence;
  signed_record.erase("signatures");
  auto message = signed_message(signed_record, hkey, sync_key);
  if (!message) return message.error();
  json::array signatures;
  for (const SecretKey& key : keys) {
    const auto sig = key.sign(*message);
    signatures.push_back(json::object{{"alg", signature_algorithm},
                                      {"key_id", key.public_key().id()},
                                      {"sig", to_base64(sig)}});
  }
  signed_record["signatures"] = std::move(signatures);
  record = std::move(signed_record);
  return {};
}

boost::json::object TrustState::to_json() const {
  json::object by_key;
  for (const auto& [id, accepted] : keys)
    by_key[id] = json::object{{"sequence", accepted.sequence}, {"cid", accepted.cid}};
  return json::object{{"keys", std::move(by_key)}};
}

Result<TrustState> TrustState::from_json(const boost::json::value& doc) {
  const auto bad = [](std::string what) { return make_error(errc::invalid_record, "trust state: " + what); };
  const auto* obj = doc.if_object();
  if (!obj) return bad("not an object");
  const auto* keys = obj->if_contains("keys");
  if (!keys || !keys->is_object()) return bad("no \"keys\" object");
  TrustState state;
  for (const auto& kv : keys->get_object()) {
    if (!valid_key_id(kv.key())) return bad("malformed key id " + quoted(kv.key()));
    const auto* entry = kv.value().if_object();
    if (!entry) return bad("entry of key " + std::string(kv.key()) + " is not an object");
    const auto seq = sequence_of(entry->if_contains("sequence"));
    if (!seq) return bad("entry of key " + std::string(kv.key()) + " has no sequence in [1, 2^53]");
    const auto* cid = entry->if_contains("cid");
    if (!cid || !cid->is_string()) return bad("entry of key " + std::string(kv.key()) + " has no \"cid\" string");
    state.keys[std::string(kv.key())] = Accepted{*seq, std::string(cid->get_string())};
  }
  return state;
}

SignatureVerdict verify_record(const boost::json::value& record_value, std::string_view hkey,
                               std::string_view sync_key, std::span<const PublicKey> trusted,
                               const TrustState& state) {
  const auto* record = record_value.if_object();
  if (!record) return refuse(signature_errc::malformed_signature, "record is not a JSON object");
  const auto* sigs = record->if_contains("signatures");
  if (!sigs) return refuse(signature_errc::unsigned_record, "record is not signed (no \"signatures\")");
  if (!sigs->is_array()) return refuse(signature_errc::malformed_signature, "\"signatures\" is not an array");
  if (sigs->get_array().empty())
    return refuse(signature_errc::unsigned_record, "record is not signed (\"signatures\" is empty)");

  std::vector<Entry> entries;
  for (std::size_t i = 0; i < sigs->get_array().size(); ++i) {
    const std::string where = "signatures[" + std::to_string(i) + "]";
    const auto* e = sigs->get_array()[i].if_object();
    if (!e) return refuse(signature_errc::malformed_signature, where + " is not an object");
    const auto* alg = e->if_contains("alg");
    if (!alg || !alg->is_string())
      return refuse(signature_errc::malformed_signature, where + " has no \"alg\" string");
    if (alg->get_string() != signature_algorithm)
      return refuse(signature_errc::unsupported_algorithm,
                    where + " uses algorithm " + quoted(alg->get_string()) + ", only \"ed25519\" is accepted");
    const auto* id = e->if_contains("key_id");
    if (!id || !id->is_string() || !valid_key_id(id->get_string()))
      return refuse(signature_errc::malformed_signature, where + " has no \"key_id\" of 16 lowercase hex digits");
    const auto* sig = e->if_contains("sig");
    if (!sig || !sig->is_string())
      return refuse(signature_errc::malformed_signature, where + " (key " + std::string(id->get_string()) +
                                                              ") has no \"sig\" string");
    auto raw = from_base64(sig->get_string());
    if (!raw)
      return refuse(signature_errc::malformed_signature,
                    where + " (key " + std::string(id->get_string()) + "): \"sig\" is not standard base64");
    Entry entry{std::string(id->get_string())};
    if (raw->size() != entry.sig.size())
      return refuse(signature_errc::malformed_signature, where + " (key " + entry.key_id + "): \"sig\" has " +
                                                              std::to_string(raw->size()) + " bytes, expected 64");
    std::copy(raw->begin(), raw->end(), reinterpret_cast<char*>(entry.sig.data()));
    entries.push_back(std::move(entry));
  }

  const auto sequence = sequence_of(record->if_contains("sequence"));
  if (!sequence)
    return refuse(signature_errc::malformed_signature, "\"sequence\" is missing or not an integer in [1, 2^53]");
  const auto* signed_key = record->if_contains("sync_key");
  if (!signed_key || !signed_key->is_string())
    return refuse(signature_errc::malformed_signature, "\"sync_key\" is missing or not a string");
  if (signed_key->get_string() != sync_key)
    return refuse(signature_errc::wrong_sync_key, "record signed for sync key " + quoted(signed_key->get_string()) +
                                                       ", received under " + quoted(sync_key));
  const auto* hash = record->if_contains("archive_sha256");
  if (!hash || !hash->is_string())
    return refuse(signature_errc::missing_archive_hash,
                  "signed record has no \"archive_sha256\": the archive bytes would not be bound");
  auto message = signed_message(*record, hkey, sync_key);
  if (!message) return refuse(signature_errc::not_canonical, message.error().message);

  std::set<std::string> verified;
  std::set<std::string> untrusted;
  for (const Entry& e : entries) {
    const auto key = std::find_if(trusted.begin(), trusted.end(), [&](const PublicKey& k) { return k.id() == e.key_id; });
    if (key == trusted.end()) {
      untrusted.insert(e.key_id);
      continue;
    }
    if (!key->verify(*message, e.sig))
      return refuse(signature_errc::bad_signature,
                    "signature by trusted key " + e.key_id + " does not verify over this record (hkey " +
                        quoted(hkey) + ", sync key " + quoted(sync_key) + "): changed after signing");
    verified.insert(e.key_id);
  }
  if (verified.empty()) {
    std::string ids;
    for (const auto& id : untrusted) ids += (ids.empty() ? "" : ", ") + id;
    return refuse(signature_errc::unknown_key, "record signed only by untrusted key(s) " + ids);
  }

  const std::string cid = cid_of(*record);
  std::optional<SignatureVerdict> rollback;
  for (const auto& id : verified) {
    const auto last = state.keys.find(id);
    if (last == state.keys.end()) continue;
    if (*sequence == last->second.sequence && cid != last->second.cid)
      return refuse(signature_errc::equivocation,
                    "key " + id + " signed sequence " + std::to_string(*sequence) + " for CID " +
                        quoted(last->second.cid) + " (accepted) and for CID " + quoted(cid));
    if (*sequence < last->second.sequence && !rollback)
      rollback = refuse(signature_errc::rollback, "sequence " + std::to_string(*sequence) + " from key " + id +
                                                      " is older than the last accepted " +
                                                      std::to_string(last->second.sequence) + " (CID " +
                                                      quoted(last->second.cid) + "): rollback or replay");
  }
  if (rollback) return *rollback;

  SignatureVerdict ok;
  ok.key_ids.assign(verified.begin(), verified.end());
  ok.sequence = *sequence;
  return ok;
}

TrustState accept(TrustState state, const SignatureVerdict& verdict, std::string_view cid) {
  if (verdict.error) return state;
  for (const auto& id : verdict.key_ids) {
    auto& accepted = state.keys[id];
    if (verdict.sequence >= accepted.sequence) accepted = {verdict.sequence, std::string(cid)};
  }
  return state;
}

void put_signature_fields(boost::json::object& history_entry, std::int64_t sequence,
                          std::span<const std::string> key_ids) {
  json::array ids;
  for (const auto& id : key_ids) ids.emplace_back(id);
  history_entry["signed_sequence"] = sequence;
  history_entry["signed_by"] = std::move(ids);
}

TrustState trust_state_from_history(std::span<const HistoryEntry> entries) {
  TrustState state;
  for (const HistoryEntry& e : entries) {
    const auto seq = sequence_of(e.body.if_contains("signed_sequence"));
    const auto* by = e.body.if_contains("signed_by");
    if (!seq || !by || !by->is_array()) continue;
    for (const auto& id : by->get_array()) {
      if (!id.is_string() || !valid_key_id(id.get_string())) continue;
      auto& accepted = state.keys[std::string(id.get_string())];
      if (*seq > accepted.sequence) accepted = {*seq, cid_of(e.body)};
    }
  }
  return state;
}

std::int64_t last_signed_sequence(std::span<const HistoryEntry> entries) noexcept {
  std::int64_t last = 0;
  for (const HistoryEntry& e : entries)
    if (const auto seq = sequence_of(e.body.if_contains("signed_sequence"))) last = std::max(last, *seq);
  return last;
}

}  // namespace carsync::core
