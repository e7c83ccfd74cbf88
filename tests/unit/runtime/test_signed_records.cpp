// Signed records, one test per attack (libarchive's test_write_disk_secure style): a consumer
// with trusted keys applies only what a trusted provider signed for its sync key, never goes
// backwards, and whatever an attacker who can write the store tries, the volume, an outside
// sentinel and the container stay exactly as they were. The consumer runs for real
// (runtime::run_consumer_once) over the fakes; records are signed as a provider signs them.
#include "core/record_signature.hpp"
#include "io/sha256.hpp"
#include "runtime/consumer_run.hpp"
#include "runtime/node_metrics.hpp"
#include "support/consumer_fixture.hpp"
#include "support/tree_snapshot.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::test {
namespace {

namespace json = boost::json;
using core::ConsumerOutcome;
using core::signature_errc;
using ::testing::HasSubstr;

std::string sha256_hex_of(const fs::path& file) {
  const std::string bytes = read_file(file);
  io::Sha256 h;
  h.update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  return io::to_hex(h.finish());
}

class SignedRecords : public ConsumerFixture, public ::testing::Test {
 protected:
  SignedRecords() : key(core::SecretKey::generate()), stranger(core::SecretKey::generate()) {
    trusted_keys = {key.public_key()};
    config.trust = TrustConfig{.keys = {key.public_key().text()}, .policy = TrustPolicy::enforce};
    fs::create_directories(outside());
    write_file(outside() / "sentinel", "outside every volume");
  }

  fs::path outside() const { return tmp / "outside"; }

  // The provider's tree holds `content`; a record for it, signed by `by` (nullptr: unsigned)
  // for `for_key` at `sequence`. `edit` changes the record before it is signed.
  Published make(std::string_view content, std::int64_t sequence, const core::SecretKey* by,
                 std::string_view for_key = sync_key, const std::function<void(json::object&)>& edit = {}) {
    write_file(provider_tree() / "state.txt", content);
    const auto archive = capture();
    auto pub = publish_archive(archive, {"/app/data"}, 1714742401 + sequence, {{"epoch", sequence}});
    pub.record["archive_sha256"] = sha256_hex_of(archive);
    if (edit) edit(pub.record);
    if (by) {
      auto signed_ok = core::sign_record(pub.record, core::sync_hkey, for_key, sequence, std::span(by, 1));
      if (!signed_ok) throw std::runtime_error("sign: " + signed_ok.error().message);
    }
    put_record(pub.record);
    return pub;
  }

  // A good record applied: the volume holds `content`.
  Published apply_good(std::string_view content, std::int64_t sequence) {
    auto pub = make(content, sequence, &key);
    auto out = run_once();
    if (out.outcome != ConsumerOutcome::applied) throw std::runtime_error("good record not applied: " + out.error);
    return pub;
  }

  // Everything an attack must leave alone.
  struct World {
    TreeSnapshot volume, outside;
    std::vector<std::string> lifecycle;
    std::size_t downloads = 0;
  };
  World world() {
    return {snapshot_tree(appdata()), snapshot_tree(outside()), container.lifecycle, cas.gets.size() + cas.fetches.size()};
  }

  // One tick on what is in the store now: refused for `why` before any download, stage
  // signature in the quarantine, and nothing touched.
  runtime::ConsumerRunOutcome expect_refused(signature_errc why) {
    const World before = world();
    auto out = run_once();
    EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed) << out.error;
    EXPECT_EQ(out.signature_error, why) << out.error;
    const World after = world();
    EXPECT_EQ(after.volume, before.volume);
    EXPECT_EQ(after.outside, before.outside);
    EXPECT_EQ(after.lifecycle, before.lifecycle) << "the container was stopped or started";
    EXPECT_EQ(after.downloads, before.downloads) << "downloaded before the signature was checked";
    auto q = quarantine_files();
    EXPECT_FALSE(q.empty());
    if (!q.empty()) {
      bool found = false;
      for (const auto& f : q) found = found || f.at("stage") == json::value("signature");
      EXPECT_TRUE(found) << "no quarantine with stage signature";
    }
    EXPECT_THAT(current_apply().at("stage").as_string().c_str(), HasSubstr("signature"));
    return out;
  }

  // Re-signs nothing: `edit` changes a signed record after signing (what a store writer can do).
  void tamper(Published& pub, const std::function<void(json::object&)>& edit) {
    edit(pub.record);
    put_record(pub.record);
  }

  core::SecretKey key, stranger;
};

TEST_F(SignedRecords, AGoodRecordIsVerifiedAppliedAndRemembered) {
  auto pub = apply_good("v1", 1000);
  EXPECT_EQ(read_file(appdata() / "state.txt"), "v1");
  const auto trust = current_apply().at("trust");
  EXPECT_EQ(trust.at("keys").at(key.public_key().id()).at("sequence"), json::value(1000));
  EXPECT_EQ(trust.at("keys").at(key.public_key().id()).at("cid"), json::value(pub.cid));
  auto entries = received();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].at("signed_sequence"), json::value(1000));
  EXPECT_EQ(entries[0].at("signed_by"), json::value(json::array{json::value(key.public_key().id())}));
}

TEST_F(SignedRecords, ReferenceValidationStillAcceptsASignedRecord) {
  // A reference consumer (spec §8.4 step 1) ignores the extra fields.
  auto pub = make("v1", 1000, &key);
  EXPECT_TRUE(core::validate_record(pub.record, config.volumes, core::MountPolicy{}).empty());
}

TEST_F(SignedRecords, Unsigned) {
  apply_good("v1", 1000);
  make("evil", 2000, nullptr);
  expect_refused(signature_errc::unsigned_record);
}

TEST_F(SignedRecords, SignatureStripped) {
  apply_good("v1", 1000);
  auto pub = make("evil", 2000, &key);
  tamper(pub, [](json::object& r) { r.erase("signatures"); });
  expect_refused(signature_errc::unsigned_record);
}

TEST_F(SignedRecords, UnknownKey) {
  apply_good("v1", 1000);
  make("evil", 2000, &stranger);
  auto out = expect_refused(signature_errc::unknown_key);
  EXPECT_THAT(out.error, HasSubstr(stranger.public_key().id()));
}

TEST_F(SignedRecords, WrongAlgorithm) {
  apply_good("v1", 1000);
  auto pub = make("evil", 2000, &key);
  tamper(pub, [](json::object& r) { r["signatures"].as_array()[0].as_object()["alg"] = "none"; });
  expect_refused(signature_errc::unsupported_algorithm);
}

TEST_F(SignedRecords, TruncatedSignature) {
  apply_good("v1", 1000);
  auto pub = make("evil", 2000, &key);
  tamper(pub, [](json::object& r) {
    auto& sig = r["signatures"].as_array()[0].as_object()["sig"].as_string();
    sig = json::string(sig.subview(0, 40));
  });
  expect_refused(signature_errc::malformed_signature);
}

TEST_F(SignedRecords, NonBase64Signature) {
  apply_good("v1", 1000);
  auto pub = make("evil", 2000, &key);
  tamper(pub, [](json::object& r) {
    auto& sig = r["signatures"].as_array()[0].as_object()["sig"].as_string();
    sig[5] = '!';
  });
  expect_refused(signature_errc::malformed_signature);
}

// Every field a store writer could change after signing.
struct Tampering {
  const char* name;
  std::function<void(json::object&)> edit;
};

void PrintTo(const Tampering& t, std::ostream* os) { *os << t.name; }

class TamperedField : public SignedRecords, public ::testing::WithParamInterface<Tampering> {};

TEST_P(TamperedField, IsRefusedAsABadSignature) {
  apply_good("v1", 1000);
  auto pub = make("v2", 2000, &key);
  tamper(pub, GetParam().edit);
  expect_refused(signature_errc::bad_signature);
  EXPECT_EQ(read_file(appdata() / "state.txt"), "v1");
}

INSTANTIATE_TEST_SUITE_P(
    EveryField, TamperedField,
    ::testing::Values(
        // The CID of other content: what an attacker would point consumers at.
        Tampering{"cid", [](json::object& r) { r["cid"] = "bafkattacker"; }},
        Tampering{"version", [](json::object& r) { r["version"] = r["version"].as_int64() + 1; }},
        Tampering{"timestamp", [](json::object& r) { r["timestamp"] = r["timestamp"].as_double() + 0.5; }},
        Tampering{"metadata_value", [](json::object& r) { r["metadata"].as_object()["epoch"] = 7; }},
        Tampering{"manifest_path",
                  [](json::object& r) { r["manifest"].as_object()["archive_paths"] = json::array{"/app/data/x"}; }},
        Tampering{"sequence", [](json::object& r) { r["sequence"] = r["sequence"].as_int64() + 1; }},
        Tampering{"archive_sha256", [](json::object& r) { r["archive_sha256"] = std::string(64, 'a'); }},
        Tampering{"field_added", [](json::object& r) { r["extra"] = "added after signing"; }},
        Tampering{"field_removed", [](json::object& r) { r.erase("node_id"); }}),
    [](const ::testing::TestParamInfo<Tampering>& info) { return std::string(info.param.name); });

TEST_F(SignedRecords, ReserialisedRecordStillVerifies) {
  // A store that re-serialises JSON: other key order, whitespace, \u escapes, the float
  // timestamp spelt with an exponent.
  apply_good("v1", 1000);
  auto pub = make("v2", 2000, &key);
  std::string text = json::serialize(pub.record);
  json::object reordered;
  std::vector<std::string> keys;
  for (const auto& kv : pub.record) keys.emplace_back(kv.key());
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) reordered[*it] = pub.record.at(*it);
  text = json::serialize(reordered);
  // "node_id" spelt with an escape, spaces after separators.
  const auto at = text.find("\"node_id\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 9, "\"node\\u005fid\"");
  std::string spaced;
  for (char c : text) {
    spaced += c;
    if (c == ',' || c == ':') spaced += ' ';
  }
  // The float timestamp spelt with an exponent and 17 digits (the same double).
  const double ts = pub.record.at("timestamp").as_double();
  const std::string ts_text = json::serialize(json::value(ts));
  const auto ts_at = spaced.find(ts_text);
  ASSERT_NE(ts_at, std::string::npos);
  spaced.replace(ts_at, ts_text.size(), fmt::format("{:.16e}", ts));
  auto reparsed = json::parse(spaced);
  ASSERT_EQ(reparsed.at("timestamp").as_double(), ts);
  ASSERT_NE(json::serialize(reparsed), json::serialize(pub.record));
  put_record(reparsed);
  auto out = run_once();
  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_EQ(read_file(appdata() / "state.txt"), "v2");
}

TEST_F(SignedRecords, ReplayOfAnOlderRecord) {
  auto old = apply_good("v1", 1000);
  apply_good("v2", 2000);
  put_record(old.record);
  auto out = expect_refused(signature_errc::rollback);
  EXPECT_THAT(out.error, HasSubstr("1000"));
  EXPECT_EQ(read_file(appdata() / "state.txt"), "v2");
}

TEST_F(SignedRecords, SameRecordUnderAnotherSyncKey) {
  apply_good("v1", 1000);
  make("evil", 2000, &key, "another-sync-key");
  expect_refused(signature_errc::wrong_sync_key);
}

TEST_F(SignedRecords, EquivocationIsRefusedAndAnAlert) {
  apply_good("v1", 1000);
  make("v1-fork", 1000, &key);  // the same sequence, other content: another CID
  auto out = expect_refused(signature_errc::equivocation);
  EXPECT_EQ(read_file(appdata() / "state.txt"), "v1");
  EXPECT_FALSE(out.error.empty());
}

TEST_F(SignedRecords, ArchiveBytesSwappedInTheStore) {
  apply_good("v1", 1000);
  auto pub = make("v2", 2000, &key);
  // Same CID, same signed record, other bytes: the download must match the signed hash.
  write_file(provider_tree() / "state.txt", "evil");
  cas.blobs[pub.cid] = read_file(capture());
  const World before = world();
  auto out = run_once();
  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed) << out.error;
  EXPECT_FALSE(out.signature_error) << "the record itself is genuine";
  EXPECT_THAT(out.error, HasSubstr("failed verification: sha256"));
  const World after = world();
  EXPECT_EQ(after.volume, before.volume);
  EXPECT_EQ(after.outside, before.outside);
  EXPECT_EQ(after.lifecycle, before.lifecycle);
}

TEST_F(SignedRecords, ReplayRefusedAfterTheStateFileIsDeleted) {
  auto old = apply_good("v1", 1000);
  apply_good("v2", 2000);
  fs::remove(state_dir() / "current_apply.json");
  put_record(old.record);
  expect_refused(signature_errc::rollback);
}

TEST_F(SignedRecords, ReplayRefusedAfterTheStateFileIsCorrupt) {
  auto old = apply_good("v1", 1000);
  apply_good("v2", 2000);
  write_file(state_dir() / "current_apply.json", "{\"state\": \"applied\", \"trust\": [not json");
  put_record(old.record);
  expect_refused(signature_errc::rollback);
}

TEST_F(SignedRecords, ReplayRefusedAfterTheAcceptedSequencesAreCorrupt) {
  auto old = apply_good("v1", 1000);
  apply_good("v2", 2000);
  auto current = current_apply();
  current["trust"] = json::object{{"keys", json::object{{key.public_key().id(), json::object{{"sequence", "many"}}}}}};
  write_file(state_dir() / "current_apply.json", json::serialize(current));
  put_record(old.record);
  expect_refused(signature_errc::rollback);
}

TEST_F(SignedRecords, AcceptedButNotAppliedIsAppliedOnTheNextAttempt) {
  // The sequence is accepted (durably, with the `preparing` state) before the container
  // stops; an attempt that ends there (a crash, or here a stop that is not confirmed) must
  // not make its own record a replay.
  apply_good("v1", 1000);
  make("v2", 2000, &key);
  container.stop_error = "daemon busy";
  auto failed = run_once();
  ASSERT_EQ(failed.outcome, ConsumerOutcome::stop_failed) << failed.error;
  EXPECT_EQ(current_apply().at("trust").at("keys").at(key.public_key().id()).at("sequence"), json::value(2000));
  container.stop_error.reset();
  fs::remove_all(state_dir() / "quarantine");  // the backoff is over
  auto out = run_once();
  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_EQ(read_file(appdata() / "state.txt"), "v2");
}

TEST_F(SignedRecords, RotationAcceptsEitherKeyOfTheProvider) {
  // The provider signs with the old and the new key; a consumer trusting only the new one
  // applies, and one trusting only the old one too.
  const core::SecretKey next = core::SecretKey::generate();
  write_file(provider_tree() / "state.txt", "rotated");
  const auto archive = capture();
  auto pub = publish_archive(archive, {"/app/data"}, 1714745000, {{"epoch", 3}});
  pub.record["archive_sha256"] = sha256_hex_of(archive);
  const std::vector<core::SecretKey> both{key, next};
  ASSERT_TRUE(core::sign_record(pub.record, core::sync_hkey, sync_key, 3000, both));
  put_record(pub.record);
  trusted_keys = {next.public_key()};
  auto out = run_once();
  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_EQ(read_file(appdata() / "state.txt"), "rotated");
}

TEST_F(SignedRecords, WarnPolicyAppliesAnUnsignedRecordAndReportsIt) {
  config.trust->policy = TrustPolicy::warn;
  make("unsigned but wanted", 1000, nullptr);
  auto out = run_once();
  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_EQ(out.signature_error, signature_errc::unsigned_record);
  EXPECT_EQ(read_file(appdata() / "state.txt"), "unsigned but wanted");
  EXPECT_FALSE(current_apply().contains("trust")) << "nothing verified, nothing accepted";
}

TEST_F(SignedRecords, RefusalsAreCountedInStatusAndMetricsByReason) {
  apply_good("v1", 1000);
  make("evil", 2000, nullptr);
  runtime::StatusCell cell;
  runtime::NodeMetrics metrics;
  auto ctx = context();
  ctx.status = &cell;
  ctx.metrics = &metrics;
  auto out = run(runtime::run_consumer_once(ctx, state));
  ASSERT_EQ(out.outcome, ConsumerOutcome::preflight_failed);
  const auto status = cell.snapshot();
  EXPECT_EQ(status.signature_failures, 1u);
  ASSERT_TRUE(status.error);
  EXPECT_EQ(status.error->stage, Stage::signature);
  ASSERT_TRUE(status.quarantine);
  EXPECT_EQ(status.quarantine->stage, Stage::signature);
  EXPECT_THAT(metrics.render(NodeStatus{}),
              HasSubstr(R"(carsync_signature_failures_total{instance="c1",reason="unsigned"} 1)"));
}

}  // namespace
}  // namespace carsync::test
