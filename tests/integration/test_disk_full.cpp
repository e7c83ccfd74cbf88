// A full disk at each stage of a sync (issue 8 item 5), with the real filesystem code and a
// small tmpfs over the one place that fills: the provider's scratch dir (archiving), the
// embedded store (storing), the R1FS download dir (downloading, against carsync-devnode),
// the consumer's staging dir (staging) and the volume itself (committing). Each case checks
// the stage reported, that nothing was half-applied (volumes byte-identical, no temp files,
// nothing published), and that the retry succeeds once the space returns.
#include "net/r1fs_client.hpp"
#include "runtime/local_backend.hpp"
#include "io/staged_apply.hpp"
#include "support/child_process.hpp"
#include "support/consumer_fixture.hpp"
#include "support/provider_fixture.hpp"
#include "support/small_tmpfs.hpp"
#include "support/tree_snapshot.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace carsync::test {
namespace {

namespace json = boost::json;
using core::ConsumerOutcome;
using core::ProviderStage;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

constexpr std::size_t small_kib = 512;

// Every file name under `dir` (recursively), the test's filler excepted.
std::vector<std::string> files_under(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename() != ".test-filler") out.push_back(e.path().lexically_relative(dir).string());
  return out;
}

std::string content_bytes(std::size_t n, char salt) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + static_cast<std::size_t>(salt)) & 0xff);
  return s;
}

runtime::InstanceContext with_cas(runtime::InstanceContext base, backend::ContentStore& cas) {
  return runtime::InstanceContext{.config = base.config,
                                  .policy = base.policy,
                                  .node_id = base.node_id,
                                  .control = base.control,
                                  .history = base.history,
                                  .cas = cas,
                                  .kv = base.kv,
                                  .container = base.container,
                                  .io_pool = base.io_pool,
                                  .cpu_pool = base.cpu_pool,
                                  .clock = base.clock,
                                  .scratch_dir = base.scratch_dir,
                                  .state_dir = base.state_dir,
                                  .engine = base.engine,
                                  .limits = base.limits,
                                  .status = base.status};
}

#define MOUNT_OR_SKIP(fs_, dir, kib)                                   \
  do {                                                                 \
    if (auto why = (fs_).mount((dir), (kib))) GTEST_SKIP() << *why;    \
  } while (0)

// ---------------------------------------------------------------------------------------
// Provider: archiving and storing

class ProviderDiskFull : public ::testing::Test, protected ProviderFixture {
 protected:
  void SetUp() override {
    write_file(appdata() / "big.bin", content_bytes(200 * 1024, 1));
    write_file(appdata() / "sub/small.txt", "small\n");
  }
  void TearDown() override { space.unmount(); }

  void request() { write_request(R"({"archive_paths": ["/app/data/"]})"); }

  void expect_failed_at(const runtime::ProviderRunOutcome& out, ProviderStage stage) {
    EXPECT_TRUE(out.claimed);
    EXPECT_FALSE(out.succeeded);
    EXPECT_EQ(out.failed_stage, stage) << out.error;
    auto resp = control_json(io::response_name).as_object();
    EXPECT_EQ(resp.at("status"), json::value("error"));
    EXPECT_EQ(resp.at("stage"), json::value(core::to_string(stage)));
    EXPECT_FALSE(control_exists(io::processing_name));
    EXPECT_TRUE(kv.hsets.empty());  // nothing published
    EXPECT_TRUE(sent_files().empty());
    EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));  // the app runs again
  }

  SmallTmpfs space;
};

TEST_F(ProviderDiskFull, ArchivingIntoAFullScratchDirFailsAtArchiveBuildThenSucceeds) {
  MOUNT_OR_SKIP(space, scratch(), small_kib);
  space.fill();
  const auto before = snapshot_tree(appdata());
  request();

  auto out = run_once();

  expect_failed_at(out, ProviderStage::archive_build);
  EXPECT_THAT(out.error, HasSubstr("No space left on device"));
  EXPECT_TRUE(cas.added.empty());
  EXPECT_THAT(files_under(scratch()), IsEmpty());  // no partial archive
  EXPECT_EQ(snapshot_tree(appdata()), before);

  space.release();
  request();
  auto again = run_once();
  ASSERT_TRUE(again.succeeded) << again.error;
  EXPECT_EQ(kv.hsets.size(), 1u);
  EXPECT_THAT(files_under(scratch()), IsEmpty());
}

TEST_F(ProviderDiskFull, StoringIntoAFullStoreFailsAtUploadThenSucceeds) {
  const fs::path store_dir = tmp / "store";
  MOUNT_OR_SKIP(space, store_dir, small_kib);
  runtime::LocalContentStore store(store_dir, tmp / "downloads", io_pool);
  auto ctx = with_cas(context(), store);
  // The store's directories exist before it fills, as on a store that served before.
  fs::create_directories(store_dir / "tmp");
  fs::create_directories(store_dir / "blobs");
  space.fill();
  request();

  auto out = run(runtime::run_provider_once(ctx));

  expect_failed_at(out, ProviderStage::r1fs_upload);
  EXPECT_THAT(out.error, HasSubstr("No space left on device"));
  EXPECT_THAT(files_under(store_dir), ElementsAre("blobs", "tmp"));  // no temp, no partial blob
  EXPECT_THAT(files_under(scratch()), IsEmpty());                    // the archive is gone too

  space.release();
  request();
  auto again = run(runtime::run_provider_once(ctx));
  ASSERT_TRUE(again.succeeded) << again.error;
  EXPECT_TRUE(fs::exists(store_dir / "blobs" / again.cid));
  EXPECT_THAT(files_under(store_dir / "tmp"), IsEmpty());
}

// ---------------------------------------------------------------------------------------
// Consumer: downloading, staging, committing

class ConsumerDiskFull : public ::testing::Test, protected ConsumerFixture {
 protected:
  void SetUp() override { write_file(provider_tree() / "big.bin", content_bytes(200 * 1024, 2)); }
  void TearDown() override {
    space.unmount();
    if (devnode) devnode->terminate(10s);
  }

  // The consumer's volume before the sync: an older file the snapshot replaces, one it keeps.
  void seed_volume() {
    write_file(appdata() / "big.bin", "old weights");
    write_file(appdata() / "keep.txt", "kept");
  }

  json::object only_quarantine() {
    auto files = quarantine_files();
    EXPECT_EQ(files.size(), 1u);
    return files.empty() ? json::object{} : files.front();
  }

  // After the failure: the backoff ends, the space returns, the same record is applied.
  void expect_retry_applies(runtime::InstanceContext& ctx, const std::string& cid) {
    const double retry_at = only_quarantine().at("next_retry_after").to_number<double>();
    EXPECT_EQ(run(runtime::run_consumer_once(ctx, state)).outcome, ConsumerOutcome::backing_off);
    space.release();
    clock.set(retry_at);
    auto out = run(runtime::run_consumer_once(ctx, state));
    ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
    EXPECT_EQ(out.cid, cid);
    EXPECT_EQ(read_file(appdata() / "big.bin"), read_file(provider_tree() / "big.bin"));
    EXPECT_EQ(last_apply().at("cid"), json::value(cid));
  }

  bool staging_empty() const {
    std::error_code ec;
    return !fs::exists(state_dir() / "staging", ec) || files_under(state_dir() / "staging").empty();
  }

  SmallTmpfs space;
  std::unique_ptr<ChildProcess> devnode;
};

TEST_F(ConsumerDiskFull, DownloadingIntoAFullDownloadDirIsQuarantinedAtDownloadThenApplies) {
  // A real R1FS download (carsync-devnode) into a download dir that is full.
  devnode = std::make_unique<ChildProcess>(std::vector<std::string>{
      CARSYNC_DEVNODE_PATH, "--data-dir", (tmp / "devnode").string(), "--listen", "127.0.0.1", "--cstore-port", "0",
      "--r1fs-port", "0"});
  ASSERT_TRUE(devnode->wait_for_output("devnode ready", 30s)) << devnode->output();
  auto urls = parse_devnode_ready(devnode->output());
  ASSERT_TRUE(urls) << devnode->output();
  const fs::path downloads = tmp / "r1fs-downloads";
  MOUNT_OR_SKIP(space, downloads, small_kib);
  net::R1fsClient r1fs(ioc.get_executor(), net::parse_base_url(urls->r1fs).value(), downloads);
  auto ctx = with_cas(context(), r1fs);

  auto archive = capture();
  auto cid = run(r1fs.add_file(archive));
  ASSERT_TRUE(cid) << cid.error().message;
  auto pub = publish_archive(archive, {"/app/data"}, 1714742401);
  pub.record["cid"] = *cid;
  put_record(pub.record);
  seed_volume();
  const auto before = snapshot_tree(appdata());
  space.fill();

  auto out = run(runtime::run_consumer_once(ctx, state));

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed) << out.error;
  EXPECT_THAT(out.error, HasSubstr("No space left on device"));
  EXPECT_EQ(only_quarantine().at("stage"), json::value("r1fs_download"));
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_EQ(snapshot_tree(appdata()), before);
  EXPECT_THAT(files_under(downloads), IsEmpty());  // no partial download
  EXPECT_TRUE(staging_empty());

  expect_retry_applies(ctx, *cid);
}

TEST_F(ConsumerDiskFull, StagingIntoAFullStagingDirIsQuarantinedAtExtractThenApplies) {
  MOUNT_OR_SKIP(space, state_dir() / "staging", small_kib);
  auto pub = publish();
  seed_volume();
  const auto before = snapshot_tree(appdata());
  space.fill();
  auto ctx = context();

  auto out = run(runtime::run_consumer_once(ctx, state));

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed) << out.error;
  EXPECT_THAT(out.error, HasSubstr("No space left on device"));
  EXPECT_EQ(only_quarantine().at("stage"), json::value("extract"));
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_EQ(snapshot_tree(appdata()), before);
  EXPECT_TRUE(staging_empty());

  expect_retry_applies(ctx, pub.cid);
}

TEST_F(ConsumerDiskFull, CommittingIntoAFullVolumeRollsBackIsQuarantinedAtCommitThenApplies) {
  MOUNT_OR_SKIP(space, appdata(), small_kib);
  auto pub = publish();
  seed_volume();
  // The app fills its volume while the snapshot is staged: the commit is the first to see it.
  TreeSnapshot at_stop;
  container.on_stop = [&] {
    space.fill();
    at_stop = snapshot_tree(appdata());
  };
  auto ctx = context();

  auto out = run(runtime::run_consumer_once(ctx, state));

  EXPECT_EQ(out.outcome, ConsumerOutcome::commit_failed) << out.error;
  EXPECT_TRUE(out.restart_safe);
  EXPECT_THAT(out.error, HasSubstr("No space left on device"));
  EXPECT_EQ(only_quarantine().at("stage"), json::value("commit"));
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_EQ(snapshot_tree(appdata()), at_stop);  // no temp file, old content, filler as it was
  EXPECT_EQ(current_apply().at("state"), json::value("failed_rolled_back"));
  EXPECT_FALSE(io::apply_pending(runtime::apply_journal_path(ctx)));
  EXPECT_TRUE(staging_empty());

  container.on_stop = nullptr;
  expect_retry_applies(ctx, pub.cid);
  EXPECT_EQ(read_file(appdata() / "keep.txt"), "kept");
}

// The host-private state fills instead (data_dir on its own filesystem): the write-ahead
// journal cannot be written, so the commit must not begin; the volume stays as it was and
// the app is started again. Nothing could be quarantined either (the same disk is full), so
// the next tick after the space returns applies at once.
TEST_F(ConsumerDiskFull, CommittingWithAFullStateDirNeverTouchesTheVolumeThenApplies) {
  MOUNT_OR_SKIP(space, state_dir(), 1024);
  auto pub = publish();
  seed_volume();
  TreeSnapshot at_stop;
  container.on_stop = [&] {
    space.fill();
    at_stop = snapshot_tree(appdata());
  };
  auto ctx = context();

  auto out = run(runtime::run_consumer_once(ctx, state));

  EXPECT_EQ(out.outcome, ConsumerOutcome::commit_failed) << out.error;
  EXPECT_TRUE(out.restart_safe);
  EXPECT_THAT(out.error, HasSubstr("No space left on device"));
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_EQ(snapshot_tree(appdata()), at_stop);
  EXPECT_FALSE(io::apply_pending(runtime::apply_journal_path(ctx)));
  EXPECT_FALSE(control_exists(io::last_apply_name));

  container.on_stop = nullptr;
  space.release();
  auto again = run(runtime::run_consumer_once(ctx, state));
  ASSERT_EQ(again.outcome, ConsumerOutcome::applied) << again.error;
  EXPECT_EQ(read_file(appdata() / "big.bin"), read_file(provider_tree() / "big.bin"));
  EXPECT_EQ(read_file(appdata() / "keep.txt"), "kept");
}

}  // namespace
}  // namespace carsync::test
