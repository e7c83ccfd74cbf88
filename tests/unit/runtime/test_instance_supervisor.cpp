// The instance actor's lifecycle: stopping (shutdown or removal) in every phase ends within
// its bound and leaves the container and the volumes as the issue demands; API publishes and
// the first-boot gate run between lifecycles. Over the fakes, on the test's io_context.
#include "runtime/instance_supervisor.hpp"
#include "support/consumer_fixture.hpp"
#include "support/provider_fixture.hpp"
#include "support/run_until.hpp"

#include <boost/asio/co_spawn.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fcntl.h>
#include <functional>
#include <unistd.h>

namespace carsync::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

runtime::NodeServices services_for(FakeContentStore& cas, FakeKvStore& kv, runtime::BlockingPool& io,
                                   runtime::BlockingPool& cpu, FakeClock& clock, const fs::path& data_dir,
                                   RuntimeLimits limits = {}) {
  return runtime::NodeServices{.cas = cas,
                               .kv = kv,
                               .io_pool = io,
                               .cpu_pool = cpu,
                               .clock = clock,
                               .policy = core::MountPolicy{},
                               .node_id = std::string("node-test"),
                               .data_dir = data_dir,
                               .engine = io::EngineKind::portable,
                               .limits = limits};
}

// Runs `op` to completion on `ioc` and returns how long it took.
double timed_run(asio::io_context& ioc, asio::awaitable<void> op) {
  bool done = false;
  const auto t0 = std::chrono::steady_clock::now();
  asio::co_spawn(ioc, std::move(op), [&](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
    done = true;
  });
  run_until(ioc, [&] { return done; }, 120s);
  EXPECT_TRUE(done);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A file of `bytes` zeros that takes no disk space: its capture takes seconds.
void sparse_file(const fs::path& p, off_t bytes) {
  const int fd = ::open(p.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, bytes), 0);
  ::close(fd);
}

class ProviderActor : public ProviderFixture, public ::testing::Test {
 protected:
  ProviderActor() {
    limits.cleanup_timeout = 5s;
    svc.emplace(services_for(cas, kv, io_pool, cpu_pool, clock, tmp / "data", limits));
    auto owned = std::make_unique<FakeContainer>();
    fake = owned.get();
    sup.emplace(config, *svc, std::move(owned), ioc.get_executor());
    sup->status_cell().on_change([this](InstanceStatus& s) { phases.push_back(s.phase); });
  }

  bool saw(Phase p) const { return std::find(phases.begin(), phases.end(), p) != phases.end(); }

  void start() {
    run(sup->prepare());
    ASSERT_TRUE(sup->active());
    sup->start();
  }

  RuntimeLimits limits;
  std::optional<runtime::NodeServices> svc;
  FakeContainer* fake = nullptr;
  std::optional<runtime::InstanceSupervisor> sup;
  std::vector<Phase> phases;
};

// Removal during the upload: the container was already restarted after the build; the archive
// goes, nothing is published, nothing is answered, and .processing stays for recovery.
TEST_F(ProviderActor, RemovedDuringUploadUndoesWithinItsBound) {
  fs::create_directories(appdata());
  write_file(appdata() / "f.txt", "hello");
  write_request(R"({"archive_paths": ["/app/data/"]})");
  cas.hang_on_add = true;
  start();
  ASSERT_TRUE(run_until(ioc, [&] { return !cas.added.empty(); }));

  const double took = timed_run(ioc, sup->stop(50ms, /*restore=*/true));
  EXPECT_LT(took, 5.0);  // grace + the cancelled upload's undo, far below the bound
  EXPECT_TRUE(sup->drained());
  EXPECT_EQ(fake->lifecycle, (std::vector<std::string>{"stop", "start"}));
  EXPECT_TRUE(kv.hsets.empty());
  EXPECT_TRUE(scratch_entries().empty());
  EXPECT_TRUE(control_exists(io::processing_name));
  EXPECT_FALSE(control_exists(io::response_name));
  ASSERT_TRUE(sup->status().error.has_value());
  EXPECT_EQ(sup->status().error->stage, Stage::cancelled);
  EXPECT_EQ(sup->status().requests_failed, 0u);
}

// Removal while the container is stopped for the capture: the build is cancelled, the
// container started again, the partial archive removed, nothing uploaded.
TEST_F(ProviderActor, RemovedDuringCaptureStartsTheContainerAgain) {
  fs::create_directories(appdata());
  sparse_file(appdata() / "big.bin", off_t{16} << 30);
  write_request(R"({"archive_paths": ["/app/data/"]})");
  start();
  ASSERT_TRUE(run_until(ioc, [&] { return saw(Phase::archiving) && !fake->lifecycle.empty(); }));
  ASSERT_EQ(fake->lifecycle, (std::vector<std::string>{"stop"}));
  // The status reports the capture's progress while it runs (bytes read so far).
  ASSERT_TRUE(run_until(ioc, [&] { return sup->status().progress.done > 0; }));
  EXPECT_EQ(sup->status().phase, Phase::archiving);

  const double took = timed_run(ioc, sup->stop(10ms, /*restore=*/true));
  EXPECT_LT(took, 5.0);
  EXPECT_EQ(fake->lifecycle, (std::vector<std::string>{"stop", "start"}));
  EXPECT_TRUE(cas.added.empty());
  EXPECT_TRUE(kv.hsets.empty());
  EXPECT_TRUE(scratch_entries().empty());
  EXPECT_TRUE(control_exists(io::processing_name));
}

// A hung container stop: cancellation ends it and the container is started (whether it
// stopped is unknown; starting a running one changes nothing).
TEST_F(ProviderActor, RemovedDuringAHungStopStartsTheContainer) {
  fs::create_directories(appdata());
  write_request(R"({"archive_paths": ["/app/data/"]})");
  fake->hang_on_stop = true;
  start();
  ASSERT_TRUE(run_until(ioc, [&] { return !fake->lifecycle.empty(); }));
  const double took = timed_run(ioc, sup->stop(10ms, /*restore=*/true));
  EXPECT_LT(took, 5.0);
  EXPECT_EQ(fake->lifecycle, (std::vector<std::string>{"stop", "start"}));
  EXPECT_TRUE(cas.added.empty());
}

// An idle instance stops at once: nothing waits for a timer or the grace period.
TEST_F(ProviderActor, IdleInstanceStopsAtOnce) {
  start();
  ASSERT_TRUE(run_until(ioc, [&] { return sup->status().phase == Phase::idle; }));
  const double took = timed_run(ioc, sup->stop(30s, /*restore=*/false));
  EXPECT_LT(took, 1.0);
  EXPECT_TRUE(fake->lifecycle.empty());
}

// A publish without a file: same lifecycle, the control directory untouched, the caller told.
TEST_F(ProviderActor, ApiPublishAnswersTheCallerAndLeavesControlFilesAlone) {
  fs::create_directories(appdata());
  write_file(appdata() / "f.txt", "hello");
  start();
  ASSERT_TRUE(sup->reserve_publish());
  EXPECT_FALSE(sup->reserve_publish());  // one at a time
  std::optional<Result<SyncPoint>> answer;
  sup->publish(R"({"archive_paths": ["/app/data/"]})", [&](Result<SyncPoint> r) { answer = std::move(r); });
  ASSERT_TRUE(run_until(ioc, [&] { return answer.has_value(); }));
  ASSERT_TRUE(answer->has_value()) << answer->error().message;
  EXPECT_EQ((*answer)->cid, kv.hsets.at(0).value.at("cid").as_string());
  EXPECT_GT((*answer)->size, 0u);
  EXPECT_FALSE(control_exists(io::response_name));
  EXPECT_FALSE(control_exists(io::processing_name));
  EXPECT_TRUE(sup->reserve_publish());  // released once answered
  timed_run(ioc, sup->stop(1s, false));
}

// A publish queued behind a stop is answered, not dropped.
TEST_F(ProviderActor, PublishQueuedWhenStoppingIsAnsweredCancelled) {
  start();
  ASSERT_TRUE(sup->reserve_publish());
  std::optional<Result<SyncPoint>> answer;
  timed_run(ioc, sup->stop(1s, false));
  sup->publish(R"({"archive_paths": ["/app/data/"]})", [&](Result<SyncPoint> r) { answer = std::move(r); });
  ASSERT_TRUE(answer.has_value());
  ASSERT_FALSE(answer->has_value());
  EXPECT_EQ(answer->error().code, make_error_code(errc::not_running));
}

class ConsumerActor : public ConsumerFixture, public ::testing::Test {
 protected:
  ConsumerActor() {
    limits.cleanup_timeout = 5s;
    svc.emplace(services_for(cas, kv, io_pool, cpu_pool, clock, tmp / "data", limits));
  }

  void make(InstanceConfig c) {
    auto owned = std::make_unique<FakeContainer>();
    fake = owned.get();
    sup.emplace(std::move(c), *svc, std::move(owned), ioc.get_executor());
  }

  void start() {
    bool done = false;
    asio::co_spawn(ioc, sup->prepare(), [&](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
      done = true;
    });
    ASSERT_TRUE(run_until(ioc, [&] { return done; }));
    sup->start();
  }

  RuntimeLimits limits;
  std::optional<runtime::NodeServices> svc;
  FakeContainer* fake = nullptr;
  std::optional<runtime::InstanceSupervisor> sup;
};

// Removal once the container is stopped for the apply, before the commit: the attempt is
// abandoned, the volume untouched, the container started again, nothing quarantined.
TEST_F(ConsumerActor, RemovedBeforeTheCommitLeavesTheVolumeAndRestartsTheContainer) {
  fs::create_directories(provider_tree());
  write_file(provider_tree() / "new.txt", "new");
  fs::create_directories(appdata());
  write_file(appdata() / "old.txt", "old");
  publish();
  make(config);
  fake->hang_on_stop = true;  // the apply waits for the stop: the removal arrives there
  start();
  ASSERT_TRUE(run_until(ioc, [&] { return !fake->lifecycle.empty(); }));

  const double took = timed_run(ioc, sup->stop(10ms, /*restore=*/true));
  EXPECT_LT(took, 5.0);
  EXPECT_EQ(fake->lifecycle, (std::vector<std::string>{"stop", "start"}));
  EXPECT_FALSE(present(appdata() / "new.txt"));
  EXPECT_EQ(read_file(appdata() / "old.txt"), "old");
  EXPECT_FALSE(present(state_dir() / "quarantine") && !fs::is_empty(state_dir() / "quarantine"));
  EXPECT_FALSE(present(state_dir() / "apply_journal.json"));
  EXPECT_FALSE(control_exists(io::last_apply_name));
}

// Removal that arrives while the apply commits: the commit is never interrupted and
// finalisation completes — last_apply.json written, the container started.
TEST_F(ConsumerActor, StoppedDuringTheApplyFinishesIt) {
  fs::create_directories(provider_tree());
  write_file(provider_tree() / "new.txt", "new");
  fs::create_directories(appdata());
  auto pub = publish();
  make(config);
  bool stopping = false;
  start();
  // The stop is requested the moment the container is down for the apply.
  fake->on_stop = [&] { stopping = true; };
  ASSERT_TRUE(run_until(ioc, [&] { return stopping; }));
  const double took = timed_run(ioc, sup->stop(30s, /*restore=*/true));
  EXPECT_LT(took, 10.0);
  EXPECT_EQ(fake->lifecycle, (std::vector<std::string>{"stop", "start"}));
  EXPECT_EQ(read_file(appdata() / "new.txt"), "new");
  ASSERT_TRUE(control_exists(io::last_apply_name));
  EXPECT_EQ(parse(control_file(io::last_apply_name)).at("cid"), boost::json::value(pub.cid));
  ASSERT_TRUE(sup->status().last_apply.has_value());
  EXPECT_EQ(sup->status().last_apply->cid, pub.cid);
}

// The first-boot gate with INITIAL_SYNC_TIMEOUT 0 (forever) must not hold a shutdown.
TEST_F(ConsumerActor, GateHoldingForeverDoesNotDelayShutdown) {
  InstanceConfig c = config;
  c.sync.initial_sync_timeout = 0.0;
  make(c);
  start();
  ASSERT_TRUE(run_until(ioc, [&] { return sup->status().phase == Phase::gated || !fake->lifecycle.empty(); }));
  ASSERT_TRUE(run_until(ioc, [&] { return !kv.hgets.empty(); }));
  const double took = timed_run(ioc, sup->stop(30s, /*restore=*/false));
  EXPECT_LT(took, 1.0);
  EXPECT_EQ(fake->lifecycle, (std::vector<std::string>{"stop"}));  // still held: the gate resumes at start
}

// Removed while the gate holds the container: the app gets its container back.
TEST_F(ConsumerActor, RemovalReleasesTheGatedContainer) {
  InstanceConfig c = config;
  c.sync.initial_sync_timeout = 3600.0;
  make(c);
  start();
  ASSERT_TRUE(run_until(ioc, [&] { return !kv.hgets.empty(); }));
  const double took = timed_run(ioc, sup->stop(30s, /*restore=*/true));
  EXPECT_LT(took, 1.0);
  EXPECT_EQ(fake->lifecycle, (std::vector<std::string>{"stop", "start"}));
}

// The gate's timeout fires between lifecycles and starts the container once.
TEST_F(ConsumerActor, GateTimeoutStartsTheContainerWithoutASnapshot) {
  InstanceConfig c = config;
  c.sync.initial_sync_timeout = 0.2;
  make(c);
  start();
  ASSERT_TRUE(run_until(ioc, [&] { return fake->lifecycle.size() == 2; }));
  EXPECT_EQ(fake->lifecycle, (std::vector<std::string>{"stop", "start"}));
  timed_run(ioc, sup->stop(1s, false));
}

// unhalt on the running actor clears the durable halt and lets the next record apply.
TEST_F(ConsumerActor, UnhaltClearsTheDurableHaltAndTheNextRecordApplies) {
  fs::create_directories(provider_tree());
  write_file(provider_tree() / "new.txt", "new");
  fs::create_directories(appdata());
  fs::create_directories(state_dir());
  write_file(state_dir() / "current_apply.json",
             R"({"state": "uncertain", "cid": "QmOld", "version": 1, "timestamp": 1, "halted": true})");
  auto pub = publish();
  make(config);
  start();
  ASSERT_TRUE(run_until(ioc, [&] { return sup->status().halted; }));
  EXPECT_FALSE(present(appdata() / "new.txt"));
  std::optional<Result<void>> answer;
  sup->unhalt([&](Result<void> r) { answer = std::move(r); });
  ASSERT_TRUE(run_until(ioc, [&] { return answer.has_value(); }));
  EXPECT_TRUE(answer->has_value());
  sup->poke();
  ASSERT_TRUE(run_until(ioc, [&] { return sup->status().last_apply.has_value(); }));
  EXPECT_EQ(sup->status().last_apply->cid, pub.cid);
  EXPECT_FALSE(sup->status().halted);
  EXPECT_EQ(read_file(appdata() / "new.txt"), "new");
  timed_run(ioc, sup->stop(1s, false));
}

}  // namespace
}  // namespace carsync::test
