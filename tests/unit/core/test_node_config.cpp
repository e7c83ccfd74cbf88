#include "carsync/config.hpp"

#include "support/temp_dir.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>

namespace carsync {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view good_file = R"({
  "data_dir": "/var/lib/carsync-test",
  "node_id": "node-a",
  "backend": {"kind": "r1", "cstore_url": "http://127.0.0.1:1", "r1fs_url": "http://127.0.0.1:2"},
  "volume_roots": ["/var/lib/edge/*/fixed_volumes/mounts"],
  "legacy_volumes_root": "/legacy/",
  "limits": {"archive_workers": 3, "io_workers": 4, "uring_queue_depth": 32, "read_block_size": 65536,
             "rescan_interval_s": 5, "step_timeout_s": 120, "store_timeout_s": 15, "shutdown_grace_s": 3,
             "file_engine": "portable"},
  "unknown_top_level": {"ignored": true},
  "instances": [
    {"id": "app-a", "container": "app-a-ctr", "system_volume": "/srv/a/r1en_system",
     "volumes": {"/srv/a/zeta": {"bind": "/z", "mode": "ro"}, "/srv/a/alpha": {"bind": "/a"},
                 "/srv/a/mid": {"bind": "/m"}},
     "SYNC": {"ENABLED": true, "KEY": "k1", "TYPE": "provider", "ARCHIVE_FORMAT": "tar.zst"}},
    {"id": "app-b", "container": null, "system_volume": "/srv/b/r1en_system"}
  ]
})";

TEST(NodeConfig, GoodFileParsesEveryField) {
  const NodeConfig cfg = parse_node_config(good_file);
  EXPECT_EQ(cfg.data_dir, "/var/lib/carsync-test");
  EXPECT_EQ(cfg.node_id, "node-a");
  EXPECT_EQ(cfg.backend.kind, "r1");
  EXPECT_EQ(cfg.backend.cstore_url, "http://127.0.0.1:1");
  EXPECT_EQ(cfg.backend.r1fs_url, "http://127.0.0.1:2");
  ASSERT_TRUE(cfg.volume_roots);
  EXPECT_EQ(*cfg.volume_roots, std::vector<std::string>{"/var/lib/edge/*/fixed_volumes/mounts"});
  EXPECT_EQ(cfg.legacy_volumes_root, "/legacy/");
  EXPECT_EQ(cfg.limits.archive_workers, 3u);
  EXPECT_EQ(cfg.limits.io_workers, 4u);
  EXPECT_EQ(cfg.limits.uring_queue_depth, 32u);
  EXPECT_EQ(cfg.limits.read_block_size, 65536u);
  EXPECT_EQ(cfg.limits.rescan_interval, std::chrono::seconds(5));
  EXPECT_EQ(cfg.limits.step_timeout, std::chrono::seconds(120));
  EXPECT_EQ(cfg.limits.store_timeout, std::chrono::seconds(15));
  EXPECT_EQ(cfg.limits.shutdown_grace, std::chrono::seconds(3));
  EXPECT_EQ(cfg.limits.file_engine, "portable");

  ASSERT_EQ(cfg.instances.size(), 2u);
  const InstanceConfig& a = cfg.instances[0];
  EXPECT_EQ(a.id, "app-a");
  EXPECT_EQ(a.container, "app-a-ctr");
  EXPECT_EQ(a.system_volume, "/srv/a/r1en_system");
  EXPECT_FALSE(a.error);
  EXPECT_TRUE(a.sync.enabled);
  EXPECT_EQ(a.sync.role, Role::provider);
  EXPECT_EQ(a.sync.key, "k1");
  EXPECT_EQ(a.sync.archive_format, ArchiveFormat::tar_zst);

  const InstanceConfig& b = cfg.instances[1];
  EXPECT_EQ(b.container, std::nullopt);
  EXPECT_TRUE(b.volumes.empty());
  EXPECT_FALSE(b.sync.enabled);
  EXPECT_FALSE(b.error);
}

TEST(NodeConfig, VolumesKeepFileOrder) {
  const NodeConfig cfg = parse_node_config(good_file);
  const auto& vols = cfg.instances.at(0).volumes;
  ASSERT_EQ(vols.size(), 3u);
  EXPECT_EQ(vols[0].host_root, "/srv/a/zeta");
  EXPECT_EQ(vols[0].bind, "/z");
  EXPECT_EQ(vols[0].mode, "ro");
  EXPECT_EQ(vols[1].host_root, "/srv/a/alpha");
  EXPECT_EQ(vols[1].mode, "rw");
  EXPECT_EQ(vols[2].host_root, "/srv/a/mid");
}

TEST(NodeConfig, MinimalFileUsesDefaults) {
  const NodeConfig cfg = parse_node_config(R"({"data_dir": "/d"})");
  EXPECT_EQ(cfg.backend.kind, "local");
  EXPECT_EQ(cfg.volume_roots, std::nullopt);
  EXPECT_EQ(cfg.legacy_volumes_root, NodeConfig{}.legacy_volumes_root);
  EXPECT_EQ(cfg.limits.archive_workers, RuntimeLimits{}.archive_workers);
  EXPECT_TRUE(cfg.instances.empty());

  std::array<char, 256> host{};
  ASSERT_EQ(::gethostname(host.data(), host.size() - 1), 0);
  EXPECT_EQ(cfg.node_id, host.data());
}

void expect_config_error(std::string_view text, std::string_view fragment) {
  try {
    parse_node_config(text);
    ADD_FAILURE() << "accepted: " << text;
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr(std::string(fragment))) << text;
  }
}

TEST(NodeConfig, BadFilesThrowWithTheReason) {
  expect_config_error("{not json", "not valid JSON");
  expect_config_error("[]", "must be a JSON object");
  expect_config_error("{}", "data_dir");
  expect_config_error(R"({"data_dir": 5})", "data_dir");
  expect_config_error(R"({"data_dir": "/d", "instances": {}})", "instances must be an array");
  expect_config_error(R"({"data_dir": "/d", "backend": {"kind": "s3"}})", "backend.kind");
  expect_config_error(R"({"data_dir": "/d", "limits": {"io_workers": 0}})", "limits.io_workers");
  expect_config_error(R"({"data_dir": "/d", "limits": {"archive_workers": "2"}})", "limits.archive_workers");
  expect_config_error(R"({"data_dir": "/d", "limits": {"step_timeout_s": -1}})", "limits.step_timeout_s");
  expect_config_error(R"({"data_dir": "/d", "limits": {"file_engine": "aio"}})", "limits.file_engine");
  expect_config_error(R"({"data_dir": "/d", "limits": []})", "limits must be an object");
  expect_config_error(R"({"data_dir": "/d", "volume_roots": ["relative"]})", "volume_roots");
  expect_config_error(R"({"data_dir": "/d", "instances": [{"system_volume": "/s"}]})", "instances[0].id");
  expect_config_error(R"({"data_dir": "/d", "instances": [{"id": ""}]})", "instances[0].id");
  expect_config_error(R"({"data_dir": "/d", "instances": [5]})", "instances[0]");
  expect_config_error(R"({"data_dir": "/d", "instances": [{"id": "a", "system_volume": "/s"},
                                                           {"id": "a", "system_volume": "/t"}]})",
                      "duplicate instance id \"a\"");
}

// One broken instance is reported by name; its neighbours still parse.
NodeConfig with_instance(std::string_view broken) {
  return parse_node_config(std::string(R"({"data_dir": "/d", "instances": [)") + std::string(broken) + R"(,
      {"id": "ok", "system_volume": "/s", "volumes": {"/x/fixed_volumes/mounts/v": {"bind": "/v"}},
       "SYNC": {"ENABLED": true, "KEY": "k", "TYPE": "consumer"}}]})");
}

void expect_instance_error(std::string_view broken, std::string_view fragment) {
  const NodeConfig cfg = with_instance(broken);
  ASSERT_EQ(cfg.instances.size(), 2u);
  const InstanceConfig& bad = cfg.instances[0];
  ASSERT_TRUE(bad.error) << broken;
  EXPECT_THAT(*bad.error, HasSubstr("instance \"app-a\": "));
  EXPECT_THAT(*bad.error, HasSubstr(std::string(fragment)));
  EXPECT_FALSE(bad.sync.enabled);

  const InstanceConfig& ok = cfg.instances[1];
  EXPECT_FALSE(ok.error);
  EXPECT_TRUE(ok.sync.enabled);
  EXPECT_EQ(ok.sync.role, Role::consumer);
  ASSERT_EQ(ok.volumes.size(), 1u);
}

TEST(NodeConfig, BadInstanceNamesTheFieldWhileOthersParse) {
  expect_instance_error(R"({"id": "app-a"})", "system_volume");
  expect_instance_error(R"({"id": "app-a", "system_volume": "relative"})", "system_volume");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "container": 5})", "container");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "volumes": []})", "volumes");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "volumes": {"/h": "/bind"}})",
                        R"(volumes["/h"])");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "volumes": {"/h": {"bind": 5}}})",
                        R"(volumes["/h"].bind)");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "volumes": {"/h": {"mode": "rw"}}})",
                        R"(volumes["/h"].bind)");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "SYNC": {"ENABLED": true, "TYPE": "provider"}})",
                        "SYNC.KEY must be a non-empty string");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "SYNC": {"ENABLED": true, "KEY": "k"}})",
                        "SYNC.TYPE");
  expect_instance_error(
      R"({"id": "app-a", "system_volume": "/s", "SYNC": {"ENABLED": 1, "KEY": "k", "TYPE": "provider",
          "COMPRESSION_LEVEL": 42}})",
      "SYNC.COMPRESSION_LEVEL");
}

TEST(NodeConfig, SyncWarningsReachTheInstance) {
  const NodeConfig cfg = with_instance(
      R"({"id": "app-a", "system_volume": "/s", "SYNC": {"ENABLED": "perhaps", "KEY": "k", "TYPE": "provider"}})");
  const InstanceConfig& a = cfg.instances.at(0);
  EXPECT_FALSE(a.error);
  EXPECT_FALSE(a.sync.enabled);
  ASSERT_FALSE(a.sync.warnings.empty());
  EXPECT_THAT(a.sync.warnings.front(), HasSubstr("ENABLED"));
}

TEST(NodeConfig, LoadFromFile) {
  test::TempDir dir;
  test::write_file(dir / "carsync.json", good_file);
  EXPECT_EQ(load_node_config(dir / "carsync.json").node_id, "node-a");

  test::write_file(dir / "broken.json", "{");
  try {
    load_node_config(dir / "broken.json");
    ADD_FAILURE() << "accepted a broken file";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("broken.json"));
  }
  EXPECT_THROW(load_node_config(dir / "missing.json"), ConfigError);
}

}  // namespace
}  // namespace carsync
