// Provider and consumer in two carsyncd processes sharing one data directory (and so the
// embedded stores): a request dropped in the provider app's control directory ends up,
// byte for byte, in the consumer's volume with last_apply.json naming the published CID,
// and a second snapshot follows it. The consumer learns of each record through the
// store's change notification across processes (the safety rescan is an hour away).
#include "support/child_process.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"
#include "support/tree_snapshot.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace carsync::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

constexpr auto poll_step = std::chrono::milliseconds(20);
constexpr auto apply_deadline = std::chrono::seconds(60);
constexpr std::string_view sync_key = "0f3c5a7e-9b1d-4e2f-8a6c-4d2e0b9f7a13";

// carsyncd as a child process (its output kept for failure messages).
struct Daemon : ChildProcess {
  explicit Daemon(const fs::path& config) : ChildProcess({CARSYNCD_PATH, "--config", config.string()}) {}
};

// A JSON object file written atomically by carsyncd; nullopt while absent.
std::optional<json::object> read_object(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return std::nullopt;
  auto v = json::parse(read_file(file));
  return v.as_object();
}

// Polls `ready` every 20 ms until it holds or the deadline passes; the time it held.
std::optional<Clock::time_point> poll_until(Clock::time_point deadline, const std::function<bool()>& ready) {
  for (;;) {
    if (ready()) return Clock::now();
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(poll_step);
  }
}

// The consumer normalises permissions (§8.5: owner rw and directory traversal granted,
// special bits stripped); everything else must be identical.
TreeSnapshot normalised(TreeSnapshot tree) {
  for (auto& [path, node] : tree) node.mode = (node.mode & 0777) | (node.type == 'd' ? 0755 : 0644);
  return tree;
}

std::string pattern_bytes(std::size_t size, std::uint32_t seed) {
  std::string s;
  s.reserve(size);
  for (std::size_t k = 0; k < size; ++k) {
    seed = seed * 1664525u + 1013904223u;
    s.push_back(static_cast<char>(seed >> 24));
  }
  return s;
}

struct Side {
  std::string id;
  fs::path system_volume, data_volume;
  fs::path control_dir() const { return system_volume / "volume-sync"; }
};

Side make_side(const TempDir& tmp, const std::string& id) {
  const fs::path root = tmp / "edge" / id / "fixed_volumes/mounts";
  Side s{id, root / "r1en_system", root / "appdata"};
  fs::create_directories(s.system_volume);
  fs::create_directories(s.data_volume);
  return s;
}

// Each daemon owns its data_dir (one owner per data_dir); they share the embedded stores as
// two hosts share R1FS and ChainStore.
void write_config(const fs::path& file, const fs::path& data_dir, const fs::path& store_dir, const Side& side,
                  std::string_view role, const json::object& extra = {}) {
  json::object instance{
      {"id", side.id},
      {"container", nullptr},
      {"system_volume", side.system_volume.string()},
      {"volumes", json::object{{side.data_volume.string(), json::object{{"bind", "/app/data"}}}}},
      {"SYNC", json::object{{"ENABLED", true}, {"KEY", sync_key}, {"TYPE", role}}},
  };
  for (const auto& kv : extra) instance[kv.key()] = kv.value();
  write_file(file, json::serialize(json::object{
                       {"data_dir", data_dir.string()},
                       {"control_socket", (data_dir / "carsyncd.sock").string()},
                       {"node_id", "itest-" + side.id},
                       {"backend", json::object{{"kind", "local"}, {"store_dir", store_dir.string()}}},
                       {"limits", json::object{{"rescan_interval_s", 3600}}},
                       {"instances", json::array{std::move(instance)}},
                   }));
}

// As an app would: write elsewhere in the directory, then rename into place.
void drop_request(const Side& provider) {
  const auto tmp_name = provider.control_dir() / ".request.json.app-tmp";
  write_file(tmp_name, R"({"archive_paths": ["/app/data"], "metadata": {"epoch": 1}})");
  fs::rename(tmp_name, provider.control_dir() / "request.json");
}

class TwoDaemons : public ::testing::Test {
 protected:
  void SetUp() override {
    write_config(tmp / "provider.json", tmp / "data-provider", tmp / "stores", provider, "provider");
    write_config(tmp / "consumer.json", tmp / "data-consumer", tmp / "stores", consumer, "consumer");
  }

  // Drops a request, waits for the publish and then for the consumer's apply; returns the
  // published CID (empty on failure, with the test failed).
  std::string publish_and_wait(Daemon& a, Daemon& b) {
    std::error_code ec;
    fs::remove(provider.control_dir() / "response.json", ec);
    const auto started = Clock::now();
    const auto deadline = started + apply_deadline;
    drop_request(provider);

    std::optional<json::object> response;
    auto published = poll_until(deadline, [&] { return (response = read_object(provider.control_dir() / "response.json")).has_value(); });
    EXPECT_TRUE(published) << "no response.json\n" << a.output();
    if (!published) return {};
    EXPECT_EQ(response->at("status"), json::value("ok")) << json::serialize(*response);
    if (!response->contains("cid")) return {};
    const json::value cid = response->at("cid");

    std::optional<json::object> last;
    auto applied = poll_until(deadline, [&] {
      last = read_object(consumer.control_dir() / "last_apply.json");
      return last && last->at("cid") == cid;
    });
    EXPECT_TRUE(applied) << "no last_apply.json for " << json::serialize(cid) << "\n" << b.output();
    if (!applied) return {};
    std::printf("[ measure  ] request -> response.json %.3f s, publish -> applied %.3f s (20 ms polling)\n",
                std::chrono::duration<double>(*published - started).count(),
                std::chrono::duration<double>(*applied - *published).count());
    EXPECT_EQ(last->at("metadata"), json::value(json::object{{"epoch", 1}}));
    return std::string(cid.as_string());
  }

  TempDir tmp;
  Side provider = make_side(tmp, "prov");
  Side consumer = make_side(tmp, "cons");
};

TEST_F(TwoDaemons, ConsumerProcessAppliesWhatProviderProcessPublishes) {
  write_file(provider.data_volume / "weights.bin", pattern_bytes(300'001, 7));
  write_file(provider.data_volume / "nested/config.json", R"({"generation": 1})");
  fs::permissions(provider.data_volume / "nested/config.json", fs::perms(0600));
  write_file(consumer.data_volume / "local-only.txt", "the consumer's own file");  // overlay: kept

  Daemon a(tmp / "provider.json");
  Daemon b(tmp / "consumer.json");
  ASSERT_TRUE(a.wait_for_output("carsyncd ready", std::chrono::seconds(30))) << a.output();
  ASSERT_TRUE(b.wait_for_output("carsyncd ready", std::chrono::seconds(30))) << b.output();

  auto expected = [&] {
    auto tree = normalised(snapshot_tree(provider.data_volume));
    tree.emplace("local-only.txt", TreeNode{'f', 0644, "the consumer's own file"});
    return tree;
  };

  const auto first = publish_and_wait(a, b);
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(normalised(snapshot_tree(consumer.data_volume)), expected());

  // A second snapshot: a changed file and a new one.
  write_file(provider.data_volume / "weights.bin", pattern_bytes(123'457, 8));
  write_file(provider.data_volume / "nested/deeper/new.txt", "added in generation 2");
  const auto second = publish_and_wait(a, b);
  ASSERT_FALSE(second.empty());
  EXPECT_NE(second, first);
  EXPECT_EQ(normalised(snapshot_tree(consumer.data_volume)), expected());

  a.signal(SIGTERM);
  b.signal(SIGTERM);
  for (auto* d : {&a, &b}) {
    const auto status = d->wait_exit(std::chrono::seconds(30));
    ASSERT_TRUE(status.has_value()) << "carsyncd did not exit within 30 s of SIGTERM\n" << d->output();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status << "\n" << d->output();
  }
}

// "signing" and "trust" between two processes: the provider signs with a key made by
// `carsync keys generate`, the consumer trusts its public key and applies; a record a store
// writer then tampers with is refused and the consumer's volume stays as it was.
TEST_F(TwoDaemons, SignedRecordsFromATrustedProviderOnlyAreApplied) {
  const auto key_file = tmp / "keys" / "provider.key";
  fs::create_directories(key_file.parent_path());
  const auto made = shell(std::string(CARSYNC_CLI_PATH) + " keys generate --out " + shell_quote(key_file.string()));
  ASSERT_EQ(made.exit_code, 0) << made.out;
  std::string public_key = made.out;
  while (!public_key.empty() && public_key.back() == '\n') public_key.pop_back();
  write_config(tmp / "provider.json", tmp / "data-provider", tmp / "stores", provider, "provider",
               {{"signing", json::object{{"key_file", key_file.string()}}}});
  write_config(tmp / "consumer.json", tmp / "data-consumer", tmp / "stores", consumer, "consumer",
               {{"trust", json::object{{"keys", json::array{json::value(public_key)}}}}});
  write_file(provider.data_volume / "weights.bin", pattern_bytes(100'003, 9));

  Daemon a(tmp / "provider.json");
  Daemon b(tmp / "consumer.json");
  ASSERT_TRUE(a.wait_for_output("carsyncd ready", std::chrono::seconds(30))) << a.output();
  ASSERT_TRUE(b.wait_for_output("carsyncd ready", std::chrono::seconds(30))) << b.output();
  ASSERT_FALSE(publish_and_wait(a, b).empty());
  EXPECT_EQ(normalised(snapshot_tree(consumer.data_volume)), normalised(snapshot_tree(provider.data_volume)));
  const auto applied = snapshot_tree(consumer.data_volume);

  // A store writer uploads its own snapshot and points the signed record at it.
  const std::string cli = std::string(CARSYNC_CLI_PATH) + " --config " + shell_quote((tmp / "consumer.json").string());
  write_file(tmp / "evil/app/data/weights.bin", "not the provider's");
  const auto tar = shell("tar -C " + shell_quote((tmp / "evil").string()) + " -czf " +
                         shell_quote((tmp / "evil.tar.gz").string()) + " app/data");
  ASSERT_EQ(tar.exit_code, 0);
  const auto put = shell(cli + " cas put " + shell_quote((tmp / "evil.tar.gz").string()));
  ASSERT_EQ(put.exit_code, 0) << put.out;
  const std::string evil_cid = put.out.substr(0, put.out.find('\n'));
  const auto got = shell(cli + " kv hget CHAINSTORE_SYNC " + std::string(sync_key));
  ASSERT_EQ(got.exit_code, 0) << got.out;
  json::object record = json::parse(got.out).as_object();
  ASSERT_TRUE(record.contains("signatures")) << got.out;
  record["cid"] = evil_cid;
  record["version"] = record["version"].as_int64() + 1;  // looks newer
  const auto set = shell(cli + " kv hset CHAINSTORE_SYNC " + std::string(sync_key) + " " +
                         shell_quote(json::serialize(record)));
  ASSERT_EQ(set.exit_code, 0) << set.out;

  const auto state_file = tmp / "data-consumer/instances/cons/sync_history/state/current_apply.json";
  auto refused = poll_until(Clock::now() + apply_deadline, [&] {
    auto state = read_object(state_file);
    return state && state->contains("stage") && state->at("stage") == json::value("signature");
  });
  ASSERT_TRUE(refused) << b.output();
  EXPECT_EQ(snapshot_tree(consumer.data_volume), applied);
  EXPECT_NE(b.output().find("signature"), std::string::npos);

  a.signal(SIGTERM);
  b.signal(SIGTERM);
  for (auto* d : {&a, &b}) ASSERT_TRUE(d->wait_exit(std::chrono::seconds(30)).has_value()) << d->output();
}

}  // namespace
}  // namespace carsync::test
