// Signed records: one test per attack on a record and per verdict (the libarchive style).
#include "core/record_signature.hpp"

#include "core/json_text.hpp"
#include "core/record.hpp"
#include "core/request.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace carsync::core {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr std::string_view hkey = "carsync-sync";
constexpr std::string_view sync_key = "volumes/app";
const std::string archive_hash = "00ff" + std::string(56, 'a') + "0123";

json::object realistic_record() {
  SyncRequest req;
  req.archive_paths = {"/app/data/", "/app/conf/", "/app/cache/"};
  req.metadata = {{"epoch", 1}, {"note", "h\xC3\xA9llo"}, {"ratio", 0.1}};
  const PublishedSnapshot snap{"QmCidA", 1714742401, 1714742401.73, "node-a", ArchiveFormat::tar_gz, 12345,
                               archive_hash};
  return build_record(req, snap);
}

class RecordSignatureTest : public ::testing::Test {
 protected:
  RecordSignatureTest() {
    record_ = realistic_record();
    EXPECT_TRUE(sign_record(record_, hkey, sync_key, 1000, std::span(&a_, 1)));
  }

  SignatureVerdict verify(const json::value& rec, const TrustState& state = {}) const {
    return verify_record(rec, hkey, sync_key, trusted_, state);
  }

  SecretKey a_ = SecretKey::generate();
  SecretKey b_ = SecretKey::generate();
  SecretKey untrusted_ = SecretKey::generate();
  std::vector<PublicKey> trusted_{a_.public_key(), b_.public_key()};
  json::object record_;
};

TEST_F(RecordSignatureTest, ASignedRecordCarriesItsFieldsAndVerifies) {
  EXPECT_EQ(record_.at("sync_key"), "volumes/app");
  EXPECT_EQ(record_.at("sequence"), 1000);
  const auto& sigs = record_.at("signatures").as_array();
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_EQ(sigs[0].at("alg"), "ed25519");
  EXPECT_EQ(sigs[0].at("key_id").as_string(), a_.public_key().id());
  EXPECT_EQ(from_base64(sigs[0].at("sig").as_string()).value().size(), 64u);
  const auto v = verify(record_);
  EXPECT_FALSE(v.error) << v.reason;
  EXPECT_THAT(v.key_ids, ElementsAre(a_.public_key().id()));
  EXPECT_EQ(v.sequence, 1000);
  EXPECT_FALSE(v.alert());
  // The reference's validation still accepts it: the extra fields are ignored.
  EXPECT_THAT(validate_record_shape(record_), IsEmpty());
}

TEST_F(RecordSignatureTest, TheSignedMessageIsDomainHkeySyncKeyAndCanonicalRecordWithoutSignatures) {
  json::object without = record_;
  without.erase("signatures");
  const auto msg = signed_message(record_, hkey, sync_key);
  ASSERT_TRUE(msg);
  EXPECT_EQ(*msg, "carsync-record-signature-v1\ncarsync-sync\nvolumes/app\n" + canonical_json(without).value());
  EXPECT_EQ(signed_message(without, hkey, sync_key).value(), *msg);
  EXPECT_TRUE(a_.public_key().verify(*msg, [&] {
    Ed25519Signature s{};
    const auto raw = from_base64(record_.at("signatures").at(0).at("sig").as_string()).value();
    std::copy(raw.begin(), raw.end(), reinterpret_cast<char*>(s.data()));
    return s;
  }()));
}

struct AttackCase {
  const char* name;
  std::function<void(json::object&)> change;
  signature_errc expected;
  const char* reason;  // a part the reason must name
};

TEST_F(RecordSignatureTest, EveryAttackOnTheRecordIsRefusedWithItsReason) {
  const std::string id = a_.public_key().id();
  const std::string untrusted_id = untrusted_.public_key().id();
  const SecretKey& untrusted = untrusted_;
  const std::vector<AttackCase> cases = {
      {"signature stripped", [](json::object& r) { r.erase("signatures"); }, signature_errc::unsigned_record,
       "not signed"},
      {"signatures emptied", [](json::object& r) { r["signatures"] = json::array(); },
       signature_errc::unsigned_record, "empty"},
      {"signatures not an array", [](json::object& r) { r["signatures"] = "sig"; },
       signature_errc::malformed_signature, "not an array"},
      {"entry not an object", [](json::object& r) { r["signatures"] = json::array{"x"}; },
       signature_errc::malformed_signature, "signatures[0]"},
      {"missing key_id", [](json::object& r) { r["signatures"].as_array()[0].as_object().erase("key_id"); },
       signature_errc::malformed_signature, "key_id"},
      {"bad key id", [](json::object& r) { r["signatures"].as_array()[0].as_object()["key_id"] = "ABCDEF0123456789"; },
       signature_errc::malformed_signature, "key_id"},
      {"sig not base64", [](json::object& r) { r["signatures"].as_array()[0].as_object()["sig"] = "not base64!"; },
       signature_errc::malformed_signature, "not standard base64"},
      {"sig truncated",
       [](json::object& r) {
         auto& sig = r["signatures"].as_array()[0].as_object()["sig"];
         sig = std::string(sig.as_string()).substr(0, 40);
       },
       signature_errc::malformed_signature, "30 bytes, expected 64"},
      {"sig of the wrong length",
       [](json::object& r) {
         const std::string s(63, 'x');
         r["signatures"].as_array()[0].as_object()["sig"] =
             to_base64({reinterpret_cast<const unsigned char*>(s.data()), s.size()});
       },
       signature_errc::malformed_signature, "63 bytes"},
      {"sig missing", [](json::object& r) { r["signatures"].as_array()[0].as_object().erase("sig"); },
       signature_errc::malformed_signature, "\"sig\""},
      {"alg none", [](json::object& r) { r["signatures"].as_array()[0].as_object()["alg"] = "none"; },
       signature_errc::unsupported_algorithm, "\"none\""},
      {"alg ed448", [](json::object& r) { r["signatures"].as_array()[0].as_object()["alg"] = "ed448"; },
       signature_errc::unsupported_algorithm, "\"ed448\""},
      {"alg missing", [](json::object& r) { r["signatures"].as_array()[0].as_object().erase("alg"); },
       signature_errc::malformed_signature, "alg"},
      {"sequence missing", [](json::object& r) { r.erase("sequence"); }, signature_errc::malformed_signature,
       "\"sequence\""},
      {"sequence zero", [](json::object& r) { r["sequence"] = 0; }, signature_errc::malformed_signature,
       "\"sequence\""},
      {"sequence a string", [](json::object& r) { r["sequence"] = "1000"; }, signature_errc::malformed_signature,
       "\"sequence\""},
      {"sequence a float", [](json::object& r) { r["sequence"] = 1000.0; }, signature_errc::malformed_signature,
       "\"sequence\""},
      {"sequence beyond 2^53", [](json::object& r) { r["sequence"] = (std::int64_t{1} << 53) + 1; },
       signature_errc::malformed_signature, "\"sequence\""},
      {"sync_key missing", [](json::object& r) { r.erase("sync_key"); }, signature_errc::malformed_signature,
       "\"sync_key\""},
      {"sync_key tampered", [](json::object& r) { r["sync_key"] = "volumes/other"; },
       signature_errc::wrong_sync_key, "volumes/other"},
      {"archive_sha256 removed", [](json::object& r) { r.erase("archive_sha256"); },
       signature_errc::missing_archive_hash, "archive_sha256"},
      {"number beyond 2^53 in metadata",
       [](json::object& r) { r["metadata"].as_object()["n"] = (std::int64_t{1} << 53) + 1; },
       signature_errc::not_canonical, "metadata.n"},
      {"signed by an unknown key only",
       [&](json::object& r) {
         r.erase("signatures");
         ASSERT_TRUE(sign_record(r, hkey, sync_key, 1000, std::span(&untrusted, 1)));
       },
       signature_errc::unknown_key, untrusted_id.c_str()},
      {"cid tampered", [](json::object& r) { r["cid"] = "QmEvil"; }, signature_errc::bad_signature, id.c_str()},
      {"version tampered", [](json::object& r) { r["version"] = 1714742402; }, signature_errc::bad_signature,
       id.c_str()},
      {"timestamp tampered", [](json::object& r) { r["timestamp"] = 1714742401.74; },
       signature_errc::bad_signature, id.c_str()},
      {"metadata value tampered", [](json::object& r) { r["metadata"].as_object()["epoch"] = 2; },
       signature_errc::bad_signature, id.c_str()},
      {"manifest path tampered",
       [](json::object& r) { r["manifest"].as_object()["archive_paths"].as_array()[2] = "/etc/"; },
       signature_errc::bad_signature, id.c_str()},
      {"sequence tampered", [](json::object& r) { r["sequence"] = 1001; }, signature_errc::bad_signature,
       id.c_str()},
      {"archive_sha256 tampered", [](json::object& r) { r["archive_sha256"] = std::string(64, 'b'); },
       signature_errc::bad_signature, id.c_str()},
      {"field added", [](json::object& r) { r["post_apply_hook"] = "rm -rf /"; }, signature_errc::bad_signature,
       id.c_str()},
      {"field removed", [](json::object& r) { r.erase("node_id"); }, signature_errc::bad_signature, id.c_str()},
      {"manifest field added", [](json::object& r) { r["manifest"].as_object()["extra"] = true; },
       signature_errc::bad_signature, id.c_str()},
      {"signature bytes flipped",
       [](json::object& r) {
         auto& sig = r["signatures"].as_array()[0].as_object()["sig"];
         std::string raw = from_base64(sig.as_string()).value();
         raw[10] = static_cast<char>(raw[10] ^ 1);
         sig = to_base64({reinterpret_cast<const unsigned char*>(raw.data()), raw.size()});
       },
       signature_errc::bad_signature, id.c_str()},
  };
  for (const AttackCase& c : cases) {
    SCOPED_TRACE(c.name);
    json::object rec = record_;
    c.change(rec);
    const auto v = verify(rec);
    ASSERT_TRUE(v.error) << c.name << " was accepted";
    EXPECT_EQ(*v.error, c.expected) << v.reason;
    EXPECT_THAT(v.reason, HasSubstr(c.reason));
    EXPECT_THAT(v.key_ids, IsEmpty());
    EXPECT_FALSE(v.alert());
  }
}

TEST_F(RecordSignatureTest, ARecordThatIsNotAnObjectIsMalformed) {
  EXPECT_EQ(verify(json::array{}).error, signature_errc::malformed_signature);
  EXPECT_EQ(verify(nullptr).error, signature_errc::malformed_signature);
}

TEST_F(RecordSignatureTest, ReserialisedRecordStillVerifies) {
  // A store that re-serialises: Python's sorted, indented, ASCII-escaped form; a compact
  // form in another key order; ASCII escaped as \u; the float timestamp spelled otherwise.
  const std::vector<std::string> texts = {
      to_reference_json(record_),
      json::serialize(record_),
      [&] {
        std::string t = json::serialize(record_);
        const auto at = t.find("\"cid\"");
        t.replace(at, 5, "\"\\u0063\\u0069d\"");
        return t;
      }(),
      [&] {
        std::string t = to_reference_json(record_);
        const auto at = t.find("1714742401.73");
        t.replace(at, 13, "1.71474240173E9");
        return t;
      }(),
      [&] {
        json::object reordered;
        std::vector<std::string> keys;
        for (const auto& kv : record_) keys.emplace_back(kv.key());
        for (auto k = keys.rbegin(); k != keys.rend(); ++k) reordered[*k] = record_.at(*k);
        std::string t = json::serialize(reordered);
        std::string spaced;
        for (char c : t) spaced += (c == ',' || c == ':') ? std::string(1, c) + "\n\t " : std::string(1, c);
        return spaced;
      }(),
  };
  for (const std::string& text : texts) {
    auto parsed = parse_json_python(text);
    ASSERT_TRUE(parsed) << text;
    const auto v = verify(*parsed);
    EXPECT_FALSE(v.error) << v.reason << "\n" << text;
  }
  // A whole-number float timestamp, which a store may write as an integer.
  json::object whole = realistic_record();
  whole["timestamp"] = 1700000000.0;
  ASSERT_TRUE(sign_record(whole, hkey, sync_key, 5, std::span(&a_, 1)));
  std::string t = to_reference_json(whole);
  ASSERT_NE(t.find("1700000000.0"), std::string::npos);
  for (const char* spelling : {"1700000000", "1.7e9", "1.7E+9", "17e8"}) {
    std::string changed = t;
    changed.replace(changed.find("1700000000.0"), 12, spelling);
    const auto v = verify(parse_json_python(changed).value());
    EXPECT_FALSE(v.error) << spelling << ": " << v.reason;
  }
}

TEST_F(RecordSignatureTest, ADuplicateKeyInTheStoredTextIsRefusedBeforeVerification) {
  std::string text = json::serialize(record_);
  text.insert(1, "\"cid\":\"QmEvil\",");
  auto parsed = parse_json_python(text);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().message, "duplicate key \"cid\" in $");
}

TEST_F(RecordSignatureTest, WrongSyncKeyOrHkeyIsRefused) {
  auto v = verify_record(record_, hkey, "volumes/other", trusted_, {});
  EXPECT_EQ(v.error, signature_errc::wrong_sync_key);
  EXPECT_THAT(v.reason, HasSubstr("volumes/app"));
  EXPECT_THAT(v.reason, HasSubstr("volumes/other"));
  // The same record copied under another sync key with its field rewritten: the signature
  // covered the original sync key.
  json::object moved = record_;
  moved["sync_key"] = "volumes/other";
  v = verify_record(moved, hkey, "volumes/other", trusted_, {});
  EXPECT_EQ(v.error, signature_errc::bad_signature);
  v = verify_record(record_, "other-hkey", sync_key, trusted_, {});
  EXPECT_EQ(v.error, signature_errc::bad_signature);
  EXPECT_THAT(v.reason, HasSubstr("other-hkey"));
}

TEST_F(RecordSignatureTest, RollbackReplayAndEquivocationAgainstTheTrustState) {
  const std::string id = a_.public_key().id();
  TrustState state;
  state.keys[id] = {1000, "QmCidA"};
  // The record accepted before, again (a retry after a crash between accept and apply).
  auto v = verify(record_, state);
  EXPECT_FALSE(v.error) << v.reason;

  state.keys[id] = {1001, "QmCidB"};
  v = verify(record_, state);
  EXPECT_EQ(v.error, signature_errc::rollback);
  EXPECT_THAT(v.reason, HasSubstr(id));
  EXPECT_THAT(v.reason, HasSubstr("1000"));
  EXPECT_THAT(v.reason, HasSubstr("1001"));
  EXPECT_THAT(v.reason, HasSubstr("QmCidB"));
  EXPECT_FALSE(v.alert());

  state.keys[id] = {1000, "QmCidB"};
  v = verify(record_, state);
  EXPECT_EQ(v.error, signature_errc::equivocation);
  EXPECT_TRUE(v.alert());
  EXPECT_THAT(v.reason, HasSubstr(id));
  EXPECT_THAT(v.reason, HasSubstr("QmCidA"));
  EXPECT_THAT(v.reason, HasSubstr("QmCidB"));
  EXPECT_THAT(v.reason, HasSubstr("1000"));

  state.keys[id] = {999, "QmOld"};
  v = verify(record_, state);
  EXPECT_FALSE(v.error) << v.reason;
  // Another key's state does not bind this one.
  state.keys.clear();
  state.keys[b_.public_key().id()] = {5000, "QmB"};
  EXPECT_FALSE(verify(record_, state).error);
}

TEST_F(RecordSignatureTest, KeyRotationSignsWithSeveralKeys) {
  json::object rec = realistic_record();
  const std::vector<SecretKey> old_and_new = {a_, untrusted_};
  ASSERT_TRUE(sign_record(rec, hkey, sync_key, 7, old_and_new));
  ASSERT_EQ(rec.at("signatures").as_array().size(), 2u);
  // One trusted, one unknown: accepted by the trusted one.
  auto v = verify(rec);
  EXPECT_FALSE(v.error) << v.reason;
  EXPECT_THAT(v.key_ids, ElementsAre(a_.public_key().id()));

  // Both trusted, both valid: both named.
  json::object both = realistic_record();
  const std::vector<SecretKey> ab = {a_, b_};
  ASSERT_TRUE(sign_record(both, hkey, sync_key, 8, ab));
  v = verify(both);
  EXPECT_FALSE(v.error) << v.reason;
  std::vector<std::string> expected = {a_.public_key().id(), b_.public_key().id()};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(v.key_ids, expected);

  // One trusted valid, one trusted bad: refused, naming the bad one.
  json::object one_bad = both;
  auto& sig = one_bad["signatures"].as_array()[1].as_object()["sig"];
  sig = record_.at("signatures").at(0).at("sig");  // a's signature over another record
  v = verify(one_bad);
  EXPECT_EQ(v.error, signature_errc::bad_signature);
  EXPECT_THAT(v.reason, HasSubstr(b_.public_key().id()));

  // Rollback is judged per verifying key: one key's history suffices to refuse.
  TrustState state;
  state.keys[b_.public_key().id()] = {9, "QmOther"};
  EXPECT_EQ(verify(both, state).error, signature_errc::rollback);
}

TEST_F(RecordSignatureTest, SignRecordRefusesWhatItCannotSign) {
  json::object rec = realistic_record();
  rec.erase("archive_sha256");
  json::object before = rec;
  auto r = sign_record(rec, hkey, sync_key, 1, std::span(&a_, 1));
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("archive_sha256"));
  EXPECT_EQ(rec, before);

  rec = realistic_record();
  EXPECT_FALSE(sign_record(rec, hkey, sync_key, 1, std::span<const SecretKey>()));
  EXPECT_FALSE(sign_record(rec, hkey, sync_key, 0, std::span(&a_, 1)));
  EXPECT_FALSE(sign_record(rec, hkey, sync_key, max_signed_sequence + 1, std::span(&a_, 1)));
  rec["metadata"].as_object()["n"] = (std::int64_t{1} << 53) + 1;
  r = sign_record(rec, hkey, sync_key, 1, std::span(&a_, 1));
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("metadata.n"));
  EXPECT_FALSE(rec.contains("signatures"));

  // Re-signing replaces the old fields and signatures.
  rec = record_;
  ASSERT_TRUE(sign_record(rec, hkey, "volumes/b", 2000, std::span(&b_, 1)));
  EXPECT_EQ(rec.at("sync_key"), "volumes/b");
  EXPECT_EQ(rec.at("sequence"), 2000);
  EXPECT_EQ(rec.at("signatures").as_array().size(), 1u);
  EXPECT_FALSE(verify_record(rec, hkey, "volumes/b", trusted_, {}).error);
}

TEST_F(RecordSignatureTest, AcceptRecordsEachVerifyingKey) {
  json::object both = realistic_record();
  const std::vector<SecretKey> ab = {a_, b_};
  ASSERT_TRUE(sign_record(both, hkey, sync_key, 42, ab));
  const auto v = verify(both);
  ASSERT_FALSE(v.error);
  TrustState state;
  state.keys["0000000000000000"] = {3, "QmX"};
  const TrustState after = accept(state, v, "QmCidA");
  EXPECT_EQ(after.keys.size(), 3u);
  EXPECT_EQ(after.keys.at(a_.public_key().id()), (TrustState::Accepted{42, "QmCidA"}));
  EXPECT_EQ(after.keys.at(b_.public_key().id()), (TrustState::Accepted{42, "QmCidA"}));
  EXPECT_EQ(after.keys.at("0000000000000000"), (TrustState::Accepted{3, "QmX"}));
  // The accepted record is a replay now, the next one passes, an older one is refused.
  EXPECT_FALSE(verify(both, after).error);
  EXPECT_FALSE(verify(record_, after).error);  // a's sequence 1000 > 42
  json::object older = realistic_record();
  ASSERT_TRUE(sign_record(older, hkey, sync_key, 41, std::span(&b_, 1)));
  EXPECT_EQ(verify(older, after).error, signature_errc::rollback);
}

TEST(TrustState, JsonRoundTripAndShape) {
  TrustState s;
  s.keys["0123456789abcdef"] = {17, "QmA"};
  s.keys["fedcba9876543210"] = {max_signed_sequence, "QmB"};
  const json::object doc = s.to_json();
  EXPECT_EQ(doc, json::parse(R"({"keys":{"0123456789abcdef":{"sequence":17,"cid":"QmA"},
                                         "fedcba9876543210":{"sequence":9007199254740992,"cid":"QmB"}}})"));
  EXPECT_EQ(TrustState::from_json(doc).value(), s);
  EXPECT_EQ(TrustState::from_json(json::parse(R"({"keys":{}})")).value(), TrustState{});
  for (const char* bad : {R"([])", R"({})", R"({"keys":[]})", R"({"keys":{"XYZ":{"sequence":1,"cid":"a"}}})",
                          R"({"keys":{"0123456789abcdef":1}})",
                          R"({"keys":{"0123456789abcdef":{"sequence":0,"cid":"a"}}})",
                          R"({"keys":{"0123456789abcdef":{"sequence":"1","cid":"a"}}})",
                          R"({"keys":{"0123456789abcdef":{"sequence":9007199254740993,"cid":"a"}}})",
                          R"({"keys":{"0123456789abcdef":{"sequence":1}}})"}) {
    auto r = TrustState::from_json(json::parse(bad));
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, errc::invalid_record);
  }
}

HistoryEntry entry(std::string cid, std::optional<std::int64_t> seq, std::vector<std::string> by) {
  HistoryEntry e;
  e.body["cid"] = cid;
  if (seq) put_signature_fields(e.body, *seq, by);
  return e;
}

TEST(TrustStateFromHistory, HighestSignedSequencePerKeyInAnyOrder) {
  const std::string a = "aaaaaaaaaaaaaaaa", b = "bbbbbbbbbbbbbbbb";
  std::vector<HistoryEntry> entries = {
      entry("Qm2", 20, {a, b}), entry("Qm3", 30, {a}), entry("Qm1", 10, {b}),
      entry("QmRef", std::nullopt, {}),  // unsigned / written by the reference
  };
  HistoryEntry malformed;
  malformed.body = {{"cid", "QmBad"}, {"signed_sequence", "99"}, {"signed_by", json::array{a}}};
  entries.push_back(malformed);
  HistoryEntry bad_id = entry("QmBadId", 50, {"NOT-AN-ID"});
  entries.push_back(bad_id);

  EXPECT_EQ(entries[0].body.at("signed_sequence"), 20);
  EXPECT_EQ(entries[0].body.at("signed_by"), (json::array{a, b}));
  const TrustState s = trust_state_from_history(entries);
  EXPECT_EQ(s.keys.size(), 2u);
  EXPECT_EQ(s.keys.at(a), (TrustState::Accepted{30, "Qm3"}));
  EXPECT_EQ(s.keys.at(b), (TrustState::Accepted{20, "Qm2"}));
  std::reverse(entries.begin(), entries.end());
  EXPECT_EQ(trust_state_from_history(entries), s);
  EXPECT_EQ(last_signed_sequence(entries), 50);
  EXPECT_EQ(last_signed_sequence({}), 0);
  EXPECT_EQ(trust_state_from_history({}), TrustState{});
}

TEST(NextSequence, MonotonicAndAtLeastTheWallClockInMilliseconds) {
  EXPECT_EQ(next_sequence(0, 1700000000.123), 1700000000123);
  EXPECT_EQ(next_sequence(1700000000123, 1700000000.123), 1700000000124);  // same millisecond
  EXPECT_EQ(next_sequence(1800000000000, 1700000000.0), 1800000000001);    // clock stepped back
  EXPECT_EQ(next_sequence(0, 0), 1);
  EXPECT_EQ(next_sequence(-5, -1), 1);
  EXPECT_EQ(next_sequence(5, std::nan("")), 6);
  EXPECT_EQ(next_sequence(max_signed_sequence, 1e300), max_signed_sequence);
  std::int64_t last = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::int64_t next = next_sequence(last, 1700000000.0 + (i % 7) * 0.0004 - (i % 3));
    EXPECT_GT(next, last);
    EXPECT_LE(next, max_signed_sequence);
    last = next;
  }
}

}  // namespace
}  // namespace carsync::core
