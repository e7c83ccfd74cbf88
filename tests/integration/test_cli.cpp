// The operator CLI, run as a separate process the way an operator or supervisor would.
#include "core/signing_key.hpp"
#include "support/temp_dir.hpp"
#include "support/shell.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>


#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::test {
namespace {

struct Run {
  int exit_code;
  std::string out;
  std::string err;
};

// Runs the CLI with `args`, capturing stdout and (via a file) stderr.
Run carsync(const TempDir& tmp, const std::vector<std::string_view>& args) {
  const auto err_file = tmp / "stderr.txt";
  std::string cmd = shell_quote(CARSYNC_CLI_PATH);
  for (auto a : args) cmd += " " + shell_quote(a);
  cmd += " 2>" + shell_quote(err_file.string());
  auto r = shell(cmd);
  return {r.exit_code, std::move(r.out), read_file(err_file)};
}

class CliTest : public ::testing::Test {
 protected:
  // A node's data_dir whose stores exist (the store commands refuse a directory without).
  void SetUp() override {
    std::filesystem::create_directories(tmp / "data/kv");
    std::filesystem::create_directories(tmp / "data/cas");
  }
  TempDir tmp;
  std::string data_dir = (tmp / "data").string();
};

// A record as a provider publishes it, archiving `path`.
std::string sync_record(std::string_view path = "/app/data") {
  return R"({"cid":"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku","version":1764489600,)"
         R"("timestamp":1764489600.5,"manifest":{"schema_version":1,"archive_paths":[")" +
         std::string(path) + R"("],"archive_format":"tar.gz","archive_size_bytes":10,"encryption":"r1fs-default"}})";
}

TEST_F(CliTest, KvSetThenGetRoundTrips) {
  auto set = carsync(tmp, {"--data-dir", data_dir, "kv", "hset", "APP_HASH", "k1", R"({"cid":"bafy","v":3})"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_EQ(set.out, "ok\n");

  auto get = carsync(tmp, {"--data-dir", data_dir, "kv", "hget", "APP_HASH", "k1"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "{\"cid\":\"bafy\",\"v\":3}\n");

  ASSERT_EQ(carsync(tmp, {"--data-dir", data_dir, "kv", "hset", "APP_HASH", "k2", "\"text\""}).exit_code, 0);
  auto all = carsync(tmp, {"--data-dir", data_dir, "kv", "hgetall", "APP_HASH"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_TRUE(all.out == "{\"k1\":{\"cid\":\"bafy\",\"v\":3},\"k2\":\"text\"}\n" ||
              all.out == "{\"k2\":\"text\",\"k1\":{\"cid\":\"bafy\",\"v\":3}}\n")
      << all.out;
}

TEST_F(CliTest, KvMissingKeyFails) {
  auto get = carsync(tmp, {"--data-dir", data_dir, "kv", "hget", "CHAINSTORE_SYNC", "nope"});
  EXPECT_EQ(get.exit_code, 1);
  EXPECT_EQ(get.out, "");
  EXPECT_NE(get.err.find("nope"), std::string::npos);
  EXPECT_EQ(std::count(get.err.begin(), get.err.end(), '\n'), 1) << get.err;
}

TEST_F(CliTest, KvRejectsInvalidJson) {
  auto set = carsync(tmp, {"--data-dir", data_dir, "kv", "hset", "h", "k", "{not json"});
  EXPECT_EQ(set.exit_code, 2);
  EXPECT_EQ(carsync(tmp, {"--data-dir", data_dir, "kv", "hget", "h", "k"}).exit_code, 1);
}

TEST_F(CliTest, CasPutThenGetReturnsSameBytes) {
  std::string content;
  for (int i = 0; i < 100000; ++i) content += static_cast<char>(i * 13);
  write_file(tmp / "in.bin", content);

  auto put = carsync(tmp, {"--data-dir", data_dir, "cas", "put", (tmp / "in.bin").string()});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  ASSERT_FALSE(put.out.empty());
  ASSERT_EQ(put.out.back(), '\n');
  const std::string cid = put.out.substr(0, put.out.size() - 1);
  EXPECT_TRUE(cid.starts_with("bafkrei")) << cid;

  auto get = carsync(tmp, {"--data-dir", data_dir, "cas", "get", cid, "-o", (tmp / "out.bin").string()});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_TRUE(read_file(tmp / "out.bin") == content);
}

TEST_F(CliTest, CasGetOfUnknownBlobFails) {
  auto get = carsync(tmp, {"--data-dir", data_dir, "cas", "get",
                           "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", "-o",
                           (tmp / "out").string()});
  EXPECT_EQ(get.exit_code, 1);
  EXPECT_FALSE(std::filesystem::exists(tmp / "out"));
}

TEST_F(CliTest, DataDirComesFromConfig) {
  write_file(tmp / "node.json", R"({"data_dir": ")" + data_dir + R"(", "instances": []})");
  const std::string config = (tmp / "node.json").string();
  ASSERT_EQ(carsync(tmp, {"--config", config, "kv", "hset", "h", "k", "7"}).exit_code, 0);
  auto get = carsync(tmp, {"--data-dir", data_dir, "kv", "hget", "h", "k"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "7\n");
}

// No carsyncd answers on the socket and none holds the data_dir: the offline fallback.
TEST_F(CliTest, UnhaltClearsTheDurableHaltOnce) {
  write_file(tmp / "node.json", R"({"data_dir": ")" + data_dir + R"(", "control_socket": ")" +
                                    (tmp / "nobody.sock").string() + R"(", "instances": []})");
  const auto state = tmp / "data/instances/c1/sync_history/state/current_apply.json";
  write_file(state, R"({"state": "uncertain", "cid": "bafx", "version": 1, "timestamp": 1.0, "halted": true})");
  const std::string config = (tmp / "node.json").string();

  auto first = carsync(tmp, {"--config", config, "unhalt", "c1"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, "c1: halt cleared in the state file (no carsyncd answers on " + (tmp / "nobody.sock").string() +
                           " and none holds the data_dir); the instance resumes when carsyncd starts\n");
  EXPECT_EQ(first.err, "");
  const auto doc = read_file(state);
  EXPECT_EQ(doc.find("\"halted\""), std::string::npos) << doc;
  EXPECT_NE(doc.find("\"halt_cleared_at\""), std::string::npos) << doc;

  auto second = carsync(tmp, {"--config", config, "unhalt", "c1"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out, "c1: not halted\n");
}

// Regression: the store commands used to create an empty store wherever --data-dir pointed,
// so a mistyped path "worked" and showed nothing.
TEST_F(CliTest, StoreCommandsRefuseADirectoryWithoutAStore) {
  std::filesystem::create_directories(tmp / "empty");
  write_file(tmp / "in.bin", "bytes");
  const std::string in = (tmp / "in.bin").string();  // outlives the views below
  for (const std::string dir : {(tmp / "empty").string(), (tmp / "absent").string()}) {
    const std::vector<std::vector<std::string_view>> cases = {
        {"--data-dir", dir, "kv", "hset", "h", "k", "1"},
        {"--data-dir", dir, "kv", "hget", "h", "k"},
        {"--data-dir", dir, "kv", "hgetall", "h"},
        {"--data-dir", dir, "cas", "put", in},
    };
    for (const auto& args : cases) {
      auto r = carsync(tmp, args);
      EXPECT_EQ(r.exit_code, 2) << args[2] << " " << r.err;
      EXPECT_NE(r.err.find("holds no carsync store"), std::string::npos) << r.err;
    }
  }
  EXPECT_TRUE(std::filesystem::is_empty(tmp / "empty"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "absent"));
}

// A node's data_dir before its first publish has only the lock: its stores are created on use.
TEST_F(CliTest, ANodesDataDirIsAStoreBeforeItsFirstUse) {
  write_file(tmp / "node2/carsync.lock", "");
  const std::string dir = (tmp / "node2").string();
  ASSERT_EQ(carsync(tmp, {"--data-dir", dir, "kv", "hset", "h", "k", "1"}).exit_code, 0);
  EXPECT_EQ(carsync(tmp, {"--data-dir", dir, "kv", "hget", "h", "k"}).out, "1\n");
}

// A --config names the node's own data_dir: its stores are created on first use, before
// carsyncd ever ran there (as an operator seeding a store does).
TEST_F(CliTest, AConfigsDataDirGetsItsStoresOnFirstUse) {
  const auto data_dir = (tmp / "fresh-node").string();
  write_file(tmp / "fresh.json", R"({"data_dir": ")" + data_dir + R"(", "instances": []})");
  write_file(tmp / "in.bin", "bytes");
  auto put = carsync(tmp, {"--config", (tmp / "fresh.json").string(), "cas", "put", (tmp / "in.bin").string()});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_TRUE(std::filesystem::is_directory(tmp / "fresh-node/cas"));
}

// With --config the stores are where the node keeps them: backend.store_dir when set.
TEST_F(CliTest, StoresComeFromTheConfigsStoreDir) {
  std::filesystem::create_directories(tmp / "shared/kv");
  write_file(tmp / "node.json", R"({"data_dir": ")" + data_dir + R"(", "backend": {"kind": "local", "store_dir": ")" +
                                    (tmp / "shared").string() + R"("}, "instances": []})");
  const std::string config = (tmp / "node.json").string();
  ASSERT_EQ(carsync(tmp, {"--config", config, "kv", "hset", "h", "k", "5"}).exit_code, 0);
  EXPECT_EQ(carsync(tmp, {"--data-dir", (tmp / "shared").string(), "kv", "hget", "h", "k"}).out, "5\n");
  EXPECT_EQ(carsync(tmp, {"--data-dir", data_dir, "kv", "hget", "h", "k"}).exit_code, 1);

  write_file(tmp / "r1.json", R"({"data_dir": ")" + data_dir + R"(", "backend": {"kind": "r1"}, "instances": []})");
  auto r1 = carsync(tmp, {"--config", (tmp / "r1.json").string(), "kv", "hget", "h", "k"});
  EXPECT_EQ(r1.exit_code, 2);
  EXPECT_NE(r1.err.find("keeps no local stores"), std::string::npos) << r1.err;
}

// What consumers apply is checked before it is stored: the reference's record rules.
TEST_F(CliTest, KvHsetValidatesASyncRecordUnlessForced) {
  auto bad = carsync(tmp, {"--data-dir", data_dir, "kv", "hset", "CHAINSTORE_SYNC", "key1",
                           R"({"cid":"","manifest":{"schema_version":9,"archive_paths":["relative"]}})"});
  EXPECT_EQ(bad.exit_code, 2);
  for (std::string_view why : {"cid must be a non-empty string", "version must be an integer",
                               "unsupported manifest schema_version 9", "archive_format", "encryption",
                               "must be absolute", "--force"})
    EXPECT_NE(bad.err.find(why), std::string::npos) << why << " in " << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  EXPECT_EQ(carsync(tmp, {"--data-dir", data_dir, "kv", "hget", "CHAINSTORE_SYNC", "key1"}).exit_code, 1);

  auto forced = carsync(tmp, {"--data-dir", data_dir, "kv", "hset", "CHAINSTORE_SYNC", "key1", R"({"cid":""})", "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_EQ(carsync(tmp, {"--data-dir", data_dir, "kv", "hget", "CHAINSTORE_SYNC", "key1"}).out, "{\"cid\":\"\"}\n");

  auto good = carsync(tmp, {"--data-dir", data_dir, "kv", "hset", "CHAINSTORE_SYNC", "key1", sync_record()});
  EXPECT_EQ(good.exit_code, 0) << good.err;
  // Other hkeys hold anything.
  EXPECT_EQ(carsync(tmp, {"--data-dir", data_dir, "kv", "hset", "OTHER", "key1", R"({"cid":""})"}).exit_code, 0);
}

// With --config, the record must also land in the volumes of this node's consumers of the key.
TEST_F(CliTest, KvHsetChecksTheConsumersMountsFromTheConfig) {
  const auto host = tmp / "hosts/c1/data";
  std::filesystem::create_directories(host);
  write_file(tmp / "node.json", R"({"data_dir": ")" + data_dir + R"(", "volume_roots": [")" +
                                    (tmp / "hosts/*").string() + R"("], "instances": [
      {"id": "c1", "system_volume": ")" + (tmp / "hosts/c1/sys").string() + R"(",
       "volumes": {")" + host.string() + R"(": {"bind": "/app/data"}},
       "SYNC": {"ENABLED": true, "KEY": "key1", "TYPE": "consumer"}}]})");
  const std::string config = (tmp / "node.json").string();
  EXPECT_EQ(carsync(tmp, {"--config", config, "kv", "hset", "CHAINSTORE_SYNC", "key1", sync_record("/app/data")}).exit_code, 0);
  auto unmapped = carsync(tmp, {"--config", config, "kv", "hset", "CHAINSTORE_SYNC", "key1", sync_record("/srv/other")});
  EXPECT_EQ(unmapped.exit_code, 2);
  EXPECT_NE(unmapped.err.find("consumer c1: unmapped archive_paths"), std::string::npos) << unmapped.err;
  // No consumer of that key here: only the shape is checked.
  EXPECT_EQ(carsync(tmp, {"--config", config, "kv", "hset", "CHAINSTORE_SYNC", "key2", sync_record("/srv/other")}).exit_code, 0);
}

class CliEnvTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    const std::string sys = (tmp / "sys").string();
    write_file(tmp / "node.json", R"({
      "data_dir": ")" + data_dir + R"(",
      "instances": [
        {"id": "consumer-1", "system_volume": ")" + sys + R"(/c",
         "SYNC": {"ENABLED": true, "KEY": "sync-key-1", "TYPE": "consumer"}},
        {"id": "disabled-1", "system_volume": ")" + sys + R"(/d",
         "SYNC": {"ENABLED": false, "KEY": "sync-key-1", "TYPE": "provider"}},
        {"id": "invalid-1", "system_volume": ")" + sys + R"(/i",
         "SYNC": {"ENABLED": true, "KEY": "", "TYPE": "consumer"}},
        {"id": "no-volume-1",
         "SYNC": {"ENABLED": true, "KEY": "sync-key-1", "TYPE": "consumer"}}
      ]})");
    config = (tmp / "node.json").string();
  }
  std::string config;
};

constexpr std::string_view kPathVars =
    "R1_SYSTEM_VOLUME=/r1en_system\n"
    "R1_VOLUME_SYNC_DIR=/r1en_system/volume-sync\n"
    "R1_SYNC_REQUEST_FILE=/r1en_system/volume-sync/request.json\n";

TEST_F(CliEnvTest, K142_EnabledConsumerGetsTypeAndKey) {
  auto env = carsync(tmp, {"env", "--config", config, "consumer-1"});
  ASSERT_EQ(env.exit_code, 0) << env.err;
  EXPECT_EQ(env.out, std::string(kPathVars) + "R1_SYNC_TYPE=consumer\nR1_SYNC_KEY=sync-key-1\n");
}

TEST_F(CliEnvTest, K141_DisabledInstanceGetsOnlyThePaths) {
  auto env = carsync(tmp, {"env", "--config", config, "disabled-1"});
  ASSERT_EQ(env.exit_code, 0) << env.err;
  EXPECT_EQ(env.out, kPathVars);
}

TEST_F(CliEnvTest, InvalidSyncConfigGetsOnlyThePaths) {
  auto env = carsync(tmp, {"--config", config, "env", "invalid-1"});
  ASSERT_EQ(env.exit_code, 0) << env.err;
  EXPECT_EQ(env.out, kPathVars);
}

TEST_F(CliEnvTest, K143_NoSystemVolumeGetsNoVariables) {
  auto env = carsync(tmp, {"env", "--config", config, "no-volume-1"});
  ASSERT_EQ(env.exit_code, 0) << env.err;
  EXPECT_EQ(env.out, "");
}

TEST_F(CliEnvTest, UnknownInstanceIsUsageError) {
  auto env = carsync(tmp, {"env", "--config", config, "nobody"});
  EXPECT_EQ(env.exit_code, 2);
  EXPECT_EQ(env.out, "");
  EXPECT_NE(env.err.find("nobody"), std::string::npos);
}

TEST_F(CliTest, BadUsageExitsTwo) {
  const std::string out = (tmp / "x").string();
  const std::string absent_config = (tmp / "absent.json").string();
  const std::string empty_cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
  const std::vector<std::vector<std::string_view>> cases = {
      {},
      {"frobnicate"},
      {"--data-dir", data_dir, "kv"},                          // no kv subcommand
      {"--data-dir", data_dir, "kv", "hget", "only-hkey"},     // KEY missing
      {"kv", "hget", "h", "k"},                                // no data dir anywhere
      {"--data-dir", data_dir, "cas", "get", "not-a-cid", "-o", out},
      {"--data-dir", data_dir, "cas", "get", empty_cid},       // -o missing
      {"env", "some-id"},                                      // no --config
      {"env", "--config", absent_config, "some-id"},
  };
  for (const auto& args : cases) {
    auto r = carsync(tmp, args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST_F(CliTest, KeysGenerateWritesA0600FileOnceAndShowPrintsItsPublicKey) {
  const std::string key_file = (tmp / "provider.key").string();
  auto gen = carsync(tmp, {"keys", "generate", "--out", key_file});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  ASSERT_EQ(std::count(gen.out.begin(), gen.out.end(), '\n'), 1) << gen.out;
  const std::string public_text = gen.out.substr(0, gen.out.size() - 1);
  auto parsed = core::PublicKey::parse(public_text);
  ASSERT_TRUE(parsed) << public_text;
  struct stat st {};
  ASSERT_EQ(::stat(key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  const std::string secret = read_file(key_file);
  EXPECT_EQ(core::SecretKey::parse_file_text(secret).value().public_key(), *parsed);

  auto show = carsync(tmp, {"keys", "show", key_file});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_EQ(show.out, gen.out);

  // Never overwritten: a clear one-line error, a usage exit code, the file unchanged.
  auto again = carsync(tmp, {"keys", "generate", "--out", key_file});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_EQ(again.out, "");
  EXPECT_NE(again.err.find("exists"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find(key_file), std::string::npos) << again.err;
  EXPECT_EQ(std::count(again.err.begin(), again.err.end(), '\n'), 1) << again.err;
  EXPECT_EQ(read_file(key_file), secret);

  // A key file others can read is refused, saying how to fix it.
  ASSERT_EQ(::chmod(key_file.c_str(), 0644), 0);
  auto open_file = carsync(tmp, {"keys", "show", key_file});
  EXPECT_EQ(open_file.exit_code, 2);
  EXPECT_EQ(open_file.out, "");
  EXPECT_NE(open_file.err.find("chmod 600 " + key_file), std::string::npos) << open_file.err;

  auto missing = carsync(tmp, {"keys", "show", (tmp / "absent.key").string()});
  EXPECT_EQ(missing.exit_code, 2);
  auto no_out = carsync(tmp, {"keys", "generate"});
  EXPECT_EQ(no_out.exit_code, 2);
  EXPECT_NE(no_out.err.find("--out"), std::string::npos) << no_out.err;
}

}  // namespace
}  // namespace carsync::test
