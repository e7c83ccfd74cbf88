// carsyncd against a misbehaving edge node: the devnode restarted with --faults per
// scenario (same ports, same stores), real carsyncd processes on backend "r1".
//  * provider: every failed upload or publish is answered at the right stage, within the
//    configured deadlines, and leaves nothing published and no orphaned upload;
//  * consumer: a truncated or corrupted download is never applied and is quarantined, and a
//    later snapshot still applies; a failing hsync does not keep the record from applying;
//  * one consumer's stuck download does not hold up another consumer in the same carsyncd.
#include "backend/local_kv.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/tree_snapshot.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace carsync::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr auto start_deadline = 30s;
constexpr auto scenario_deadline = 40s;

// One app instance: its volumes, and its place in a carsyncd.
struct Instance {
  std::string id, key, role;
  fs::path system_volume, data_volume;
  fs::path control_dir() const { return system_volume / "volume-sync"; }
};

struct Timeouts {
  int store_s, step_s;
};

TreeSnapshot normalised(TreeSnapshot tree) {
  for (auto& [path, node] : tree) node.mode = (node.mode & 0777) | (node.type == 'd' ? 0755 : 0644);
  return tree;
}

std::size_t regular_files_under(const fs::path& dir) {
  std::size_t n = 0;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

class Faults : public ::testing::Test {
 protected:
  void TearDown() override {
    for (auto& d : daemons) d->terminate(10s);
    if (devnode) devnode->terminate(10s);
  }

  Instance& add_instance(const std::string& id, const std::string& key, const std::string& role) {
    const fs::path root = tmp / "edge" / id / "fixed_volumes/mounts";
    auto& inst = instances.emplace_back(Instance{id, key, role, root / "r1en_system", root / "appdata"});
    fs::create_directories(inst.system_volume);
    fs::create_directories(inst.data_volume);
    return inst;
  }

  // (Re)starts the devnode on the same ports and stores, with `faults` ("" for none).
  void start_devnode(const std::string& faults) {
    if (devnode) {
      const auto status = devnode->terminate(10s);
      ASSERT_TRUE(status) << "devnode did not stop\n" << devnode->output();
      devnode.reset();
    }
    std::vector<std::string> argv{CARSYNC_DEVNODE_PATH, "--data-dir",   devnode_dir.string(),
                                  "--listen",           "127.0.0.1",
                                  "--cstore-port",      cstore_port,
                                  "--r1fs-port",        r1fs_port};
    if (!faults.empty()) argv.insert(argv.end(), {"--faults", faults});
    devnode = std::make_unique<ChildProcess>(argv);
    ASSERT_TRUE(devnode->wait_for_output("devnode ready", start_deadline)) << devnode->output();
    auto ready = parse_devnode_ready(devnode->output());
    ASSERT_TRUE(ready) << devnode->output();
    urls = *ready;
    cstore_port = urls.cstore.substr(urls.cstore.rfind(':') + 1);
    r1fs_port = urls.r1fs.substr(urls.r1fs.rfind(':') + 1);
  }

  // A carsyncd running `members` (ids of instances added before), against the devnode.
  ChildProcess& start_daemon(const std::string& name, const std::vector<std::string>& members, Timeouts t) {
    json::array list;
    for (const auto& inst : instances) {
      if (std::find(members.begin(), members.end(), inst.id) == members.end()) continue;
      list.push_back(json::object{
          {"id", inst.id},
          {"container", nullptr},
          {"system_volume", inst.system_volume.string()},
          {"volumes", json::object{{inst.data_volume.string(), json::object{{"bind", "/app/data"}}}}},
          {"SYNC", json::object{{"ENABLED", true}, {"KEY", inst.key}, {"TYPE", inst.role}, {"POLL_INTERVAL", 1}}},
      });
    }
    const fs::path config = tmp / (name + ".json");
    write_file(config, json::serialize(json::object{
                           {"data_dir", (tmp / name).string()},
                           {"control_socket", (tmp / (name + ".sock")).string()},
                           {"node_id", name},
                           {"backend", json::object{{"kind", "r1"}, {"cstore_url", urls.cstore}, {"r1fs_url", urls.r1fs}}},
                           {"limits", json::object{{"rescan_interval_s", 3600},
                                                   {"store_timeout_s", t.store_s},
                                                   {"step_timeout_s", t.step_s},
                                                   {"shutdown_grace_s", 5}}},
                           {"instances", std::move(list)},
                       }));
    auto& d = *daemons.emplace_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{CARSYNCD_PATH, "--config", config.string()}));
    EXPECT_TRUE(d.wait_for_output("carsyncd ready", start_deadline)) << d.output();
    return d;
  }

  // Drops a request and returns response.json once it is written (nullopt at the deadline).
  std::optional<json::object> request(const Instance& provider, int epoch) {
    std::error_code ec;
    fs::remove(provider.control_dir() / "response.json", ec);
    fs::remove(provider.control_dir() / "request.json.invalid", ec);
    drop_request(provider.control_dir(),
                 R"({"archive_paths": ["/app/data"], "metadata": {"epoch": )" + std::to_string(epoch) + "}}");
    std::optional<json::object> response;
    poll_until(Clock::now() + scenario_deadline,
               [&] { return (response = read_json_object(provider.control_dir() / "response.json")).has_value(); });
    return response;
  }

  // Publishes and returns the CID (empty, with the test failed, on any failure).
  std::string publish(const Instance& provider, int epoch) {
    auto response = request(provider, epoch);
    EXPECT_TRUE(response) << "no response.json\n" << daemons.front()->output();
    if (!response) return {};
    EXPECT_EQ(response->at("status"), json::value("ok")) << json::serialize(*response);
    const auto* cid = response->if_contains("cid");
    return cid && cid->is_string() ? std::string(cid->as_string()) : std::string();
  }

  std::optional<json::value> published_record(const std::string& key) {
    backend::LocalKv kv(devnode_dir / "kv");
    auto r = kv.hget("CHAINSTORE_SYNC", key);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : std::nullopt;
  }

  std::optional<json::object> last_apply(const Instance& consumer) {
    return read_json_object(consumer.control_dir() / "last_apply.json");
  }

  bool wait_applied(const Instance& consumer, const std::string& cid, Clock::time_point deadline) {
    return poll_until(deadline, [&] {
      auto last = last_apply(consumer);
      return last && last->at("cid") == json::value(cid);
    });
  }

  // The quarantine record of `cid` for the instance run by daemon `daemon_name`, if any.
  std::optional<json::object> quarantine_of(const std::string& daemon_name, const Instance& consumer,
                                            const std::string& cid) {
    const fs::path dir = tmp / daemon_name / "instances" / consumer.id / "sync_history/state/quarantine";
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return std::nullopt;
    // "<cid, first 32 characters>__<digest>.json" (our CIDs are alphanumeric).
    const std::string prefix = cid.substr(0, 32) + "__";
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().starts_with(prefix)) return read_json_object(e.path());
    return std::nullopt;
  }

  TempDir tmp;
  fs::path devnode_dir = tmp / "devnode";
  std::string cstore_port = "0", r1fs_port = "0";
  DevnodeUrls urls;
  std::deque<Instance> instances;  // stable references
  std::unique_ptr<ChildProcess> devnode;
  std::vector<std::unique_ptr<ChildProcess>> daemons;
};

// §7.5: a failed add_file or hset is reported at its stage; nothing is left published, and
// an archive uploaded before a failed publish is deleted again.
TEST_F(Faults, ProviderUploadAndPublishFailuresAreReportedAtTheirStage) {
  auto& provider = add_instance("prov", "a3c1e5f7-0b2d-4c6e-8f1a-3b5d7f9e1c20", "provider");
  write_file(provider.data_volume / "state.bin", pattern_bytes(200'003, 1));
  constexpr Timeouts timeouts{.store_s = 2, .step_s = 4};
  ASSERT_NO_FATAL_FAILURE(start_devnode(""));
  auto& daemon = start_daemon("provider-host", {"prov"}, timeouts);

  struct Scenario {
    std::string faults, stage;
    bool times_out = false;
  };
  const std::vector<Scenario> scenarios = {
      {"add_file:500", "r1fs_upload"},
      {"add_file:reset", "r1fs_upload"},
      {"add_file:hang", "r1fs_upload", true},
      {"hset:500", "chainstore_publish"},
      {"hset:reset", "chainstore_publish"},
  };
  int epoch = 0;
  for (const auto& s : scenarios) {
    SCOPED_TRACE("--faults " + s.faults);
    ASSERT_NO_FATAL_FAILURE(start_devnode(s.faults));
    const auto started = Clock::now();
    auto response = request(provider, ++epoch);
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    ASSERT_TRUE(response) << "no response.json\n" << daemon.output();
    std::printf("[ fault    ] %-18s -> stage %s in %.3f s: %s\n", s.faults.c_str(),
                json::serialize(response->at("stage")).c_str(), seconds,
                json::serialize(response->at("error")).c_str());
    EXPECT_EQ(response->at("status"), json::value("error")) << json::serialize(*response);
    EXPECT_EQ(response->at("stage"), json::value(s.stage)) << json::serialize(*response);
    auto invalid = read_json_object(provider.control_dir() / "request.json.invalid");
    ASSERT_TRUE(invalid);
    EXPECT_EQ(invalid->at("_error").at("stage"), json::value(s.stage));
    if (s.times_out) {
      EXPECT_NE(json::serialize(response->at("error")).find("timed out"), std::string::npos);
      EXPECT_GE(seconds, timeouts.store_s - 0.5);  // it really waited for the node
      EXPECT_LT(seconds, timeouts.step_s + 6.0);   // and no longer than its deadlines allow
    }
    EXPECT_FALSE(published_record(provider.key)) << "a record was published";
    // Nothing uploaded survives: a failed upload stored nothing, a failed publish deleted it.
    EXPECT_EQ(regular_files_under(devnode_dir / "cas"), 0u);
  }

  // The same provider publishes fine once the node behaves.
  ASSERT_NO_FATAL_FAILURE(start_devnode(""));
  const auto cid = publish(provider, ++epoch);
  ASSERT_FALSE(cid.empty());
  auto record = published_record(provider.key);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->at("cid"), json::value(cid));
  EXPECT_GE(regular_files_under(devnode_dir / "cas"), 1u);  // the count above does see blobs
}

// §8.4/§8.7: a download that arrives truncated or corrupted is never applied and its CID is
// quarantined; the next snapshot applies all the same. hsync fails throughout: the record
// still comes through hget.
TEST_F(Faults, BadDownloadsAreQuarantinedAndTheNextSnapshotApplies) {
  const std::string key = "c4e2a6b8-1d3f-4a5c-9e7b-2d4f6a8c0e31";
  auto& provider = add_instance("prov", key, "provider");
  auto& consumer = add_instance("cons", key, "consumer");
  write_file(consumer.data_volume / "local-only.txt", "the consumer's own file");  // overlay keeps it
  const auto untouched = snapshot_tree(consumer.data_volume);

  ASSERT_NO_FATAL_FAILURE(start_devnode("get_file:truncate,hsync:500"));
  auto& producer = start_daemon("provider-host", {"prov"}, {.store_s = 3, .step_s = 10});
  auto& daemon = start_daemon("consumer-host", {"cons"}, {.store_s = 3, .step_s = 10});

  struct Scenario {
    std::string faults;
    std::string cid;
  };
  std::vector<Scenario> bad = {{"get_file:truncate,hsync:500", {}}, {"get_file:corrupt,hsync:500", {}}};
  int epoch = 0;
  for (auto& s : bad) {
    SCOPED_TRACE("--faults " + s.faults);
    if (epoch > 0) {
      ASSERT_NO_FATAL_FAILURE(start_devnode(s.faults));
    }
    write_file(provider.data_volume / "state.bin", pattern_bytes(300'007, static_cast<std::uint32_t>(10 + epoch)));
    s.cid = publish(provider, ++epoch);
    ASSERT_FALSE(s.cid.empty()) << producer.output();

    std::optional<json::object> quarantined;
    ASSERT_TRUE(poll_until(Clock::now() + scenario_deadline,
                           [&] { return (quarantined = quarantine_of("consumer-host", consumer, s.cid)).has_value(); }))
        << "cid " << s.cid << " not quarantined\n"
        << daemon.output();
    std::printf("[ fault    ] %-28s -> quarantined at stage %s: %s\n", s.faults.c_str(),
                json::serialize(quarantined->at("stage")).c_str(), json::serialize(quarantined->at("error")).c_str());
    EXPECT_EQ(quarantined->at("cid"), json::value(s.cid));
    EXPECT_EQ(quarantined->at("stage"), json::value("r1fs_download"));
    EXPECT_EQ(snapshot_tree(consumer.data_volume), untouched);
    EXPECT_FALSE(last_apply(consumer)) << "something was applied";
    // A failed download leaves no file behind.
    EXPECT_EQ(regular_files_under(tmp / "consumer-host" / "downloads"), 0u);
  }

  // The quarantined record backs off for a minute; a new snapshot does not wait for it.
  ASSERT_NO_FATAL_FAILURE(start_devnode("hsync:500"));
  write_file(provider.data_volume / "nested/new.txt", "generation 3");
  const auto good = publish(provider, ++epoch);
  ASSERT_FALSE(good.empty());
  ASSERT_TRUE(wait_applied(consumer, good, Clock::now() + scenario_deadline)) << daemon.output();
  auto expected = normalised(snapshot_tree(provider.data_volume));
  expected.emplace("local-only.txt", TreeNode{'f', 0644, "the consumer's own file"});
  EXPECT_EQ(normalised(snapshot_tree(consumer.data_volume)), expected);

  const auto log = daemon.output();
  EXPECT_NE(log.find("hsync failed"), std::string::npos) << log;
  EXPECT_EQ(log.find("hsync ok"), std::string::npos) << log;
}

// Two consumers in one carsyncd; only one snapshot's download hangs. The other consumer
// applies while the first is still stuck, and the stuck one gives up within its deadline.
TEST_F(Faults, OneStuckDownloadDoesNotHoldUpAnotherConsumer) {
  const std::string key_a = "d5f3b7c9-2e4a-4b6d-8f0c-3e5a7c9e1f42", key_b = "e6a4c8d0-3f5b-4c7e-9a1d-4f6b8d0a2b53";
  auto& prov_a = add_instance("prov-a", key_a, "provider");
  auto& prov_b = add_instance("prov-b", key_b, "provider");
  auto& cons_a = add_instance("cons-a", key_a, "consumer");
  auto& cons_b = add_instance("cons-b", key_b, "consumer");
  write_file(prov_a.data_volume / "a.bin", pattern_bytes(250'001, 21));
  write_file(prov_b.data_volume / "b.bin", pattern_bytes(250'001, 22));
  const auto untouched_a = snapshot_tree(cons_a.data_volume);

  ASSERT_NO_FATAL_FAILURE(start_devnode(""));
  start_daemon("provider-host", {"prov-a", "prov-b"}, {.store_s = 3, .step_s = 10});
  const auto cid_a = publish(prov_a, 1);
  const auto cid_b = publish(prov_b, 1);
  ASSERT_FALSE(cid_a.empty());
  ASSERT_FALSE(cid_b.empty());

  // Only cid_a's download hangs; the consumers start now, so both see their record at once.
  constexpr Timeouts timeouts{.store_s = 4, .step_s = 8};
  ASSERT_NO_FATAL_FAILURE(start_devnode("get_file?cid=" + cid_a + ":hang"));
  const auto started = Clock::now();
  auto& daemon = start_daemon("consumer-host", {"cons-a", "cons-b"}, timeouts);

  ASSERT_TRUE(wait_applied(cons_b, cid_b, started + scenario_deadline)) << daemon.output();
  const double b_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_FALSE(last_apply(cons_a));
  EXPECT_FALSE(quarantine_of("consumer-host", cons_a, cid_a)) << "cons-a failed before cons-b applied\n"
                                                              << daemon.output();
  EXPECT_EQ(normalised(snapshot_tree(cons_b.data_volume)), normalised(snapshot_tree(prov_b.data_volume)));

  std::optional<json::object> quarantined;
  ASSERT_TRUE(poll_until(started + scenario_deadline,
                         [&] { return (quarantined = quarantine_of("consumer-host", cons_a, cid_a)).has_value(); }))
      << daemon.output();
  const double a_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::printf("[ measure  ] healthy consumer applied after %.3f s; stuck one quarantined after %.3f s: %s\n",
              b_seconds, a_seconds, json::serialize(quarantined->at("error")).c_str());
  EXPECT_EQ(quarantined->at("stage"), json::value("r1fs_download"));
  EXPECT_NE(json::serialize(quarantined->at("error")).find("timed out"), std::string::npos);
  EXPECT_LT(a_seconds, timeouts.step_s + 10.0);
  EXPECT_EQ(snapshot_tree(cons_a.data_volume), untouched_a);
  EXPECT_FALSE(last_apply(cons_a));
}

}  // namespace
}  // namespace carsync::test
