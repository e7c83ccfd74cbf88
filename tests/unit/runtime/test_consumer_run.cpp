// The consumer runtime end to end over fakes: fetch and hsync gating (spec §11 group I),
// apply (group J) and the consumer tick (group N), driven through runtime::run_consumer_once
// with real archives, a real volume and the real staged commit; and start-up recovery of an
// interrupted commit through runtime::recover_consumer. The machine-level decisions are
// covered by tests/unit/core/test_consumer_lifecycle.cpp; these tests show what only the
// driver does: which store calls happen, what reaches the disk, and when.
#include "io/apply_journal.hpp"
#include "io/archive_scan.hpp"
#include "io/archive_writer.hpp"
#include "io/staged_apply.hpp"
#include "support/consumer_fixture.hpp"
#include "support/tree_snapshot.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace carsync::test {
namespace {

namespace json = boost::json;
using core::ConsumerOutcome;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string hkey(core::sync_hkey);

// Every byte value, several times: catches text-mode or truncation bugs.
std::string binary_bytes(char salt = 0) {
  std::string s;
  for (int round = 0; round < 40; ++round)
    for (int b = 0; b < 256; ++b) s.push_back(static_cast<char>(b ^ salt));
  return s;
}

std::string str(const json::value& v) { return std::string(v.as_string()); }

// A tar.gz written member by member, for archives a well-behaved provider never builds.
class HostileArchive {
 public:
  explicit HostileArchive(const fs::path& file) : file_(file) {
    fs::create_directories(file.parent_path());
    auto w = io::ArchiveWriter::create(file, {});
    if (!w) throw std::runtime_error(w.error().message);
    writer_ = std::move(*w);
  }
  HostileArchive& dir(std::string_view name) {
    check(writer_->add_directory(name, stat_of(S_IFDIR | 0755, 0)));
    return *this;
  }
  HostileArchive& file(std::string_view name, std::string_view content) {
    auto fill = [&](const auto& sink) { return sink(std::as_bytes(std::span(content.data(), content.size()))); };
    check(writer_->add_file(name, stat_of(S_IFREG | 0644, content.size()), fill));
    return *this;
  }
  fs::path finish() {
    check(writer_->finish());
    return file_;
  }

 private:
  static struct stat stat_of(mode_t mode, std::size_t size) {
    struct stat st {};
    st.st_mode = mode;
    st.st_size = static_cast<off_t>(size);
    st.st_mtim.tv_sec = 1700000000;
    return st;
  }
  template <class R>
  static void check(const R& r) {
    if (!r) throw std::runtime_error(r.error().message);
  }
  fs::path file_;
  std::unique_ptr<io::ArchiveWriter> writer_;
};

class ConsumerRun : public ::testing::Test, protected ConsumerFixture {
 protected:
  // The provider's default snapshot: one binary file at the volume root.
  Published publish_weights(std::int64_t version = 1714742401, char salt = 0) {
    write_file(provider_tree() / "weights.bin", binary_bytes(salt));
    return publish(version);
  }

  HostileArchive hostile(std::string_view name) { return HostileArchive(tmp / "hostile" / name); }

  fs::path journal() {
    auto ctx = context();
    return runtime::apply_journal_path(ctx);
  }

  // Later ticks run at a later time, so history entries and quarantine clocks differ.
  void later(double seconds) { clock.set(clock.peek() + seconds); }

  // Nothing an app could see changed: no notification, no history, no restart.
  void expect_nothing_applied() {
    EXPECT_FALSE(control_exists(io::last_apply_name));
    EXPECT_THAT(received(), IsEmpty());
  }

  json::object only_quarantine() {
    auto files = quarantine_files();
    EXPECT_EQ(files.size(), 1u);
    return files.empty() ? json::object{} : files.front();
  }

  bool staging_empty() const {
    std::error_code ec;
    return !fs::exists(state_dir() / "staging", ec) || fs::is_empty(state_dir() / "staging");
  }
};

// ---------------------------------------------------------------------------------------
// I. Fetch / hsync

TEST_F(ConsumerRun, I113_EmptyStoreHsyncsOnceAndFindsNoRecord) {
  ASSERT_FALSE(kv.supports_watch());

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::no_record);
  EXPECT_THAT(kv.hsyncs, ElementsAre(hkey));
  EXPECT_THAT(kv.hgets, ElementsAre(std::string(sync_key)));
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_THAT(cas.gets, IsEmpty());
}

TEST_F(ConsumerRun, WatchingStoreIsNeverAskedToHsync) {
  kv.watching = true;  // the embedded store: its replica is the store itself
  run_once();
  later(3600);
  run_once();
  EXPECT_THAT(kv.hsyncs, IsEmpty());
  EXPECT_EQ(kv.hgets.size(), 2u);
}

TEST_F(ConsumerRun, I114_PublishedRecordIsAppliedWithItsMetadata) {
  write_file(provider_tree() / "weights.bin", binary_bytes());
  auto pub = publish_archive(capture(), {"/app/data"}, 1714742401, {{"epoch", 7}, {"model", "small"}});

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_EQ(out.cid, pub.cid);
  EXPECT_THAT(cas.gets, ElementsAre(pub.cid));
  auto last = last_apply();
  EXPECT_EQ(last.at("metadata"), pub.record.at("metadata"));
  EXPECT_EQ(last.at("node_id"), json::value(provider_node_id));
  EXPECT_EQ(last.at("version"), pub.record.at("version"));
  EXPECT_EQ(last.at("source_timestamp"), pub.record.at("timestamp"));
}

// A reference provider can publish metadata holding NaN/Infinity (Python's json). The
// record is applied, and what carsync writes about it stays strict JSON (null for them).
TEST_F(ConsumerRun, NonFiniteMetadataFromAReferenceProviderIsAppliedAndWrittenReadably) {
  write_file(provider_tree() / "weights.bin", binary_bytes());
  auto pub = publish_archive(capture(), {"/app/data"}, 1714742401,
                             {{"epoch", 7}, {"loss", std::numeric_limits<double>::quiet_NaN()},
                              {"best", -std::numeric_limits<double>::infinity()}});

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  auto last = last_apply();  // parsed strictly
  EXPECT_EQ(last.at("metadata"), json::parse(R"({"epoch": 7, "loss": null, "best": null})"));
}

TEST_F(ConsumerRun, I115_NoSyncKeyFetchesNothingAndNeverHsyncs) {
  publish_weights();
  config.sync.key.clear();

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::no_record);
  EXPECT_THAT(kv.hsyncs, IsEmpty());
  EXPECT_THAT(kv.hgets, IsEmpty());
  EXPECT_THAT(container.lifecycle, IsEmpty());
}

TEST_F(ConsumerRun, I116_TicksWithinTheIntervalHsyncOnce) {
  run_once();
  later(1);
  run_once();
  later(58);  // 59 s after the hsync
  run_once();
  EXPECT_EQ(kv.hsyncs.size(), 1u);
  EXPECT_EQ(kv.hgets.size(), 3u);  // the local replica is read on every tick
}

TEST_F(ConsumerRun, I117_TickAfterTheIntervalHsyncsAgain) {
  run_once();
  later(60);
  run_once();
  EXPECT_THAT(kv.hsyncs, ElementsAre(hkey, hkey));
}

TEST_F(ConsumerRun, I118_FailedHsyncIsRetriedAfterThirtySecondsNotOnTheNextTick) {
  kv.error_on_hsync = "chainstore unreachable";
  auto pub = publish_weights();

  // The local replica is still read: a failed hsync does not hide a record already there.
  auto out = run_once();
  EXPECT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_EQ(out.cid, pub.cid);
  EXPECT_EQ(kv.hsyncs.size(), 1u);

  later(1);
  run_once();
  later(28);  // 29 s after the failure
  run_once();
  EXPECT_EQ(kv.hsyncs.size(), 1u);

  later(1);  // 30 s
  run_once();
  EXPECT_EQ(kv.hsyncs.size(), 2u);
}

// A poll of ChainStore that fails is counted by operation, and nothing else happens: the
// consumer keeps its snapshot and tries again at the next tick.
TEST_F(ConsumerRun, FailedStorePollsAreCountedInTheMetrics) {
  runtime::NodeMetrics m;
  metrics = &m;
  m.add_instance(config.id, Role::consumer);
  publish_weights();
  kv.error_on_hsync = "chainstore unreachable";
  kv.error_on_hget = "chainstore unreachable";
  auto out = run_once();
  EXPECT_EQ(out.outcome, ConsumerOutcome::no_record) << out.error;
  later(1);
  run_once();
  const auto& r = m.registry();
  EXPECT_EQ(r.value("carsync_store_poll_failures_total", {{"instance", config.id}, {"op", "hget"}}), 2);
  EXPECT_EQ(r.value("carsync_store_poll_failures_total", {{"instance", config.id}, {"op", "hsync"}}), 1);
  EXPECT_EQ(r.value("carsync_failures_total", {{"instance", config.id}, {"stage", "validation"}}), 0);

  kv.error_on_hget.reset();
  later(1);
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::applied);
  EXPECT_EQ(r.value("carsync_store_poll_failures_total", {{"instance", config.id}, {"op", "hget"}}), 2);
}

// ---------------------------------------------------------------------------------------
// J. Consumer apply

TEST_F(ConsumerRun, J119_RoundTripAppliesFileAndRecordsIt) {
  auto pub = publish_weights();
  const double now = clock.peek();

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_TRUE(out.restart_safe);
  EXPECT_EQ(read_file(appdata() / "weights.bin"), binary_bytes());

  auto last = last_apply();
  EXPECT_EQ(last.at("cid"), json::value(pub.cid));
  EXPECT_EQ(last.at("version"), pub.record.at("version"));
  EXPECT_DOUBLE_EQ(last.at("applied_timestamp").to_number<double>(), now);

  auto current = current_apply();
  EXPECT_EQ(current.at("state"), json::value("applied"));
  EXPECT_EQ(current.at("cid"), json::value(pub.cid));

  auto entries = received();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].at("cid"), json::value(pub.cid));
  EXPECT_EQ(entries[0].at("extracted_paths"), json::value(json::array{"/app/data", "/app/data/weights.bin"}));
  EXPECT_TRUE(entries[0].at("deletion").at("deleted_at").is_null());
  EXPECT_EQ(entries[0].at("manifest"), pub.record.at("manifest"));

  EXPECT_TRUE(staging_empty());
  EXPECT_FALSE(io::apply_pending(journal()));
}

TEST_F(ConsumerRun, F81_RestoredFilesAndDirectoriesAreOwnedByTheVolumeRootOwner) {
  ASSERT_EQ(::chown(appdata().c_str(), 4321, 8765), 0);
  write_file(provider_tree() / "nested/inner.bin", binary_bytes());
  ASSERT_EQ(::chown((provider_tree() / "nested/inner.bin").c_str(), 1111, 2222), 0);
  publish_archive(capture(), {"/app/data"}, 1714742401);

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_EQ(read_file(appdata() / "nested/inner.bin"), binary_bytes());
  for (const auto& p : {appdata() / "nested", appdata() / "nested/inner.bin"}) {
    struct stat st {};
    ASSERT_EQ(::lstat(p.c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_uid, 4321u) << p;
    EXPECT_EQ(st.st_gid, 8765u) << p;
  }
}

TEST_F(ConsumerRun, J120_UnmappableManifestPathIsQuarantinedUnapplied) {
  write_file(provider_tree() / "weights.bin", binary_bytes());
  auto pub = publish_archive(capture(), {"/app/data", "/app/cache"}, 1714742401);
  const auto before = snapshot_tree(appdata());

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed);
  expect_nothing_applied();
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_THAT(cas.gets, IsEmpty());  // refused before downloading anything
  EXPECT_EQ(snapshot_tree(appdata()), before);
  auto q = only_quarantine();
  EXPECT_EQ(q.at("cid"), json::value(pub.cid));
  EXPECT_EQ(q.at("stage"), json::value("validation"));
  EXPECT_THAT(str(q.at("error")), HasSubstr("unmapped archive_paths"));
  EXPECT_THAT(str(q.at("error")), HasSubstr("/app/cache"));
}

TEST_F(ConsumerRun, J121_NonObjectManifestIsRefusedWithoutRaising) {
  auto pub = publish_weights();
  pub.record["manifest"] = json::array{"/app/data"};
  put_record(pub.record);

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed);
  EXPECT_EQ(out.error, "manifest must be a JSON object");
  expect_nothing_applied();
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_EQ(only_quarantine().at("error"), json::value("manifest must be a JSON object"));
}

TEST_F(ConsumerRun, J122_MemberOutsideManifestPathsIsNeverWritten) {
  // The allowed member comes first: nothing of an archive is applied unless all of it is.
  auto archive = hostile("outside.tar.gz")
                     .dir("app/data")
                     .file("app/data/weights.bin", "inside")
                     .file("app/other/x.txt", "outside")
                     .finish();
  auto pub = publish_archive(archive, {"/app/data"}, 1714742401);

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed);
  EXPECT_THAT(out.error, HasSubstr("outside manifest archive_paths"));
  EXPECT_FALSE(present(appdata() / "weights.bin"));
  expect_nothing_applied();
  EXPECT_THAT(container.lifecycle, IsEmpty());  // invariant 7: refused before any stop
  auto q = only_quarantine();
  EXPECT_EQ(q.at("stage"), json::value("extract"));
  EXPECT_THAT(str(q.at("error")), HasSubstr("outside manifest archive_paths"));
  EXPECT_TRUE(staging_empty());
}

TEST_F(ConsumerRun, J123_DownloadFailureIsQuarantined) {
  auto pub = publish_weights();
  cas.error_on_get = "r1fs: blob unavailable";

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed);
  expect_nothing_applied();
  auto q = only_quarantine();
  EXPECT_EQ(q.at("cid"), json::value(pub.cid));
  EXPECT_EQ(q.at("stage"), json::value("r1fs_download"));
  EXPECT_THAT(str(q.at("error")), HasSubstr("blob unavailable"));
  EXPECT_EQ(current_apply().at("state"), json::value("failed_preflight"));
}

// ---------------------------------------------------------------------------------------
// Issue 10: the download is verified while the scan streams it (expected_sha256), not in a
// separate pass. What it must hash to: the store's digest (the embedded store's CID) and the
// record's archive_sha256.

io::Sha256Digest sha256_of(const std::string& bytes) {
  io::Sha256 h;
  h.update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  return h.finish();
}

// Needs the scan's expected_sha256 check (src/io/archive_scan.cpp, the scan helper): until
// it lands, the swapped (valid) archive is applied and this test fails.
TEST_F(ConsumerRun, BlobSwappedInTheStoreIsQuarantinedByTheScanAndTheVolumeUntouched) {
  write_file(appdata() / "weights.bin", "what the app has now");
  auto pub = publish_weights();
  cas.sha256s[pub.cid] = sha256_of(cas.blobs.at(pub.cid));  // what its CID names
  // Another well-formed snapshot's bytes under the same CID: only the digest tells.
  write_file(provider_tree() / "weights.bin", binary_bytes(7));
  cas.blobs[pub.cid] = read_file(capture());
  const auto before = snapshot_tree(appdata());

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed);
  expect_nothing_applied();
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_EQ(snapshot_tree(appdata()), before);
  auto q = only_quarantine();
  EXPECT_EQ(q.at("cid"), json::value(pub.cid));
  EXPECT_EQ(q.at("stage"), json::value("extract"));  // found while scanning, no longer at download
  EXPECT_FALSE(str(q.at("error")).empty());
  EXPECT_TRUE(staging_empty());
}

// Needs the scan's expected_sha256 check too: a store that gives no digest (R1FS verified
// it already, or an opaque CID) still has the record's checked.
TEST_F(ConsumerRun, RecordArchiveSha256IsCheckedWhenTheStoreGivesNoDigest) {
  auto pub = publish_weights();
  pub.record["archive_sha256"] = io::to_hex(sha256_of("some other archive"));
  put_record(pub.record);
  const auto before = snapshot_tree(appdata());

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed);
  expect_nothing_applied();
  EXPECT_EQ(snapshot_tree(appdata()), before);
  EXPECT_EQ(only_quarantine().at("stage"), json::value("extract"));
  EXPECT_TRUE(staging_empty());
}

TEST_F(ConsumerRun, RecordArchiveSha256DisagreeingWithTheStoresIsRefusedAtDownload) {
  auto pub = publish_weights();
  cas.sha256s[pub.cid] = sha256_of(cas.blobs.at(pub.cid));
  pub.record["archive_sha256"] = io::to_hex(sha256_of("some other archive"));
  put_record(pub.record);
  const auto before = snapshot_tree(appdata());

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed);
  expect_nothing_applied();
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_EQ(snapshot_tree(appdata()), before);
  auto q = only_quarantine();
  EXPECT_EQ(q.at("stage"), json::value("r1fs_download"));
  EXPECT_THAT(str(q.at("error")), HasSubstr("archive_sha256"));
  EXPECT_THAT(str(q.at("error")), HasSubstr("differs"));
  EXPECT_FALSE(fs::exists(tmp / "downloads" / pub.cid)) << "the refused download was left behind";
}

TEST_F(ConsumerRun, ArchiveWhoseDigestsAgreeIsApplied) {
  auto pub = publish_weights();
  cas.sha256s[pub.cid] = sha256_of(cas.blobs.at(pub.cid));
  pub.record["archive_sha256"] = io::to_hex(cas.sha256s[pub.cid]);
  put_record(pub.record);

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_THAT(cas.fetches, ElementsAre(pub.cid));
  EXPECT_EQ(read_file(appdata() / "weights.bin"), binary_bytes());
}

TEST_F(ConsumerRun, MalformedRecordArchiveSha256IsRefusedAtValidation) {
  auto pub = publish_weights();
  pub.record["archive_sha256"] = "not a digest";
  put_record(pub.record);

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed);
  EXPECT_THAT(cas.gets, IsEmpty());
  auto q = only_quarantine();
  EXPECT_EQ(q.at("stage"), json::value("validation"));
  EXPECT_THAT(str(q.at("error")), HasSubstr("archive_sha256"));
}

TEST_F(ConsumerRun, J124_HistoryFailureAfterApplyStillCountsAsApplied) {
  // received/ cannot be created: a file stands where the directory should be.
  write_file(received_dir(), "not a directory");
  auto pub = publish_weights();

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_TRUE(out.restart_safe);
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_EQ(read_file(appdata() / "weights.bin"), binary_bytes());
  EXPECT_TRUE(control_exists(io::last_apply_name));
  EXPECT_THAT(cas.deletes, IsEmpty());  // no retirement without the new history entry

  // Dedupe comes from the durable state alone: the same CID is not applied again.
  auto current = current_apply();
  EXPECT_EQ(current.at("state"), json::value("applied"));
  EXPECT_EQ(current.at("cid"), json::value(pub.cid));
  later(10);
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::up_to_date);
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_EQ(cas.gets.size(), 1u);
}

TEST_F(ConsumerRun, J129_MemberThroughSymlinkedDirectoryNeverLeavesTheVolume) {
  fs::create_directories(tmp / "outside");
  fs::create_directory_symlink(tmp / "outside", appdata() / "link");
  auto archive = hostile("escape.tar.gz").dir("app/data").file("app/data/link/evil.txt", "evil").finish();
  publish_archive(archive, {"/app/data"}, 1714742401);

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed);
  EXPECT_TRUE(fs::is_empty(tmp / "outside"));
  EXPECT_TRUE(fs::is_symlink(appdata() / "link"));
  expect_nothing_applied();
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_EQ(only_quarantine().at("stage"), json::value("extract"));
}

TEST_F(ConsumerRun, J130_SecondApplyRetiresTheFirstLocalCopyOnly) {
  auto first = publish_weights(1714742401, 0);
  ASSERT_EQ(run_once().outcome, ConsumerOutcome::applied);
  later(100);
  auto second = publish_weights(1714742501, 0x5a);
  ASSERT_EQ(run_once().outcome, ConsumerOutcome::applied);

  EXPECT_EQ(read_file(appdata() / "weights.bin"), binary_bytes(0x5a));
  auto entries = received();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].at("cid"), json::value(first.cid));
  EXPECT_EQ(entries[0].at("deletion").at("deletion_succeeded"), json::value(true));
  EXPECT_TRUE(entries[0].at("deletion").at("deleted_at").is_number());
  EXPECT_EQ(entries[1].at("cid"), json::value(second.cid));
  EXPECT_TRUE(entries[1].at("deletion").at("deleted_at").is_null());

  ASSERT_EQ(cas.deletes.size(), 1u);
  EXPECT_EQ(cas.deletes[0].cid, first.cid);
  EXPECT_FALSE(cas.deletes[0].unpin_remote);  // never the provider's content
  EXPECT_TRUE(cas.deletes[0].cleanup_local_files);
}

// Spec §12 item 7: the reference's history grows by one file per apply and every apply
// reads all of it (a 10-minute soak doubled apply latency). Retired entries beyond
// limits.history_keep go.
TEST_F(ConsumerRun, HistoryStaysBoundedAtHistoryKeep) {
  limits.history_keep = 2;
  for (int i = 0; i < 5; ++i) {
    later(100);
    publish_weights(1714742401 + 100 * i, static_cast<char>(i));
    ASSERT_EQ(run_once().outcome, ConsumerOutcome::applied);
  }
  auto entries = received();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].at("version"), json::value(1714742401 + 400));
  EXPECT_TRUE(entries[0].at("deletion").at("deleted_at").is_number());  // retired, kept
  EXPECT_EQ(cas.deletes.size(), 4u);
}

// ---------------------------------------------------------------------------------------
// N. Consumer tick

TEST_F(ConsumerRun, N162_FullFlowStopsAppliesFinalisesThenStarts) {
  publish_weights();
  // The volume is only touched while the app is down, and the app starts on the new state
  // with its notification already in place.
  bool written_before_stop = true, applied_at_start = false, notified_at_start = false;
  container.on_stop = [&] { written_before_stop = present(appdata() / "weights.bin"); };
  container.on_start = [&] {
    applied_at_start = present(appdata() / "weights.bin") && read_file(appdata() / "weights.bin") == binary_bytes();
    notified_at_start = control_exists(io::last_apply_name);
  };

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_FALSE(written_before_stop);
  EXPECT_TRUE(applied_at_start);
  EXPECT_TRUE(notified_at_start);
  EXPECT_TRUE(control_exists(io::last_apply_name));
}

TEST_F(ConsumerRun, N163_RecordRequestingOfflineRestartStopsOnce) {
  auto pub = publish_weights();
  ASSERT_EQ(pub.record.at("runtime").at("consumer_apply"), json::value("offline_restart"));

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_EQ(read_file(appdata() / "weights.bin"), binary_bytes());
}

TEST_F(ConsumerRun, N164_LocalOnlineNoRestartIsForcedOfflineAndRemembered) {
  config.sync.consumer_apply_mode = "online_no_restart";
  publish_weights();

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  ASSERT_TRUE(state.last_resolution);
  EXPECT_EQ(*state.last_resolution,
            (core::ApplyModeResolution{"online_no_restart", "offline_restart", "online_apply_disabled"}));
  EXPECT_TRUE(control_exists(io::last_apply_name));
}

TEST_F(ConsumerRun, N165_LocalOnlineRestartIsForcedOfflineAndReplacesBytes) {
  config.sync.consumer_apply_mode = "online_restart";
  write_file(appdata() / "weights.bin", "old weights");
  publish_weights();

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_EQ(read_file(appdata() / "weights.bin"), binary_bytes());
  ASSERT_TRUE(state.last_resolution);
  EXPECT_EQ(*state.last_resolution,
            (core::ApplyModeResolution{"online_restart", "offline_restart", "online_apply_disabled"}));
}

TEST_F(ConsumerRun, N168_SameCidOnTheNextTickDoesNothing) {
  publish_weights();
  ASSERT_EQ(run_once().outcome, ConsumerOutcome::applied);
  container.lifecycle.clear();
  later(10);

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::up_to_date);
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_EQ(cas.gets.size(), 1u);
  EXPECT_EQ(received().size(), 1u);
}

TEST_F(ConsumerRun, N169_NewCidWithLowerVersionIsApplied) {
  publish_weights(1714742401, 0);
  ASSERT_EQ(run_once().outcome, ConsumerOutcome::applied);
  later(10);
  // Another provider whose clock is behind.
  auto older = publish_weights(1714742000, 0x33);

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start", "stop", "start"));
  EXPECT_EQ(read_file(appdata() / "weights.bin"), binary_bytes(0x33));
  auto latest = history.latest(core::HistoryDir::received);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->body.at("cid"), json::value(older.cid));
}

TEST_F(ConsumerRun, N171_DownloadFailureQuarantinesBeforeStopAndBacksOff) {
  auto pub = publish_weights();
  cas.error_on_get = "r1fs timeout";

  EXPECT_EQ(run_once().outcome, ConsumerOutcome::preflight_failed);
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_EQ(cas.gets.size(), 1u);
  const double retry_at = only_quarantine().at("next_retry_after").to_number<double>();
  EXPECT_GT(retry_at, clock.peek());

  // Within the backoff: not even a download is attempted, whatever the store would say.
  cas.error_on_get.reset();
  clock.set(retry_at - 1);
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::backing_off);
  EXPECT_EQ(cas.gets.size(), 1u);
  EXPECT_THAT(container.lifecycle, IsEmpty());

  clock.set(retry_at);
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::applied);
  EXPECT_THAT(cas.gets, ElementsAre(pub.cid, pub.cid));
}

TEST_F(ConsumerRun, N172_UncertainCommitHaltsWithTheContainerStopped) {
  publish_weights();
  // An earlier apply awaits recovery when the commit begins: the volume may be half
  // updated, so the commit refuses to run and nothing may restart the app.
  container.on_stop = [&] {
    io::ApplyJournal earlier;
    earlier.apply_id = "0123456789abcdef";
    earlier.cid = "bafkearlier";
    earlier.volumes = {appdata().string()};
    if (auto r = io::write_journal(journal(), earlier); !r) throw std::runtime_error(r.error().message);
  };

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::uncertain);
  EXPECT_FALSE(out.restart_safe);
  EXPECT_THAT(container.lifecycle, ElementsAre("stop"));
  EXPECT_FALSE(present(appdata() / "weights.bin"));
  EXPECT_FALSE(control_exists(io::last_apply_name));
  auto current = current_apply();
  EXPECT_EQ(current.at("state"), json::value("uncertain"));
  EXPECT_EQ(current.at("halted"), json::value(true));

  // Halted: later ticks neither download nor touch the container, even for a new record.
  container.on_stop = nullptr;
  later(7200);
  publish_weights(1714749999, 0x11);
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::halted);
  EXPECT_THAT(container.lifecycle, ElementsAre("stop"));
  EXPECT_EQ(cas.gets.size(), 1u);
}

TEST_F(ConsumerRun, N174_StopNotConfirmedTouchesNothing) {
  write_file(appdata() / "weights.bin", "old weights");
  const auto before = snapshot_tree(appdata());
  publish_weights();
  container.stop_error = "docker: timeout";

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::stop_failed);
  EXPECT_THAT(container.lifecycle, ElementsAre("stop"));
  EXPECT_EQ(snapshot_tree(appdata()), before);
  expect_nothing_applied();
  EXPECT_EQ(only_quarantine().at("stage"), json::value("runtime_stop"));
  EXPECT_TRUE(staging_empty());
}

TEST_F(ConsumerRun, CommitFailureRollsBackQuarantinesAndRestarts) {
  write_file(appdata() / "a.txt", "old a");
  write_file(provider_tree() / "a.txt", "new a");
  publish_weights();
  // The app, still running while the snapshot was staged, makes a directory where the
  // snapshot has a file: only the commit, after the stop, can see it.
  TreeSnapshot at_stop;
  container.on_stop = [&] {
    fs::create_directories(appdata() / "weights.bin" / "shard0");
    at_stop = snapshot_tree(appdata());
  };

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::commit_failed);
  EXPECT_TRUE(out.restart_safe);
  EXPECT_THAT(out.error, HasSubstr("cannot replace directory with file"));
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_EQ(snapshot_tree(appdata()), at_stop);  // a.txt still "old a"
  expect_nothing_applied();
  EXPECT_EQ(current_apply().at("state"), json::value("failed_rolled_back"));
  EXPECT_EQ(only_quarantine().at("stage"), json::value("commit"));
  EXPECT_FALSE(io::apply_pending(journal()));
  EXPECT_TRUE(staging_empty());
}

// ---------------------------------------------------------------------------------------
// Start-up recovery of a commit a crash interrupted (§12 item 13)

class ConsumerRecovery : public ConsumerRun {
 protected:
  // Leaves behind the journal of an apply of the provider's current tree that stopped at
  // the failing step of `fault`, as a crash there would.
  void interrupted_apply(io::ApplyFaultHook fault) {
    auto archive = capture();
    io::ScanContext sctx;
    sctx.mounts = config.volumes;
    sctx.manifest_paths = {"/app/data"};
    const auto staging = state_dir() / "staging" / "apply.crashed";
    fs::create_directories(staging);
    auto plan = io::scan_and_stage(archive, sctx, staging);
    ASSERT_TRUE(plan) << plan.error().message;
    io::ApplyOptions opts;
    opts.fault = std::move(fault);
    auto out = io::commit_plan(*plan, journal(), opts);
    ASSERT_FALSE(out.success);
    ASSERT_TRUE(io::apply_pending(journal()));
  }

  static io::ApplyFaultHook fail_at(std::string step, std::size_t index, std::string then_step = "") {
    return [=](std::string_view s, std::size_t i) -> Result<void> {
      if ((s == step && i == index) || (s == then_step && i == 0)) return make_error(errc::io_failure, "crash");
      return {};
    };
  }

  void write_new_tree() {
    write_file(provider_tree() / "weights.bin", binary_bytes(0x42));
    write_file(provider_tree() / "extra/new.txt", "new file");
  }
};

// A kill between the temp write of a state file (current_apply.json, the apply journal, the
// container_stopped.json record) and its rename left the temp in the state directory for good
// (found by the crash campaign, twice): start-up recovery removes it.
TEST_F(ConsumerRecovery, StateWriteTempIsRemoved) {
  fs::create_directories(state_dir());
  write_file(state_dir() / ".current_apply.json.e259c9b997fad5e7.tmp", "{");
  write_file(state_dir() / ".apply_journal.json.70c22fb61644b8b4.tmp", "{");
  write_file(state_dir() / ".container_stopped.json.494d559efa6abad5.tmp", "{");
  write_file(state_dir() / "current_apply.json", R"({"state": "applied", "cid": "x"})");
  EXPECT_FALSE(recover());
  EXPECT_FALSE(fs::exists(state_dir() / ".current_apply.json.e259c9b997fad5e7.tmp"));
  EXPECT_FALSE(fs::exists(state_dir() / ".apply_journal.json.70c22fb61644b8b4.tmp"));
  EXPECT_FALSE(fs::exists(state_dir() / ".container_stopped.json.494d559efa6abad5.tmp"));
  EXPECT_TRUE(fs::exists(state_dir() / "current_apply.json"));
}

TEST_F(ConsumerRecovery, PreparedJournalIsRolledBackBeforeAnyTick) {
  write_file(appdata() / "weights.bin", "old weights");
  const auto before = snapshot_tree(appdata());
  write_new_tree();
  // The second temp fails and so does undoing the first: the temps stay on disk.
  interrupted_apply(fail_at("file", 1, "undo_file"));
  ASSERT_NE(snapshot_tree(appdata()), before);

  EXPECT_FALSE(recover());

  EXPECT_EQ(snapshot_tree(appdata()), before);
  EXPECT_FALSE(io::apply_pending(journal()));
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_TRUE(staging_empty());

  // The record is then applied normally.
  publish();
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::applied);
  EXPECT_EQ(read_file(appdata() / "extra/new.txt"), "new file");
}

TEST_F(ConsumerRecovery, CommittedJournalIsRolledForwardBeforeAnyTick) {
  write_file(appdata() / "weights.bin", "old weights");
  write_new_tree();
  interrupted_apply(fail_at("rename", 1));

  EXPECT_FALSE(recover());

  EXPECT_FALSE(io::apply_pending(journal()));
  EXPECT_EQ(read_file(appdata() / "weights.bin"), binary_bytes(0x42));
  EXPECT_EQ(read_file(appdata() / "extra/new.txt"), "new file");
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
}

TEST_F(ConsumerRecovery, NothingPendingLeavesTheContainerAlone) {
  fs::create_directories(state_dir() / "staging" / "apply.leaked");
  EXPECT_FALSE(recover());
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_TRUE(staging_empty());  // staging of an apply that never committed is useless
}

// The crash campaign found it: a kill after the commit and before the container start left
// the app down until the next snapshot (recovery had no journal to act on). The stop is
// recorded first, so recovery restarts the container.
TEST_F(ConsumerRun, StopIsRecordedUntilTheContainerRunsAgain) {
  publish_weights();
  bool marked_while_stopped = false;
  container.on_stop = [&] { marked_while_stopped = fs::exists(state_dir() / "container_stopped.json"); };
  ASSERT_EQ(run_once().outcome, ConsumerOutcome::applied);
  EXPECT_TRUE(marked_while_stopped);
  EXPECT_FALSE(fs::exists(state_dir() / "container_stopped.json"));
}

TEST_F(ConsumerRecovery, ContainerAKilledApplyStoppedIsStartedAtRecovery) {
  write_file(state_dir() / "current_apply.json", R"({"state": "applied", "cid": "x"})");
  write_file(state_dir() / "container_stopped.json", R"({"cid": "x", "stopped_at": 1.0})");
  container.start_error = "engine down";
  EXPECT_FALSE(recover());
  EXPECT_THAT(container.lifecycle, ElementsAre("start"));
  EXPECT_TRUE(fs::exists(state_dir() / "container_stopped.json"));  // tried again next start-up

  container.start_error.reset();
  container.lifecycle.clear();
  EXPECT_FALSE(recover());
  EXPECT_THAT(container.lifecycle, ElementsAre("start"));
  EXPECT_FALSE(fs::exists(state_dir() / "container_stopped.json"));
  container.lifecycle.clear();
  EXPECT_FALSE(recover());
  EXPECT_THAT(container.lifecycle, IsEmpty());
}

TEST_F(ConsumerRecovery, HaltedInstanceStaysHaltedAcrossRestarts) {
  publish_weights();
  container.on_stop = [&] {
    io::ApplyJournal earlier;
    earlier.apply_id = "0123456789abcdef";
    earlier.volumes = {appdata().string()};
    (void)io::write_journal(journal(), earlier);
  };
  ASSERT_EQ(run_once().outcome, ConsumerOutcome::uncertain);
  ASSERT_TRUE(io::remove_journal(journal()));
  container.on_stop = nullptr;
  container.lifecycle.clear();

  EXPECT_TRUE(recover());
  EXPECT_THAT(container.lifecycle, IsEmpty());
}

TEST_F(ConsumerRecovery, HaltedInstanceWithPendingJournalIsRecoveredButNotStarted) {
  publish_weights();
  container.on_stop = [&] {
    io::ApplyJournal earlier;
    earlier.apply_id = "0123456789abcdef";
    earlier.volumes = {appdata().string()};
    (void)io::write_journal(journal(), earlier);
  };
  ASSERT_EQ(run_once().outcome, ConsumerOutcome::uncertain);
  ASSERT_TRUE(io::apply_pending(journal()));
  container.on_stop = nullptr;
  container.lifecycle.clear();

  EXPECT_TRUE(recover());
  EXPECT_FALSE(io::apply_pending(journal()));
  // Recovery may stop the container to repair the volume, but never starts a halted one.
  EXPECT_THAT(container.lifecycle, ElementsAre("stop"));
}

}  // namespace
}  // namespace carsync::test
