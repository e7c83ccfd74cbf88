#include "carsync/config.hpp"
#include "core/instance_validation.hpp"
#include "core/signing_key.hpp"

#include "support/temp_dir.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

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
             "cleanup_timeout_s": 7, "file_engine": "portable", "progress_interval_ms": 250},
  "control_socket": "/run/carsync-test.sock",
  "system_volume_image": {"dir": "/var/lib/carsync-test/images", "size_mib": 12},
  "instances": [
    {"id": "app-a", "container": "app-a-ctr", "system_volume": "/srv/a/r1en_system",
     "volumes": {"/srv/a/zeta": {"bind": "/z", "mode": "ro"}, "/srv/a/alpha": {"bind": "/a"},
                 "/srv/a/mid": {"bind": "/m"}},
     "SYNC": {"ENABLED": true, "KEY": "k1", "TYPE": "provider", "ARCHIVE_FORMAT": "tar.zst"}},
    {"id": "app-b", "container": null, "system_volume": "/srv/b/r1en_system",
     "system_volume_image": {"dir": "/srv/b/images"}}
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
  EXPECT_EQ(cfg.limits.progress_interval, std::chrono::milliseconds(250));
  EXPECT_EQ(cfg.limits.step_timeout, std::chrono::seconds(120));
  EXPECT_EQ(cfg.limits.store_timeout, std::chrono::seconds(15));
  EXPECT_EQ(cfg.limits.shutdown_grace, std::chrono::seconds(3));
  EXPECT_EQ(cfg.limits.cleanup_timeout, std::chrono::seconds(7));
  EXPECT_EQ(cfg.limits.file_engine, "portable");
  EXPECT_EQ(cfg.control_socket, "/run/carsync-test.sock");
  const SystemVolumeImage node_image{.image_dir = "/var/lib/carsync-test/images", .size_bytes = 12u << 20};
  EXPECT_EQ(cfg.system_volume_image, node_image);

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
  EXPECT_EQ(a.system_volume_image, node_image) << "an instance without its own takes the node's";

  const InstanceConfig& b = cfg.instances[1];
  EXPECT_EQ(b.container, std::nullopt);
  EXPECT_TRUE(b.volumes.empty());
  EXPECT_FALSE(b.sync.enabled);
  EXPECT_FALSE(b.error);
  const SystemVolumeImage own{.image_dir = "/srv/b/images", .size_bytes = 10u << 20};
  EXPECT_EQ(b.system_volume_image, own) << "its own, with the default size";
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
  EXPECT_EQ(cfg.limits.cleanup_timeout, std::chrono::seconds(20));
  EXPECT_EQ(cfg.control_socket, "/run/carsync.sock");
  EXPECT_EQ(cfg.system_volume_image, std::nullopt);
  EXPECT_TRUE(cfg.instances.empty());

  std::array<char, 256> host{};
  ASSERT_EQ(::gethostname(host.data(), host.size() - 1), 0);
  EXPECT_EQ(cfg.node_id, host.data());
}

// The message contains `fragment`; when `field` is given, ConfigError::field() is exactly it.
void expect_config_error(std::string_view text, std::string_view fragment,
                         std::optional<std::string_view> field = std::nullopt) {
  try {
    parse_node_config(text);
    ADD_FAILURE() << "accepted: " << text;
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr(std::string(fragment))) << text;
    if (field) {
      EXPECT_EQ(e.field(), *field) << text;
    }
  }
}

TEST(NodeConfig, BadFilesThrowWithTheReasonAndField) {
  expect_config_error("{not json", "not valid JSON", "");
  expect_config_error("[]", "must be a JSON object", "");
  expect_config_error("{}", "data_dir", "data_dir");
  expect_config_error(R"({"data_dir": 5})", "data_dir", "data_dir");
  expect_config_error(R"({"data_dir": "/d", "node_id": 7})", "node_id must be a string", "node_id");
  expect_config_error(R"({"data_dir": "/d", "instances": {}})", "instances must be an array", "instances");
  expect_config_error(R"({"data_dir": "/d", "backend": {"kind": "s3"}})", "backend.kind", "backend.kind");
  expect_config_error(R"({"data_dir": "/d", "backend": "local"})", "backend must be an object", "backend");
  expect_config_error(R"({"data_dir": "/d", "limits": {"io_workers": 0}})", "limits.io_workers", "limits.io_workers");
  expect_config_error(R"({"data_dir": "/d", "limits": {"progress_interval_ms": 10}})", "limits.progress_interval_ms",
                      "limits.progress_interval_ms");
  expect_config_error(R"({"data_dir": "/d", "limits": {"archive_workers": "2"}})", "limits.archive_workers",
                      "limits.archive_workers");
  expect_config_error(R"({"data_dir": "/d", "limits": {"step_timeout_s": -1}})", "limits.step_timeout_s",
                      "limits.step_timeout_s");
  expect_config_error(R"({"data_dir": "/d", "limits": {"file_engine": "aio"}})", "limits.file_engine",
                      "limits.file_engine");
  expect_config_error(R"({"data_dir": "/d", "limits": []})", "limits must be an object", "limits");
  expect_config_error(R"({"data_dir": "/d", "volume_roots": ["/ok", "relative"]})", "volume_roots",
                      "volume_roots[1]");
  expect_config_error(R"({"data_dir": "/d", "instances": [{"system_volume": "/s"}]})", "instances[0].id",
                      "instances[0].id");
  expect_config_error(R"({"data_dir": "/d", "instances": [{"id": ""}]})", "instances[0].id", "instances[0].id");
  expect_config_error(R"({"data_dir": "/d", "instances": [5]})", "instances[0]", "instances[0]");
  expect_config_error(R"({"data_dir": "/d", "instances": [{"id": "a", "system_volume": "/s"},
                                                           {"id": "a", "system_volume": "/t"}]})",
                      "duplicate instance id \"a\"", "instances[1].id");
}

// Issue: a misspelt key silently fell back to its default. Now it stops start-up, naming the
// key, where it is and the key that was probably meant.
TEST(NodeConfig, UnknownKeyAtEveryLevelThrowsWithSuggestionAndField) {
  expect_config_error(R"({"data_dir": "/d", "limit": {}})",
                      R"(unknown key "limit" in the configuration (did you mean "limits"?))", "limit");
  expect_config_error(R"({"data_dir": "/d", "Data_Dir": "/e"})",
                      R"(unknown key "Data_Dir" in the configuration (did you mean "data_dir"?))", "Data_Dir");
  expect_config_error(R"({"data_dir": "/d", "limits": {"io_worker": 2}})",
                      R"(unknown key "io_worker" in limits (did you mean "io_workers"?))", "limits.io_worker");
  expect_config_error(R"({"data_dir": "/d", "backend": {"knid": "local"}})",
                      R"(unknown key "knid" in backend (did you mean "kind"?))", "backend.knid");
  expect_config_error(R"({"data_dir": "/d", "system_volume_image": {"dir": "/i", "sizemib": 5}})",
                      R"(unknown key "sizemib" in system_volume_image (did you mean "size_mib"?))",
                      "system_volume_image.sizemib");
  expect_config_error(R"({"data_dir": "/d", "instances": [{"id": "a", "system_volume": "/s", "volumse": {}}]})",
                      R"(unknown key "volumse" in instances[0] (did you mean "volumes"?))", "instances[0].volumse");
  expect_config_error(R"({"data_dir": "/d", "instances": [{"id": "a", "system_volume": "/s"},
                                                           {"id": "b", "system_volume": "/s", "contianer": "c"}]})",
                      R"(unknown key "contianer" in instances[1] (did you mean "container"?))",
                      "instances[1].contianer");
  expect_config_error(R"({"data_dir": "/d", "instances": [{"id": "a", "system_volume": "/s", "sync": {}}]})",
                      R"((did you mean "SYNC"?))", "instances[0].sync");
  expect_config_error(
      R"({"data_dir": "/d", "instances": [{"id": "a", "system_volume": "/s", "system_volume_image": {"dri": "/i"}}]})",
      R"(unknown key "dri" in instances[0].system_volume_image (did you mean "dir"?))",
      "instances[0].system_volume_image.dri");
  expect_config_error(
      R"({"data_dir": "/d", "instances": [{"id": "a", "system_volume": "/s", "volumes": {"/x": {"bnd": "/b"}}}]})",
      R"(unknown key "bnd" in instances[0].volumes["/x"] (did you mean "bind"?))",
      R"(instances[0].volumes["/x"].bnd)");
}

TEST(NodeConfig, UnknownKeyWithNothingCloseHasNoSuggestion) {
  try {
    parse_node_config(R"({"data_dir": "/d", "unknown_top_level": {"ignored": true}})");
    ADD_FAILURE() << "accepted an unknown key";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), R"(unknown key "unknown_top_level" in the configuration)");
    EXPECT_EQ(e.field(), "unknown_top_level");
  }
}

// Unknown instance keys stop start-up even where a bad value would only disable the instance.
TEST(NodeConfig, UnknownInstanceKeyThrowsEvenNextToABadValue) {
  expect_config_error(R"({"data_dir": "/d", "instances": [{"id": "a", "system_volume": 5, "SYNK": {}}]})",
                      R"(unknown key "SYNK")", "instances[0].SYNK");
  expect_config_error(R"({"data_dir": "/d", "instances": [{"id": "a", "system_volume": "/s",
                          "volumes": {"relative": {"bind": "/b", "mdoe": "ro"}}}]})",
                      R"((did you mean "mode"?))", R"(instances[0].volumes["relative"].mdoe)");
  // "ID" is reported as a near-miss, not as a missing id.
  expect_config_error(R"({"data_dir": "/d", "instances": [{"ID": "a", "system_volume": "/s"}]})",
                      R"(unknown key "ID" in instances[0] (did you mean "id"?))", "instances[0].ID");
}

// The rule src/runtime/node.cpp applied after parsing, now enforced by the parser itself.
TEST(NodeConfig, InvalidInstanceIdThrows) {
  const std::vector<std::string> bad_ids{"../x", ".hidden", "a/b", "a b", "caf\u00e9", std::string(129, 'x')};
  for (const std::string& id : bad_ids) {
    const std::string text = R"({"data_dir": "/d", "instances": [{"id": ")" + id + R"(", "system_volume": "/s"}]})";
    expect_config_error(text, "instances[0].id must be 1-128 of [A-Za-z0-9._-]", "instances[0].id");
  }
  for (const std::string& id : std::vector<std::string>{"a", "A-z_0.9", "x.", std::string(128, 'x')}) {
    const std::string text = R"({"data_dir": "/d", "instances": [{"id": ")" + id + R"(", "system_volume": "/s"}]})";
    EXPECT_EQ(parse_node_config(text).instances.at(0).id, id);
  }
}

TEST(NodeConfig, ControlSocketMustBeAnAbsolutePathThatFitsASocketAddress) {
  expect_config_error(R"({"data_dir": "/d", "control_socket": "carsync.sock"})", "control_socket must be",
                      "control_socket");
  expect_config_error(R"({"data_dir": "/d", "control_socket": 5})", "control_socket", "control_socket");
  const std::string too_long = "/" + std::string(107, 's');  // 108 bytes + NUL do not fit sun_path
  expect_config_error(R"({"data_dir": "/d", "control_socket": ")" + too_long + R"("})", "control_socket must be",
                      "control_socket");
  const std::string longest = "/" + std::string(106, 's');
  EXPECT_EQ(parse_node_config(R"({"data_dir": "/d", "control_socket": ")" + longest + R"("})").control_socket, longest);
}

TEST(NodeConfig, MetricsListenIsAnIpLiteralAndAPort) {
  EXPECT_EQ(parse_node_config(R"({"data_dir": "/d"})").metrics_listen, "");
  EXPECT_EQ(parse_node_config(R"({"data_dir": "/d", "metrics_listen": "127.0.0.1:9464"})").metrics_listen,
            "127.0.0.1:9464");
  EXPECT_EQ(parse_node_config(R"({"data_dir": "/d", "metrics_listen": "[::1]:0"})").metrics_listen, "[::1]:0");
  for (const char* bad : {"localhost:9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "::1:9464", ":9464",
                          "127.0.0.1:94a"})
    expect_config_error(R"({"data_dir": "/d", "metrics_listen": ")" + std::string(bad) + R"("})",
                        "metrics_listen must be IP:PORT", "metrics_listen");
}

TEST(NodeConfig, CleanupTimeoutBounds) {
  EXPECT_EQ(parse_node_config(R"({"data_dir": "/d", "limits": {"cleanup_timeout_s": 1}})").limits.cleanup_timeout,
            std::chrono::seconds(1));
  EXPECT_EQ(parse_node_config(R"({"data_dir": "/d", "limits": {"cleanup_timeout_s": 3600}})").limits.cleanup_timeout,
            std::chrono::seconds(3600));
  for (auto bad : {"0", "3601", "\"20\"", "2.5", "-1"}) {
    expect_config_error(std::string(R"({"data_dir": "/d", "limits": {"cleanup_timeout_s": )") + bad + "}}",
                        "limits.cleanup_timeout_s", "limits.cleanup_timeout_s");
  }
}

TEST(NodeConfig, LocalStoreDirDefaultsToDataDirAndMustBeAbsolute) {
  EXPECT_TRUE(parse_node_config(R"({"data_dir": "/d"})").backend.store_dir.empty());
  EXPECT_EQ(parse_node_config(R"({"data_dir": "/d", "backend": {"kind": "local", "store_dir": "/shared"}})")
                .backend.store_dir,
            std::filesystem::path("/shared"));
  expect_config_error(R"({"data_dir": "/d", "backend": {"store_dir": "rel"}})", "backend.store_dir",
                      "backend.store_dir");
}

TEST(NodeConfig, SystemVolumeImageSizeAndDirBounds) {
  const auto node_image = [](std::string_view image) {
    return parse_node_config(R"({"data_dir": "/d", "system_volume_image": )" + std::string(image) + "}")
        .system_volume_image;
  };
  EXPECT_EQ(node_image(R"({"dir": "/i"})"), (SystemVolumeImage{.image_dir = "/i", .size_bytes = 10u << 20}));
  EXPECT_EQ(node_image(R"({"dir": "/i", "size_mib": 1})"),
            (SystemVolumeImage{.image_dir = "/i", .size_bytes = 1u << 20}));
  EXPECT_EQ(node_image(R"({"dir": "/i", "size_mib": 1024})"),
            (SystemVolumeImage{.image_dir = "/i", .size_bytes = 1024u << 20}));
  EXPECT_EQ(node_image("null"), std::nullopt);

  const auto bad = [](std::string_view image, std::string_view field) {
    expect_config_error(R"({"data_dir": "/d", "system_volume_image": )" + std::string(image) + "}", field, field);
  };
  bad(R"({"dir": "/i", "size_mib": 0})", "system_volume_image.size_mib");
  bad(R"({"dir": "/i", "size_mib": 1025})", "system_volume_image.size_mib");
  bad(R"({"dir": "/i", "size_mib": 1.5})", "system_volume_image.size_mib");
  bad(R"({"dir": "/i", "size_mib": "10"})", "system_volume_image.size_mib");
  bad(R"({"size_mib": 10})", "system_volume_image.dir");
  bad(R"({"dir": "images"})", "system_volume_image.dir");
  bad(R"({"dir": ""})", "system_volume_image.dir");
  bad(R"("/i")", "system_volume_image");
}

// One broken instance is reported by name; its neighbours still parse.
NodeConfig with_instance(std::string_view broken) {
  return parse_node_config(std::string(R"({"data_dir": "/d", "instances": [)") + std::string(broken) + R"(,
      {"id": "ok", "system_volume": "/s", "volumes": {"/x/fixed_volumes/mounts/v": {"bind": "/v"}},
       "SYNC": {"ENABLED": true, "KEY": "k", "TYPE": "consumer"}}]})");
}

// The broken instance's error contains `fragment` and error_field is exactly `field`.
void expect_instance_error(std::string_view broken, std::string_view fragment, std::string_view field) {
  const NodeConfig cfg = with_instance(broken);
  ASSERT_EQ(cfg.instances.size(), 2u);
  const InstanceConfig& bad = cfg.instances[0];
  ASSERT_TRUE(bad.error) << broken;
  EXPECT_THAT(*bad.error, HasSubstr("instance \"app-a\": "));
  EXPECT_THAT(*bad.error, HasSubstr(std::string(fragment)));
  EXPECT_EQ(bad.error_field, field) << broken;
  EXPECT_FALSE(bad.sync.enabled);

  const InstanceConfig& ok = cfg.instances[1];
  EXPECT_FALSE(ok.error);
  EXPECT_TRUE(ok.sync.enabled);
  EXPECT_EQ(ok.sync.role, Role::consumer);
  ASSERT_EQ(ok.volumes.size(), 1u);
}

TEST(NodeConfig, BadInstanceNamesTheFieldWhileOthersParse) {
  expect_instance_error(R"({"id": "app-a"})", "system_volume", "system_volume");
  expect_instance_error(R"({"id": "app-a", "system_volume": "relative"})", "system_volume", "system_volume");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "container": 5})", "container", "container");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "container": ""})", "container", "container");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "volumes": []})", "volumes", "volumes");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "volumes": {"/h": "/bind"}})",
                        R"(volumes["/h"])", R"(volumes["/h"])");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "volumes": {"rel": {"bind": "/b"}}})",
                        "host root must be an absolute path", R"(volumes["rel"])");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "volumes": {"/h": {"bind": 5}}})",
                        R"(volumes["/h"].bind)", R"(volumes["/h"].bind)");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "volumes": {"/h": {"mode": "rw"}}})",
                        R"(volumes["/h"].bind)", R"(volumes["/h"].bind)");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "volumes": {"/h": {"bind": "/b", "mode": 1}}})",
                        R"(volumes["/h"].mode)", R"(volumes["/h"].mode)");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "SYNC": {"ENABLED": true, "TYPE": "provider"}})",
                        "SYNC.KEY must be a non-empty string", "SYNC.KEY");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "SYNC": {"ENABLED": true, "KEY": "k"}})",
                        "SYNC.TYPE", "SYNC.TYPE");
  expect_instance_error(
      R"({"id": "app-a", "system_volume": "/s", "SYNC": {"ENABLED": 1, "KEY": "k", "TYPE": "provider",
          "COMPRESSION_LEVEL": 42}})",
      "SYNC.COMPRESSION_LEVEL", "SYNC.COMPRESSION_LEVEL");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "system_volume_image": {"size_mib": 5}})",
                        "system_volume_image.dir must be an absolute path", "system_volume_image.dir");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s",
                            "system_volume_image": {"dir": "/i", "size_mib": 0}})",
                        "system_volume_image.size_mib must be an integer from 1 to 1024, got 0",
                        "system_volume_image.size_mib");
  expect_instance_error(R"({"id": "app-a", "system_volume": "/s", "system_volume_image": []})",
                        "system_volume_image must be an object", "system_volume_image");
}

TEST(NodeConfig, ValidInstanceHasNoErrorField) {
  const NodeConfig cfg = with_instance(R"({"id": "app-a", "system_volume": "/s"})");
  EXPECT_FALSE(cfg.instances.at(0).error);
  EXPECT_EQ(cfg.instances.at(0).error_field, "");
}

// Unknown SYNC keys are the reference's business (it ignores them): kept out, warned about.
TEST(NodeConfig, UnknownSyncKeyIsAWarningNotAnError) {
  const NodeConfig cfg = with_instance(
      R"({"id": "app-a", "system_volume": "/s", "SYNC": {"ENABLE": true, "KEY": "k", "TYPE": "provider"}})");
  const InstanceConfig& a = cfg.instances.at(0);
  EXPECT_FALSE(a.error);
  EXPECT_FALSE(a.sync.enabled);
  EXPECT_THAT(a.sync.warnings, ::testing::ElementsAre("SYNC.ENABLE: unknown key ignored (did you mean ENABLED?)"));
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

  // The file name is added to the message; the field survives.
  test::write_file(dir / "typo.json", R"({"data_dir": "/d", "limits": {"io_worker": 2}})");
  try {
    load_node_config(dir / "typo.json");
    ADD_FAILURE() << "accepted an unknown key";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("typo.json: unknown key \"io_worker\""));
    EXPECT_EQ(e.field(), "limits.io_worker");
  }
}

// ---- parse_instance_config: one instance, same rules as in a file ----

NodeConfig node_with_image() {
  NodeConfig node;
  node.system_volume_image = SystemVolumeImage{.image_dir = "/node/images", .size_bytes = 10u << 20};
  return node;
}

void expect_instance_config_error(std::string_view text, std::string_view fragment, std::string_view field) {
  try {
    parse_instance_config(text, NodeConfig{});
    ADD_FAILURE() << "accepted: " << text;
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr(std::string(fragment))) << text;
    EXPECT_EQ(e.field(), field) << text;
  }
}

TEST(InstanceConfigParse, ParsesLikeAFileEntryWithTheNodeDefaults) {
  const InstanceConfig inst = parse_instance_config(
      R"({"id": "app-c", "container": "ctr", "system_volume": "/srv/c/r1en_system",
          "volumes": {"/srv/c/data": {"bind": "/app/data", "mode": "ro"}},
          "SYNC": {"ENABLED": true, "KEY": "k", "TYPE": "consumer"}})",
      node_with_image());
  EXPECT_FALSE(inst.error);
  EXPECT_EQ(inst.id, "app-c");
  EXPECT_EQ(inst.container, "ctr");
  EXPECT_EQ(inst.system_volume, "/srv/c/r1en_system");
  ASSERT_EQ(inst.volumes.size(), 1u);
  EXPECT_EQ(inst.volumes[0], (VolumeMount{"/srv/c/data", "/app/data", "ro"}));
  EXPECT_TRUE(inst.sync.enabled);
  EXPECT_EQ(inst.sync.role, Role::consumer);
  EXPECT_EQ(inst.system_volume_image, node_with_image().system_volume_image);

  // Its own image settings win; without node defaults there are none.
  const InstanceConfig own = parse_instance_config(
      R"({"id": "d", "system_volume": "/s", "system_volume_image": {"dir": "/own", "size_mib": 2}})",
      node_with_image());
  EXPECT_EQ(own.system_volume_image, (SystemVolumeImage{.image_dir = "/own", .size_bytes = 2u << 20}));
  EXPECT_EQ(parse_instance_config(R"({"id": "e", "system_volume": "/s"})", NodeConfig{}).system_volume_image,
            std::nullopt);
}

TEST(InstanceConfigParse, BadValueLandsInErrorAndField) {
  const InstanceConfig inst =
      parse_instance_config(R"({"id": "app-c", "system_volume": "/s", "volumes": {"/x": {"bind": ""}}})", NodeConfig{});
  ASSERT_TRUE(inst.error);
  EXPECT_EQ(*inst.error, R"(instance "app-c": volumes["/x"].bind must be a non-empty string)");
  EXPECT_EQ(inst.error_field, R"(volumes["/x"].bind)");
  EXPECT_FALSE(inst.sync.enabled);
}

TEST(InstanceConfigParse, UnusableInputThrowsWithAField) {
  expect_instance_config_error("{", "instance is not valid JSON", "");
  expect_instance_config_error("[]", "an instance must be an object", "");
  expect_instance_config_error(R"({"system_volume": "/s"})", "id must be a non-empty string", "id");
  expect_instance_config_error(R"({"id": "", "system_volume": "/s"})", "id must be a non-empty string", "id");
  expect_instance_config_error(R"({"id": 7, "system_volume": "/s"})", "id must be a non-empty string", "id");
  expect_instance_config_error(R"({"id": "../etc", "system_volume": "/s"})", "id must be 1-128 of", "id");
  expect_instance_config_error(R"({"id": "a", "system_volume": "/s", "volumse": {}})",
                               R"(unknown key "volumse" in the instance (did you mean "volumes"?))", "volumse");
  expect_instance_config_error(R"({"id": "a", "system_volume": "/s", "volumes": {"/x": {"bind": "/b", "rw": true}}})",
                               R"(unknown key "rw" in volumes["/x"])", R"(volumes["/x"].rw)");
  expect_instance_config_error(R"({"id": "a", "system_volume": "/s", "system_volume_image": {"dir": "/i", "size": 1}})",
                               R"(unknown key "size" in system_volume_image)", "system_volume_image.size");
}

}  // namespace
// "signing" / "trust": parsed with the instance; a bad value disables only that instance.
InstanceConfig instance_with(std::string_view role, std::string_view extra) {
  return parse_instance_config(R"({"id": "s", "system_volume": "/s", "SYNC": {"ENABLED": true, "KEY": "k", "TYPE": ")" +
                                   std::string(role) + R"("}, )" + std::string(extra) + "}",
                               NodeConfig{});
}

TEST(InstanceConfigParse, SigningTakesOneKeyFileOrSeveral) {
  const auto one = instance_with("provider", R"("signing": {"key_file": "/etc/carsync/app.key"})");
  ASSERT_FALSE(one.error) << *one.error;
  ASSERT_TRUE(one.signing);
  EXPECT_EQ(one.signing->key_files, std::vector<std::filesystem::path>{"/etc/carsync/app.key"});
  const auto two = instance_with("provider", R"("signing": {"key_file": ["/k/old.key", "/k/new.key"]})");
  ASSERT_FALSE(two.error) << *two.error;
  EXPECT_EQ(two.signing->key_files.size(), 2u);
}

TEST(InstanceConfigParse, TrustTakesPublicKeysAndAPolicy) {
  const std::string pk = core::SecretKey::generate().public_key().text();
  const auto inst = instance_with("consumer", R"("trust": {"keys": [")" + pk + R"("], "policy": "warn"})");
  ASSERT_FALSE(inst.error) << *inst.error;
  ASSERT_TRUE(inst.trust);
  EXPECT_EQ(inst.trust->keys, std::vector<std::string>{pk});
  EXPECT_EQ(inst.trust->policy, TrustPolicy::warn);
  const auto enforced = instance_with("consumer", R"("trust": {"keys": [")" + pk + R"("]})");
  EXPECT_EQ(enforced.trust->policy, TrustPolicy::enforce) << "enforce is the default when keys are listed";
}

TEST(InstanceConfigParse, BadSigningOrTrustNamesTheField) {
  const std::string pk = core::SecretKey::generate().public_key().text();
  std::string typo = pk;
  typo[typo.size() - 3] = typo[typo.size() - 3] == 'A' ? 'B' : 'A';
  const struct {
    std::string role, extra, field, text;
  } cases[] = {
      {"provider", R"("signing": {"key_file": "relative.key"})", "signing.key_file", "absolute path"},
      {"provider", R"("signing": {"key_file": []})", "signing.key_file", "at least one"},
      {"provider", R"("signing": {})", "signing.key_file", "secret key file"},
      {"provider", R"("signing": "/k")", "signing", "must be an object"},
      {"consumer", R"("signing": {"key_file": "/k"})", "signing", "applies to providers only"},
      {"provider", R"("trust": {"keys": [")" + pk + R"("]})", "trust", "applies to consumers only"},
      {"consumer", R"("trust": {"keys": []})", "trust.keys", "non-empty list"},
      {"consumer", R"("trust": {"keys": [7]})", "trust.keys[0]", "public key string"},
      {"consumer", R"("trust": {"keys": [")" + typo + R"("]})", "trust.keys[0]", "is not a valid public key"},
      {"consumer", R"("trust": {"keys": [")" + pk + R"("], "policy": "audit"})", "trust.policy", "\"enforce\" or \"warn\""},
  };
  for (const auto& c : cases) {
    const auto inst = instance_with(c.role, c.extra);
    ASSERT_TRUE(inst.error) << c.extra;
    EXPECT_EQ(inst.error_field, c.field) << c.extra;
    EXPECT_THAT(*inst.error, HasSubstr(c.text)) << c.extra;
    EXPECT_FALSE(inst.sync.enabled) << c.extra;
  }
}

TEST(InstanceConfigParse, UnknownKeyInSigningOrTrustThrows) {
  expect_instance_config_error(R"({"id": "a", "system_volume": "/s", "trust": {"keys": [], "polcy": "warn"}})",
                               R"(unknown key "polcy" in trust (did you mean "policy"?))", "trust.polcy");
  expect_instance_config_error(R"({"id": "a", "system_volume": "/s", "signing": {"key_files": "/k"}})",
                               R"(unknown key "key_files" in signing (did you mean "key_file"?))", "signing.key_files");
}

TEST(InstanceValidation, ProgrammaticSigningAndTrustFollowTheFileRules) {
  InstanceConfig ic;
  ic.id = "p";
  ic.system_volume = "/s";
  ic.sync.enabled = true;
  ic.sync.key = "k";
  ic.sync.role = Role::consumer;
  ic.trust = TrustConfig{.keys = {"carsync-ed25519:0000000000000000:AAAA"}};
  auto e = core::validate_instance(ic);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "trust.keys[0]");
  EXPECT_THAT(e->message, HasSubstr("instance \"p\": trust.keys[0] is not a valid public key"));
  ic.trust->keys = {core::SecretKey::generate().public_key().text()};
  EXPECT_FALSE(core::validate_instance(ic));
}

}  // namespace carsync
