// The host around an instance misbehaving while carsync runs (issue 8 item 5): a read-only
// data_dir, a control directory replaced by a symlink or a file or made read-only, a volume
// root removed or replaced. Each case checks the error names what is wrong, nothing is
// written outside (no path followed, nothing recreated where a root was), and the instance
// recovers once the host is put right. Read-only filesystems are small tmpfs remounted
// read-only (root only: the tests skip, saying why, where mount is refused).
#include "carsync/node.hpp"
#include "io/staged_apply.hpp"
#include "support/consumer_fixture.hpp"
#include "support/provider_fixture.hpp"
#include "support/run_until.hpp"
#include "support/small_tmpfs.hpp"
#include "support/tree_snapshot.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace carsync::test {
namespace {

namespace json = boost::json;
using core::ConsumerOutcome;
using core::ProviderStage;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

#define MOUNT_OR_SKIP(fs_, dir, kib)                                \
  do {                                                              \
    if (auto why = (fs_).mount((dir), (kib))) GTEST_SKIP() << *why; \
  } while (0)

// ---------------------------------------------------------------------------------------
// data_dir read-only

class DataDirFaults : public ::testing::Test {
 protected:
  void TearDown() override { space.unmount(); }
  NodeConfig node_config() {
    NodeConfig c;
    c.data_dir = tmp / "state";
    c.node_id = "node-test";
    return c;
  }
  TempDir tmp;
  SmallTmpfs space;
};

// An operator expects a node that cannot keep its state to refuse to start, saying where,
// rather than run and lose its history, quarantine and journal: the lock file is the first
// write, so the refusal comes from the constructor, typed as the data_dir's fault.
TEST_F(DataDirFaults, ReadOnlyDataDirRefusesToStartNamingIt) {
  MOUNT_OR_SKIP(space, tmp / "state", 256);
  ASSERT_TRUE(space.set_read_only(true));
  try {
    Node node(node_config());
    FAIL() << "a node started on a read-only data_dir";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.field(), "data_dir");
    EXPECT_THAT(e.what(), HasSubstr((tmp / "state").string()));
    EXPECT_THAT(e.what(), HasSubstr("Read-only file system"));
  }
}

TEST_F(DataDirFaults, DataDirMadeReadOnlyAfterAPreviousRunStillRefuses) {
  MOUNT_OR_SKIP(space, tmp / "state", 256);
  { Node first(node_config()); }  // leaves carsync.lock behind, as any earlier run does
  ASSERT_TRUE(space.set_read_only(true));
  try {
    Node node(node_config());
    FAIL() << "a node started on a read-only data_dir";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.field(), "data_dir");
    EXPECT_THAT(e.what(), HasSubstr((tmp / "state").string()));
    EXPECT_THAT(e.what(), HasSubstr("Read-only file system"));
  }
  ASSERT_TRUE(space.set_read_only(false));
  EXPECT_NO_THROW(Node again(node_config()));
}

// The data_dir turns read-only under a running consumer (an ext4 error remount): the apply
// cannot stage, so nothing reaches the volume; once writable again the record applies.
class ConsumerDataDirReadOnly : public ::testing::Test, protected ConsumerFixture {
 protected:
  void TearDown() override { space.unmount(); }
  SmallTmpfs space;
};

TEST_F(ConsumerDataDirReadOnly, ReadOnlyStateDirAppliesNothingAndRecovers) {
  MOUNT_OR_SKIP(space, state_dir(), 1024);
  write_file(provider_tree() / "a.txt", "new");
  auto pub = publish();
  write_file(appdata() / "a.txt", "old");
  const auto before = snapshot_tree(appdata());
  ASSERT_TRUE(space.set_read_only(true));

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed) << out.error;
  EXPECT_THAT(out.error, HasSubstr("Read-only file system"));
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_EQ(snapshot_tree(appdata()), before);
  EXPECT_FALSE(control_exists(io::last_apply_name));

  // Nothing could be quarantined either: the next tick simply tries again.
  ASSERT_TRUE(space.set_read_only(false));
  auto again = run_once();
  ASSERT_EQ(again.outcome, ConsumerOutcome::applied) << again.error;
  EXPECT_EQ(read_file(appdata() / "a.txt"), "new");
}

// ---------------------------------------------------------------------------------------
// Control directory replaced or read-only (provider)

class ControlDirFaults : public ::testing::Test, protected ProviderFixture {
 protected:
  void SetUp() override { write_file(appdata() / "a.txt", "payload"); }
  void TearDown() override { space.unmount(); }

  static constexpr std::string_view request_body = R"({"archive_paths": ["/app/data/"]})";

  // Elsewhere on the host, where a swapped-in symlink points.
  fs::path elsewhere() const { return tmp / "elsewhere"; }

  void expect_nothing_done(const runtime::ProviderRunOutcome& out) {
    EXPECT_FALSE(out.succeeded);
    EXPECT_THAT(container.lifecycle, IsEmpty());
    EXPECT_TRUE(cas.added.empty());
    EXPECT_TRUE(kv.hsets.empty());
  }

  // Put right by the host: the next provisioning makes it a real directory again.
  void expect_recovers() {
    ASSERT_TRUE(control.provision());
    write_request(request_body);
    auto out = run_once();
    ASSERT_TRUE(out.succeeded) << out.error;
    EXPECT_EQ(control_json(io::response_name).at("status"), json::value("ok"));
  }

  SmallTmpfs space;
};

TEST_F(ControlDirFaults, SymlinkedControlDirIsRefusedNamingItAndItsTargetIsUntouched) {
  write_file(elsewhere() / "request.json", request_body);
  const auto target_before = snapshot_tree(elsewhere());
  fs::remove_all(control_dir());
  fs::create_directory_symlink(elsewhere(), control_dir());

  auto out = run_once();

  expect_nothing_done(out);
  EXPECT_THAT(out.error, HasSubstr(control_dir().string()));
  EXPECT_THAT(out.error, HasSubstr("symlink"));
  EXPECT_EQ(snapshot_tree(elsewhere()), target_before);  // not claimed, not answered through it
  EXPECT_TRUE(fs::is_symlink(control_dir()));

  expect_recovers();
  EXPECT_EQ(snapshot_tree(elsewhere()), target_before);
}

TEST_F(ControlDirFaults, ControlDirReplacedByAFileIsRefusedNamingIt) {
  fs::remove_all(control_dir());
  write_file(control_dir(), "not a directory");

  auto out = run_once();

  expect_nothing_done(out);
  EXPECT_THAT(out.error, HasSubstr(control_dir().string()));
  EXPECT_THAT(out.error, HasSubstr("non-directory"));
  EXPECT_EQ(read_file(control_dir()), "not a directory");

  expect_recovers();
}

TEST_F(ControlDirFaults, ReadOnlyControlDirLeavesTheRequestPendingNamingTheReason) {
  MOUNT_OR_SKIP(space, control_dir(), 256);
  write_request(request_body);
  ASSERT_TRUE(space.set_read_only(true));

  auto out = run_once();

  expect_nothing_done(out);
  EXPECT_FALSE(out.claimed);
  EXPECT_THAT(out.error, HasSubstr((control_dir() / "request.json").string()));
  EXPECT_THAT(out.error, HasSubstr("Read-only file system"));
  EXPECT_TRUE(control_exists(io::request_name));  // still pending, not lost

  ASSERT_TRUE(space.set_read_only(false));
  auto again = run_once();
  ASSERT_TRUE(again.succeeded) << again.error;
  EXPECT_EQ(control_json(io::response_name).at("status"), json::value("ok"));
}

// In a running node: one instance's control dir swapped for a symlink is provisioned again
// at the next rescan (§2.1: the link unlinked, never followed; a real directory in its
// place), its target untouched, and the instance serves requests again; the instance beside
// it keeps answering throughout. A read-only control dir is said in the instance's status.
class NodeControlDir : public ::testing::Test {
 protected:
  void TearDown() override {
    if (node) {
      node->stop();
      test::run_until(ioc, [&] { return node->wait_for(std::chrono::milliseconds(0)); });
    }
  }
  NodeConfig node_config() {
    NodeConfig c;
    c.data_dir = tmp / "state";
    c.node_id = "node-test";
    c.volume_roots = std::vector<std::string>{(tmp / "hosts/*").string()};
    c.limits.rescan_interval = std::chrono::seconds(1);  // the broken instance is retried by rescans
    c.limits.shutdown_grace = std::chrono::seconds(5);
    return c;
  }
  InstanceConfig provider(const std::string& id) {
    fs::create_directories(tmp / "hosts" / id / "sys");
    write_file(tmp / "hosts" / id / "data/a.txt", "payload " + id);
    InstanceConfig ic;
    ic.id = id;
    ic.system_volume = tmp / "hosts" / id / "sys";
    ic.volumes = {{(tmp / "hosts" / id / "data").string(), "/app/data", "rw"}};
    ic.sync.enabled = true;
    ic.sync.key = "key-" + id;
    ic.sync.role = Role::provider;
    return ic;
  }
  fs::path control_of(const std::string& id) const { return tmp / "hosts" / id / "sys/volume-sync"; }

  TempDir tmp;
  boost::asio::io_context ioc{1};
  std::unique_ptr<Node> node;
};

TEST_F(NodeControlDir, SymlinkedControlDirIsReprovisionedAndTheOtherInstanceKeepsWorking) {
  node = std::make_unique<Node>(node_config(), ioc.get_executor());
  node->start();
  std::optional<Result<void>> added_a, added_b;
  ASSERT_TRUE(node->add_instance(provider("a"), [&](Result<void> r) { added_a = r; }));
  ASSERT_TRUE(node->add_instance(provider("b"), [&](Result<void> r) { added_b = r; }));
  ASSERT_TRUE(test::run_until(ioc, [&] { return added_a && added_b; }));
  ASSERT_TRUE(fs::is_directory(control_of("a")));

  write_file(tmp / "elsewhere/request.json", R"({"archive_paths": ["/app/data/"]})");
  const auto elsewhere_before = snapshot_tree(tmp / "elsewhere");
  fs::remove_all(control_of("a"));
  fs::create_directory_symlink(tmp / "elsewhere", control_of("a"));

  write_file(control_of("b") / "request.json", R"({"archive_paths": ["/app/data/"]})");
  ASSERT_TRUE(test::run_until(ioc, [&] { return fs::exists(control_of("b") / "response.json"); }));
  EXPECT_EQ(ProviderFixture::parse(control_of("b") / "response.json").at("status"), json::value("ok"));

  ASSERT_TRUE(test::run_until(ioc, [&] { return !fs::is_symlink(control_of("a")) && fs::is_directory(control_of("a")); }));
  EXPECT_EQ(snapshot_tree(tmp / "elsewhere"), elsewhere_before);  // never claimed nor answered through
  write_file(control_of("a") / "request.json", R"({"archive_paths": ["/app/data/"]})");
  ASSERT_TRUE(test::run_until(ioc, [&] { return fs::exists(control_of("a") / "response.json"); }));
  EXPECT_EQ(ProviderFixture::parse(control_of("a") / "response.json").at("status"), json::value("ok"));
}

TEST_F(NodeControlDir, ReadOnlyControlDirIsReportedInStatusAndTheOtherInstanceKeepsWorking) {
  SmallTmpfs space;
  MOUNT_OR_SKIP(space, control_of("a"), 256);
  node = std::make_unique<Node>(node_config(), ioc.get_executor());
  node->start();
  std::optional<Result<void>> added_a, added_b;
  ASSERT_TRUE(node->add_instance(provider("a"), [&](Result<void> r) { added_a = r; }));
  ASSERT_TRUE(node->add_instance(provider("b"), [&](Result<void> r) { added_b = r; }));
  ASSERT_TRUE(test::run_until(ioc, [&] { return added_a && added_b; }));
  write_file(control_of("a") / "request.json", R"({"archive_paths": ["/app/data/"]})");
  ASSERT_TRUE(space.set_read_only(true));

  auto error_of_a = [&]() -> std::string {
    for (const auto& i : node->status().instances)
      if (i.id == "a" && i.error) return i.error->message;
    return {};
  };
  ASSERT_TRUE(test::run_until(ioc, [&] { return error_of_a().find("Read-only file system") != std::string::npos; }))
      << "status of a: " << error_of_a();
  EXPECT_THAT(error_of_a(), HasSubstr((control_of("a") / "request.json").string()));

  write_file(control_of("b") / "request.json", R"({"archive_paths": ["/app/data/"]})");
  ASSERT_TRUE(test::run_until(ioc, [&] { return fs::exists(control_of("b") / "response.json"); }));
  EXPECT_EQ(ProviderFixture::parse(control_of("b") / "response.json").at("status"), json::value("ok"));

  ASSERT_TRUE(space.set_read_only(false));  // the next rescan claims the request still pending
  ASSERT_TRUE(test::run_until(ioc, [&] { return fs::exists(control_of("a") / "response.json"); }));
  EXPECT_EQ(ProviderFixture::parse(control_of("a") / "response.json").at("status"), json::value("ok"));
  node->stop();
  test::run_until(ioc, [&] { return node->wait_for(std::chrono::milliseconds(0)); });
  node.reset();
}

// ---------------------------------------------------------------------------------------
// A volume root removed or replaced while the instance runs

class ProviderVolumeRoot : public ::testing::Test, protected ProviderFixture {
 protected:
  void SetUp() override { write_file(appdata() / "a.txt", "payload"); }
  void request() { write_request(R"({"archive_paths": ["/app/data/"]})"); }
};

TEST_F(ProviderVolumeRoot, RemovedRootFailsAtArchiveBuildNamingItAndIsNotRecreated) {
  fs::remove_all(appdata());
  request();

  auto out = run_once();

  EXPECT_EQ(out.failed_stage, ProviderStage::archive_build) << out.error;
  EXPECT_THAT(out.error, HasSubstr("/app/data"));
  EXPECT_EQ(control_json(io::response_name).at("stage"), json::value("archive_build"));
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_TRUE(kv.hsets.empty());
  EXPECT_FALSE(fs::exists(appdata()));  // never recreated on the host's own disk
  EXPECT_THAT(scratch_entries(), IsEmpty());

  write_file(appdata() / "a.txt", "back");
  request();
  auto again = run_once();
  ASSERT_TRUE(again.succeeded) << again.error;
}

TEST_F(ProviderVolumeRoot, RootReplacedBySymlinkIsNeverRead) {
  write_file(tmp / "secret/key.pem", "PRIVATE");
  fs::remove_all(appdata());
  fs::create_directory_symlink(tmp / "secret", appdata());
  request();

  auto out = run_once();

  EXPECT_EQ(out.failed_stage, ProviderStage::archive_build) << out.error;
  EXPECT_THAT(out.error, HasSubstr("symlink"));
  EXPECT_TRUE(cas.added.empty());  // nothing of the target was archived or uploaded
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
}

class ConsumerVolumeRoot : public ::testing::Test, protected ConsumerFixture {
 protected:
  void SetUp() override {
    write_file(provider_tree() / "a.txt", "new");
    write_file(provider_tree() / "sub/b.txt", "new b");
    write_file(appdata() / "a.txt", "old");
  }
  json::object only_quarantine() {
    auto files = quarantine_files();
    EXPECT_EQ(files.size(), 1u);
    return files.empty() ? json::object{} : files.front();
  }
  void after_backoff() { clock.set(only_quarantine().at("next_retry_after").to_number<double>()); }
};

TEST_F(ConsumerVolumeRoot, RootRemovedBeforeTheTickIsQuarantinedAndNotRecreated) {
  auto pub = publish();
  fs::remove_all(appdata());

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::preflight_failed) << out.error;
  EXPECT_THAT(out.error, HasSubstr(appdata().string()));
  EXPECT_EQ(only_quarantine().at("stage"), json::value("extract"));
  EXPECT_THAT(container.lifecycle, IsEmpty());
  EXPECT_FALSE(fs::exists(appdata()));

  fs::create_directories(appdata());  // the volume is mounted again
  after_backoff();
  auto again = run_once();
  ASSERT_EQ(again.outcome, ConsumerOutcome::applied) << again.error;
  EXPECT_EQ(read_file(appdata() / "sub/b.txt"), "new b");
}

TEST_F(ConsumerVolumeRoot, RootRemovedWhileStoppedFailsTheCommitAndIsNotRecreated) {
  auto pub = publish();
  container.on_stop = [&] { fs::remove_all(appdata()); };

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::commit_failed) << out.error;
  EXPECT_TRUE(out.restart_safe);
  EXPECT_THAT(out.error, HasSubstr(appdata().string()));
  EXPECT_EQ(only_quarantine().at("stage"), json::value("commit"));
  EXPECT_THAT(container.lifecycle, ElementsAre("stop", "start"));
  EXPECT_FALSE(fs::exists(appdata()));
  auto ctx = context();
  EXPECT_FALSE(io::apply_pending(runtime::apply_journal_path(ctx)));

  container.on_stop = nullptr;
  fs::create_directories(appdata());
  after_backoff();
  auto again = run_once();
  ASSERT_EQ(again.outcome, ConsumerOutcome::applied) << again.error;
  EXPECT_EQ(read_file(appdata() / "a.txt"), "new");
}

TEST_F(ConsumerVolumeRoot, RootReplacedBySymlinkWhileStoppedIsRefusedAndItsTargetUntouched) {
  write_file(tmp / "elsewhere/a.txt", "not yours");
  const auto target_before = snapshot_tree(tmp / "elsewhere");
  auto pub = publish();
  container.on_stop = [&] {
    fs::remove_all(appdata());
    fs::create_directory_symlink(tmp / "elsewhere", appdata());
  };

  auto out = run_once();

  EXPECT_EQ(out.outcome, ConsumerOutcome::commit_failed) << out.error;
  EXPECT_TRUE(out.restart_safe);
  EXPECT_EQ(only_quarantine().at("stage"), json::value("commit"));
  EXPECT_EQ(snapshot_tree(tmp / "elsewhere"), target_before);
  EXPECT_TRUE(fs::is_symlink(appdata()));
}

TEST_F(ConsumerVolumeRoot, RootReplacedByANewDirectoryWhileStoppedLeavesTheOldOneAlone) {
  // The volume is remounted: the old root moves aside, a new one takes its path. The commit
  // applies to what the configured path names now; the old tree is not touched.
  auto pub = publish();
  TreeSnapshot old_tree;
  container.on_stop = [&] {
    fs::rename(appdata(), tmp / "old-root");
    fs::create_directories(appdata());
    old_tree = snapshot_tree(tmp / "old-root");
  };

  auto out = run_once();

  ASSERT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_EQ(snapshot_tree(tmp / "old-root"), old_tree);
  EXPECT_EQ(read_file(appdata() / "a.txt"), "new");
  EXPECT_EQ(read_file(appdata() / "sub/b.txt"), "new b");
}

}  // namespace
}  // namespace carsync::test
