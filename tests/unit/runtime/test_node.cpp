// carsync::Node as a supervisor embeds it: on the caller's io_context, membership while
// running, status events with generations, publish and unhalt through the API, validation
// with typed errors, one owner per data_dir, a bounded shutdown.
#include "carsync/node.hpp"
#include "support/run_until.hpp"
#include "support/temp_dir.hpp"
#include "support/time_scale.hpp"

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <thread>
#include <unistd.h>

namespace carsync {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::read_file;
using test::TempDir;
using test::write_file;

class NodeTest : public ::testing::Test {
 protected:
  NodeConfig node_config() {
    NodeConfig c;
    c.data_dir = tmp / "state";
    c.node_id = "node-test";
    c.volume_roots = std::vector<std::string>{(tmp / "hosts/*").string()};
    c.limits.rescan_interval = std::chrono::seconds(3600);  // every reaction below is event-driven
    c.limits.shutdown_grace = 5s;
    return c;
  }

  InstanceConfig instance(const std::string& id, Role role, const std::string& key = "shared-key") {
    fs::create_directories(tmp / "hosts" / id / "sys");
    fs::create_directories(data_of(id));
    InstanceConfig ic;
    ic.id = id;
    ic.system_volume = tmp / "hosts" / id / "sys";
    ic.volumes = {{data_of(id).string(), "/app/data", "rw"}};
    ic.sync.enabled = true;
    ic.sync.key = key;
    ic.sync.role = role;
    return ic;
  }

  fs::path data_of(const std::string& id) const { return tmp / "hosts" / id / "data"; }

  // Runs the caller's loop until `pred` holds (bounded).
  bool run_until(const std::function<bool()>& pred, std::chrono::seconds limit = 30s) {
    return test::run_until(ioc, pred, limit);
  }

  static const InstanceStatus* find(const NodeStatus& s, const std::string& id) {
    for (const auto& i : s.instances)
      if (i.id == id) return &i;
    return nullptr;
  }

  TempDir tmp;
  boost::asio::io_context ioc{1};
};

// The whole supervisor story on the caller's io_context: add two instances at runtime,
// publish through the API, watch the consumer apply it through status events, remove both.
TEST_F(NodeTest, AddPublishApplyAndRemoveAtRuntimeOnTheCallersLoop) {
  Node node(node_config(), ioc.get_executor());
  std::vector<StatusEvent> events;
  auto sub = node.subscribe([&](const StatusEvent& e) { events.push_back(e); });
  node.start();
  EXPECT_TRUE(node.status().running);
  EXPECT_TRUE(node.status().instances.empty());

  std::optional<Result<void>> added_p, added_c;
  ASSERT_TRUE(node.add_instance(instance("prov", Role::provider), [&](Result<void> r) { added_p = r; }));
  ASSERT_TRUE(node.add_instance(instance("cons", Role::consumer), [&](Result<void> r) { added_c = r; }));
  ASSERT_TRUE(run_until([&] { return added_p && added_c; }));
  EXPECT_TRUE(added_p->has_value());
  EXPECT_TRUE(added_c->has_value());
  EXPECT_TRUE(fs::is_directory(tmp / "hosts/prov/sys/volume-sync"));

  write_file(data_of("prov") / "model.bin", "weights v1");
  std::optional<Result<SyncPoint>> published;
  ASSERT_TRUE(node.publish("prov", R"({"archive_paths": ["/app/data/"]})",
                           [&](Result<SyncPoint> r) { published = std::move(r); }));
  ASSERT_TRUE(run_until([&] { return published.has_value(); }));
  ASSERT_TRUE(published->has_value()) << published->error().message;
  const std::string cid = (*published)->cid;

  // The consumer reacts to the new record by itself (store change notification).
  ASSERT_TRUE(run_until([&] {
    for (const auto& e : events)
      if (e.instance.id == "cons" && e.instance.last_apply && e.instance.last_apply->cid == cid) return true;
    return false;
  })) << "consumer never applied " << cid;
  EXPECT_EQ(read_file(data_of("cons") / "model.bin"), "weights v1");

  // Each run goes through its phases in order and never back: bookkeeping steps (durable
  // state, removing the uploaded archive) stay in the phase they belong to.
  for (const char* id : {"prov", "cons"}) {
    std::vector<Phase> seen;
    for (const auto& e : events)
      if (e.instance.id == id && (seen.empty() || seen.back() != e.instance.phase)) seen.push_back(e.instance.phase);
    std::set<Phase> run;
    for (Phase p : seen) {
      if (p == Phase::idle) {
        run.clear();
        continue;
      }
      EXPECT_TRUE(run.insert(p).second) << id << " went back to " << to_string(p);
    }
  }

  // Generations strictly increase across every event; each status carries its generation.
  for (std::size_t i = 1; i < events.size(); ++i) EXPECT_GT(events[i].generation, events[i - 1].generation);
  EXPECT_EQ(node.status().generation, events.back().generation);
  const auto st = node.status();
  const auto* cons = find(st, "cons");
  ASSERT_NE(cons, nullptr);
  EXPECT_EQ(cons->role, Role::consumer);
  EXPECT_EQ(cons->phase, Phase::idle);
  ASSERT_TRUE(cons->last_apply.has_value());
  EXPECT_EQ(cons->last_apply->cid, cid);
  const auto* prov = find(st, "prov");
  ASSERT_NE(prov, nullptr);
  ASSERT_TRUE(prov->last_publish.has_value());
  EXPECT_EQ(prov->last_publish->cid, cid);
  EXPECT_GT(prov->last_publish->size, 0u);
  // One instance's status alone is the same as its entry in the whole node's.
  const auto one = node.status("cons");
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->generation, cons->generation);
  EXPECT_EQ(one->last_apply->cid, cid);
  EXPECT_FALSE(node.status("nobody").has_value());

  std::optional<Result<void>> removed_p, removed_c;
  ASSERT_TRUE(node.remove_instance("prov", {}, [&](Result<void> r) { removed_p = r; }));
  ASSERT_TRUE(node.remove_instance("cons", {.delete_state = true}, [&](Result<void> r) { removed_c = r; }));
  ASSERT_TRUE(run_until([&] { return removed_p && removed_c; }));
  EXPECT_TRUE(node.status().instances.empty());
  int removed_events = 0;
  for (const auto& e : events) removed_events += e.removed;
  EXPECT_EQ(removed_events, 2);
  EXPECT_TRUE(fs::exists(tmp / "state/instances/prov/sync_history/sent"))  // kept by default
      << [&] {
           std::string tree;
           for (const auto& e : fs::recursive_directory_iterator(tmp / "state")) tree += e.path().string() + "\n";
           return tree;
         }();
  EXPECT_FALSE(fs::exists(tmp / "state/instances/cons"));              // deleted on request

  node.stop();
  ASSERT_TRUE(run_until([&] { return !node.status().running && node.wait_for(0ms); }));
}

// While a step moves bytes the node itself announces samples of its counters: each one
// flagged `progress`, in the phase the last change announced, counters only growing.
TEST_F(NodeTest, ALongStepIsSampledAsProgressEvents) {
  auto cfg = node_config();
  cfg.limits.progress_interval = 10ms;  // several samples even on a machine with many cores
  Node node(cfg, ioc.get_executor());
  std::vector<StatusEvent> events;
  auto sub = node.subscribe([&](const StatusEvent& e) { events.push_back(e); });
  node.start();
  auto ic = instance("prov", Role::provider);
  ic.sync.compression_level = 9;  // slow enough to be sampled several times
  std::optional<Result<void>> added;
  ASSERT_TRUE(node.add_instance(ic, [&](Result<void> r) { added = r; }));
  ASSERT_TRUE(run_until([&] { return added.has_value(); }));
  // Random 7-bit bytes: deflate must code them (random 8-bit bytes are stored at once).
  std::string bytes(48u << 20, '\0');
  std::uint32_t x = 7;
  for (auto& c : bytes) c = static_cast<char>(((x = x * 1664525u + 1013904223u) >> 24) & 0x7f);
  write_file(data_of("prov") / "big.bin", bytes);

  std::optional<Result<SyncPoint>> published;
  ASSERT_TRUE(node.publish("prov", R"({"archive_paths": ["/app/data/"]})",
                           [&](Result<SyncPoint> r) { published = std::move(r); }));
  ASSERT_TRUE(run_until([&] { return published.has_value(); }, 120s));
  ASSERT_TRUE(published->has_value()) << published->error().message;

  std::size_t samples = 0;
  std::optional<Phase> phase;
  std::uint64_t last_done = 0;
  for (const auto& e : events) {
    if (e.instance.id != "prov") continue;
    if (!e.progress) {
      phase = e.instance.phase;
      last_done = e.instance.progress.done;
      continue;
    }
    ++samples;
    ASSERT_TRUE(phase.has_value());
    EXPECT_EQ(e.instance.phase, *phase) << "a sample changed the phase";
    EXPECT_TRUE(moves_bytes(e.instance.phase)) << to_string(e.instance.phase);
    EXPECT_GT(e.instance.progress.done, last_done) << "a sample without movement";
    last_done = e.instance.progress.done;
  }
  EXPECT_GE(samples, 2u) << "the archive step was never sampled";
  node.stop();
  ASSERT_TRUE(run_until([&] { return !node.status().running && node.wait_for(0ms); }));
}

TEST_F(NodeTest, ValidationErrorsAreTypedAndNameTheField) {
  Node node(node_config(), ioc.get_executor());
  node.start();

  auto bad = instance("bad", Role::provider);
  bad.sync.key.clear();
  auto r = node.add_instance(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::bad_config));
  EXPECT_EQ(r.error().field, "SYNC.KEY");

  auto bad_id = instance("ok", Role::provider);
  bad_id.id = "../escape";
  r = node.add_instance(bad_id);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "id");

  auto relative = instance("rel", Role::provider);
  relative.system_volume = "relative/path";
  r = node.add_instance(relative);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "system_volume");

  ASSERT_TRUE(node.add_instance(instance("p", Role::provider)));
  r = node.add_instance(instance("p", Role::provider));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::duplicate_instance));

  r = node.remove_instance("nobody");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::unknown_instance));
  r = node.update_instance(instance("nobody", Role::provider));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::unknown_instance));

  ASSERT_TRUE(node.add_instance(instance("c", Role::consumer)));
  ASSERT_TRUE(run_until([&] { return node.status().instances.size() == 2; }));
  ASSERT_TRUE(run_until([&] {
    auto s = node.status();
    return find(s, "p")->phase == Phase::idle && find(s, "c")->phase == Phase::idle;
  }));
  auto p = node.publish("c", R"({"archive_paths": ["/app/data/"]})");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, make_error_code(errc::wrong_role));
  p = node.publish("p", R"({"archive_paths": ["/etc/"]})");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, make_error_code(errc::invalid_request));
  EXPECT_FALSE(p.error().message.empty());
  p = node.publish("p", "not json");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, make_error_code(errc::invalid_request));
  p = node.publish("nobody", R"({"archive_paths": ["/app/data/"]})");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, make_error_code(errc::unknown_instance));

  // One publish at a time per instance.
  std::optional<Result<SyncPoint>> first;
  ASSERT_TRUE(node.publish("p", R"({"archive_paths": ["/app/data/"]})", [&](Result<SyncPoint> x) { first = x; }));
  p = node.publish("p", R"({"archive_paths": ["/app/data/"]})");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, make_error_code(errc::busy));
  ASSERT_TRUE(run_until([&] { return first.has_value(); }));

  node.stop();
  ASSERT_TRUE(run_until([&] { return node.wait_for(0ms); }));
  r = node.add_instance(instance("late", Role::provider));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::not_running));
}

// An update replaces the configuration: the new key is what the consumer follows.
TEST_F(NodeTest, UpdateInstanceTakesEffectWhileRunning) {
  Node node(node_config(), ioc.get_executor());
  node.start();
  ASSERT_TRUE(node.add_instance(instance("p", Role::provider, "key-a")));
  ASSERT_TRUE(node.add_instance(instance("c", Role::consumer, "key-b")));
  ASSERT_TRUE(run_until([&] { return node.status().instances.size() == 2; }));
  write_file(data_of("p") / "f.txt", "v1");
  std::optional<Result<SyncPoint>> pub;
  ASSERT_TRUE(run_until([&] { return find(node.status(), "p")->phase == Phase::idle; }));
  ASSERT_TRUE(node.publish("p", R"({"archive_paths": ["/app/data/"]})", [&](Result<SyncPoint> r) { pub = r; }));
  ASSERT_TRUE(run_until([&] { return pub.has_value(); }));
  ASSERT_TRUE(pub->has_value());
  EXPECT_FALSE(fs::exists(data_of("c") / "f.txt"));  // another key

  std::optional<Result<void>> updated;
  ASSERT_TRUE(node.update_instance(instance("c", Role::consumer, "key-a"), [&](Result<void> r) { updated = r; }));
  ASSERT_TRUE(run_until([&] { return updated.has_value(); }));
  ASSERT_TRUE(run_until([&] { return fs::exists(data_of("c") / "f.txt"); }));
  EXPECT_EQ(read_file(data_of("c") / "f.txt"), "v1");
  node.stop();
  ASSERT_TRUE(run_until([&] { return node.wait_for(0ms); }));
}

// reconfigure() (SIGHUP in carsyncd) adds, updates and removes to match the new file.
TEST_F(NodeTest, ReconfigureAppliesTheDifference) {
  auto cfg = node_config();
  cfg.instances = {instance("a", Role::provider), instance("b", Role::provider)};
  Node node(cfg, ioc.get_executor());
  node.start();
  ASSERT_TRUE(run_until([&] { return find(node.status(), "b") && find(node.status(), "b")->phase == Phase::idle; }));

  auto next = node_config();
  next.instances = {instance("b", Role::provider, "other-key"), instance("c", Role::consumer)};
  std::optional<Result<void>> done;
  ASSERT_TRUE(node.reconfigure(next, [&](Result<void> r) { done = r; }));
  ASSERT_TRUE(run_until([&] { return done.has_value(); }));
  auto s = node.status();
  ASSERT_EQ(s.instances.size(), 2u);
  EXPECT_EQ(find(s, "a"), nullptr);
  ASSERT_NE(find(s, "b"), nullptr);
  ASSERT_NE(find(s, "c"), nullptr);
  node.stop();
  ASSERT_TRUE(run_until([&] { return node.wait_for(0ms); }));
}

TEST_F(NodeTest, ASecondNodeOnTheSameDataDirIsRefusedNamingTheHolder) {
  Node first(node_config(), ioc.get_executor());
  try {
    Node second(node_config(), ioc.get_executor());
    FAIL() << "a second node took the same data_dir";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.field(), "data_dir");
    EXPECT_NE(std::string(e.what()).find("pid " + std::to_string(::getpid())), std::string::npos) << e.what();
  }
}

TEST_F(NodeTest, StopBeforeStartAndOwnThreadMode) {
  {
    Node never(node_config());
    never.stop();
    EXPECT_TRUE(never.wait_for(0ms));
  }
  Node own(node_config());
  own.start();
  ASSERT_TRUE(own.add_instance(instance("p", Role::provider)));
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (own.status().instances.empty() || own.status().instances[0].phase != Phase::idle) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(5ms);  // polls the node's own thread, bounded by the deadline
  }
  own.stop();
  EXPECT_TRUE(own.wait_for(10s));
}

// An embedder unsubscribes from a thread of its own and then frees what the callback uses:
// once Subscription::reset() has returned, no callback of it is running or runs later. The
// callback below is caught mid-run when reset() is called and stays inside a while: reset()
// must wait for it instead of returning under its feet.
TEST_F(NodeTest, NoCallbackRunsOnceResetHasReturnedOnAnotherThread) {
  Node own(node_config());
  own.start();
  std::atomic<bool> entered{false}, reset_started{false}, reset_returned{false};
  std::atomic<int> calls_after_reset{0};
  auto sub = own.subscribe([&](const StatusEvent&) {
    if (reset_returned.load()) ++calls_after_reset;
    if (entered.exchange(true)) return;  // the first event holds the callback open
    const auto until = std::chrono::steady_clock::now() + test::scaled(std::chrono::seconds(10));
    while (!reset_started.load() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    // reset() has been called: it may not return while this callback runs, so a correct
    // node keeps reset_returned false for the whole bounded wait.
    const auto hold = std::chrono::steady_clock::now() + 200ms;
    while (std::chrono::steady_clock::now() < hold)
      if (reset_returned.load()) {
        ++calls_after_reset;
        return;
      }
  });
  ASSERT_TRUE(own.add_instance(instance("p", Role::provider)));  // its phase changes are events
  const auto deadline = std::chrono::steady_clock::now() + test::scaled(std::chrono::seconds(20));
  while (!entered.load()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::yield();  // waits for the node's thread to enter the callback, bounded
  }
  reset_started = true;
  sub.reset();
  reset_returned = true;
  // The instance's later events (it goes on to idle) reach no one.
  while (own.status().instances.empty() || own.status().instances[0].phase != Phase::idle) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(5ms);  // polls the node's own thread, bounded by the deadline
  }
  own.stop();
  EXPECT_TRUE(own.wait_for(10s));
  EXPECT_EQ(calls_after_reset.load(), 0);
}

}  // namespace
}  // namespace carsync

namespace carsync {
namespace {

bool is_mount_point(const fs::path& p) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  const std::string want = " " + fs::weakly_canonical(p).string() + " ";
  while (std::getline(in, line))
    if (line.find(want) != std::string::npos) return true;
  return false;
}

// The system volume as the reference provisions it: adding the instance mounts its ext4
// image, removing it unmounts and detaches; the image and its contents survive.
TEST_F(NodeTest, SystemVolumeImageIsMountedWhileTheInstanceLives) {
  if (::geteuid() != 0 || !fs::exists("/dev/loop-control")) GTEST_SKIP() << "needs root and loop devices";
  Node node(node_config(), ioc.get_executor());
  node.start();
  auto ic = instance("img", Role::provider);
  ic.system_volume_image = SystemVolumeImage{.image_dir = tmp / "images", .size_bytes = 10 << 20};
  fs::create_directories(tmp / "images");
  std::optional<Result<void>> added;
  ASSERT_TRUE(node.add_instance(ic, [&](Result<void> r) { added = r; }));
  ASSERT_TRUE(run_until([&] { return added.has_value(); }));
  EXPECT_TRUE(is_mount_point(ic.system_volume));
  EXPECT_TRUE(fs::is_directory(ic.system_volume / "volume-sync"));
  write_file(ic.system_volume / "volume-sync" / "keep.txt", "kept");

  std::optional<Result<void>> removed;
  ASSERT_TRUE(node.remove_instance("img", {}, [&](Result<void> r) { removed = r; }));
  ASSERT_TRUE(run_until([&] { return removed.has_value(); }));
  EXPECT_FALSE(is_mount_point(ic.system_volume));
  EXPECT_TRUE(fs::exists(tmp / "images/img.img"));

  // Added again: the same image, its contents intact.
  added.reset();
  ASSERT_TRUE(node.add_instance(ic, [&](Result<void> r) { added = r; }));
  ASSERT_TRUE(run_until([&] { return added.has_value(); }));
  EXPECT_EQ(read_file(ic.system_volume / "volume-sync" / "keep.txt"), "kept");
  removed.reset();
  ASSERT_TRUE(node.remove_instance("img", {}, [&](Result<void> r) { removed = r; }));
  ASSERT_TRUE(run_until([&] { return removed.has_value(); }));
  EXPECT_FALSE(is_mount_point(ic.system_volume));
  node.stop();
  ASSERT_TRUE(run_until([&] { return node.wait_for(0ms); }));
}

// A failed image step marks the system volume unavailable with the reason: sync disabled.
TEST_F(NodeTest, UnusableSystemVolumeImageDisablesTheInstanceWithTheReason) {
  Node node(node_config(), ioc.get_executor());
  node.start();
  auto ic = instance("img", Role::provider);
  ic.system_volume_image = SystemVolumeImage{.image_dir = tmp / "missing-parent/images", .size_bytes = 10 << 20};
  std::optional<Result<void>> added;
  ASSERT_TRUE(node.add_instance(ic, [&](Result<void> r) { added = r; }));
  ASSERT_TRUE(run_until([&] { return added.has_value(); }));
  auto s = node.status();
  ASSERT_EQ(s.instances.size(), 1u);
  EXPECT_FALSE(s.instances[0].enabled);
  EXPECT_EQ(s.instances[0].phase, Phase::disabled);
  ASSERT_TRUE(s.instances[0].error.has_value());
  EXPECT_EQ(s.instances[0].error->stage, Stage::system_volume);
  node.stop();
  ASSERT_TRUE(run_until([&] { return node.wait_for(0ms); }));
}

}  // namespace
}  // namespace carsync
