#include "core/sync_config.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <string_view>

namespace carsync::core {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

ParsedSync parse(std::string_view text) {
  const json::value v = json::parse(text);
  return parse_sync_config(&v);
}

json::object enabled_block(std::string_view type = "provider") {
  return {{"ENABLED", true}, {"KEY", "shared-key"}, {"TYPE", type}};
}

ParsedSync parse_with(json::object extra) {
  json::object block = enabled_block();
  for (auto& kv : extra) block[kv.key()] = kv.value();
  const json::value v = std::move(block);
  return parse_sync_config(&v);
}

TEST(SyncConfig, K131_DisabledConfigHasNoRole) {
  for (auto text : {"{}", R"({"ENABLED": false, "KEY": "k", "TYPE": "provider"})", "null", "[1]"}) {
    const auto p = parse(text);
    EXPECT_FALSE(p.config.enabled) << text;
    EXPECT_EQ(p.config.role, Role::none) << text;
    EXPECT_FALSE(p.error) << text;
  }
  EXPECT_FALSE(parse_sync_config(nullptr).config.enabled);
}

TEST(SyncConfig, K132_EnabledProviderHasProviderRole) {
  const auto p = parse(R"({"ENABLED": true, "KEY": "k-1", "TYPE": "provider"})");
  EXPECT_FALSE(p.error);
  EXPECT_TRUE(p.config.enabled);
  EXPECT_EQ(p.config.role, Role::provider);
  EXPECT_EQ(p.config.key, "k-1");
  EXPECT_EQ(to_string(p.config.role), "provider");

  const auto c = parse(R"({"ENABLED": "yes", "KEY": "k-2", "TYPE": "consumer"})");
  EXPECT_TRUE(c.config.enabled);
  EXPECT_EQ(c.config.role, Role::consumer);
}

TEST(SyncConfig, K133_UnknownTypeDisablesWithError) {
  for (auto type : {R"("Provider")", R"("both")", "null", "1"}) {
    const auto p = parse(std::string(R"({"ENABLED": true, "KEY": "k", "TYPE": )") + type + "}");
    EXPECT_FALSE(p.config.enabled) << type;
    EXPECT_EQ(p.config.role, Role::none) << type;
    ASSERT_TRUE(p.error) << type;
    EXPECT_THAT(*p.error, HasSubstr("TYPE"));
  }
}

TEST(SyncConfig, MissingOrEmptyKeyDisablesWithError) {
  for (auto key : {R"("")", "null", "42"}) {
    const auto p = parse(std::string(R"({"ENABLED": true, "TYPE": "provider", "KEY": )") + key + "}");
    EXPECT_FALSE(p.config.enabled);
    ASSERT_TRUE(p.error);
    EXPECT_THAT(*p.error, HasSubstr("KEY"));
  }
  // KEY is checked before TYPE.
  const auto both = parse(R"({"ENABLED": true})");
  ASSERT_TRUE(both.error);
  EXPECT_THAT(*both.error, HasSubstr("KEY"));
}

TEST(SyncConfig, EnabledFalseStringIsFalse) {
  const auto p = parse(R"({"ENABLED": "false", "KEY": "k", "TYPE": "provider"})");
  EXPECT_FALSE(p.config.enabled);
  EXPECT_THAT(p.config.warnings, IsEmpty());
}

TEST(SyncConfig, UnreadableEnabledIsFalseWithWarning) {
  const auto p = parse(R"({"ENABLED": "maybe", "KEY": "k", "TYPE": "provider"})");
  EXPECT_FALSE(p.config.enabled);
  EXPECT_FALSE(p.error);
  ASSERT_THAT(p.config.warnings, Not(IsEmpty()));
  EXPECT_THAT(p.config.warnings.front(), HasSubstr("ENABLED"));
}

TEST(SyncConfig, K134_PollIntervalZeroIsRaisedToOne) {
  const json::value zero = 0;
  EXPECT_EQ(parse_poll_interval(&zero), 1.0);
  const json::value small = 0.25;
  EXPECT_EQ(parse_poll_interval(&small), 1.0);
  const json::value fine = 2.5;
  EXPECT_EQ(parse_poll_interval(&fine), 2.5);
  EXPECT_EQ(parse_with({{"POLL_INTERVAL", 0}}).config.poll_interval, 1.0);
}

TEST(SyncConfig, K135_PollIntervalNonNumericIsTen) {
  const json::value nope = "nope";
  EXPECT_EQ(parse_poll_interval(&nope), 10.0);
  const json::value null;
  EXPECT_EQ(parse_poll_interval(&null), 10.0);
  EXPECT_EQ(parse_poll_interval(nullptr), 10.0);
  const json::value numeric_string = " 5 ";
  EXPECT_EQ(parse_poll_interval(&numeric_string), 5.0);
  EXPECT_EQ(parse_with({{"POLL_INTERVAL", "nope"}}).config.poll_interval, 10.0);
}

TEST(SyncConfig, PollIntervalNonFiniteIsTenWithWarning) {
  for (auto text : {"inf", "nan", "-inf"}) {
    const json::value v = text;
    EXPECT_EQ(parse_poll_interval(&v), 10.0) << text;
    const auto p = parse_with({{"POLL_INTERVAL", text}});
    EXPECT_EQ(p.config.poll_interval, 10.0);
    ASSERT_THAT(p.config.warnings, Not(IsEmpty()));
    EXPECT_THAT(p.config.warnings.front(), HasSubstr("POLL_INTERVAL"));
  }
}

TEST(SyncConfig, K136_HsyncPollIntervalAbsentIsSixty) {
  EXPECT_EQ(parse_hsync_poll_interval(nullptr), 60.0);
  const auto p = parse_with({});
  EXPECT_EQ(p.config.hsync_poll_interval, 60.0);
}

TEST(SyncConfig, K137_HsyncPollIntervalBelowTenIsTen) {
  const json::value one = 1;
  EXPECT_EQ(parse_hsync_poll_interval(&one), 10.0);
  const json::value thirty = 30;
  EXPECT_EQ(parse_hsync_poll_interval(&thirty), 30.0);
  EXPECT_EQ(parse_with({{"HSYNC_POLL_INTERVAL", 1}}).config.hsync_poll_interval, 10.0);
}

TEST(SyncConfig, K138_HsyncPollIntervalNonNumericIsSixty) {
  const json::value nope = "nope";
  EXPECT_EQ(parse_hsync_poll_interval(&nope), 60.0);
  const json::value inf = "inf";
  EXPECT_EQ(parse_hsync_poll_interval(&inf), 60.0);
  EXPECT_EQ(parse_with({{"HSYNC_POLL_INTERVAL", "nope"}}).config.hsync_poll_interval, 60.0);
}

TEST(SyncConfig, K139_AllowOnlineCaptureFalseString) {
  const json::value v = "false";
  EXPECT_EQ(parse_flag(&v), false);
  const auto p = parse_with({{"ALLOW_ONLINE_PROVIDER_CAPTURE", "false"}});
  EXPECT_FALSE(p.config.allow_online_capture);
  EXPECT_THAT(p.config.warnings, IsEmpty());
}

TEST(SyncConfig, K140_AllowOnlineCaptureTrueString) {
  const json::value v = "true";
  EXPECT_EQ(parse_flag(&v), true);
  EXPECT_TRUE(parse_with({{"ALLOW_ONLINE_PROVIDER_CAPTURE", "true"}}).config.allow_online_capture);
}

TEST(SyncConfig, ParseFlagVocabulary) {
  for (const json::value& t : {json::value(true), json::value(1), json::value(" TRUE "), json::value("Yes"),
                               json::value("on"), json::value("1")}) {
    EXPECT_EQ(parse_flag(&t), true) << t;
  }
  for (const json::value& f : {json::value(false), json::value(0), json::value(""), json::value(" off"),
                               json::value("NO"), json::value("0")}) {
    EXPECT_EQ(parse_flag(&f), false) << f;
  }
  for (const json::value& bad : {json::value(nullptr), json::value(2), json::value(1.0), json::value("maybe"),
                                 json::value(json::array{})}) {
    EXPECT_EQ(parse_flag(&bad), std::nullopt) << bad;
  }
}

TEST(SyncConfig, UnreadableOnlineCaptureFlagIsFalseWithWarning) {
  const auto p = parse_with({{"ALLOW_ONLINE_PROVIDER_CAPTURE", 2}});
  EXPECT_FALSE(p.config.allow_online_capture);
  ASSERT_THAT(p.config.warnings, Not(IsEmpty()));
  EXPECT_THAT(p.config.warnings.front(), HasSubstr("ALLOW_ONLINE_PROVIDER_CAPTURE"));
}

TEST(SyncConfig, ConsumerApplyModeIsKeptVerbatim) {
  EXPECT_EQ(parse_with({}).config.consumer_apply_mode, "offline_restart");
  EXPECT_EQ(parse_with({{"CONSUMER_APPLY_MODE", "whatever"}}).config.consumer_apply_mode, "whatever");
}

TEST(SyncConfig, ArchiveFormatAndCompressionLevelDefaults) {
  const auto gz = parse_with({});
  EXPECT_EQ(gz.config.archive_format, ArchiveFormat::tar_gz);
  EXPECT_EQ(gz.config.compression_level, 6);
  const auto zst = parse_with({{"ARCHIVE_FORMAT", "tar.zst"}});
  EXPECT_FALSE(zst.error);
  EXPECT_EQ(zst.config.archive_format, ArchiveFormat::tar_zst);
  EXPECT_EQ(zst.config.compression_level, 3);
  EXPECT_EQ(to_string(ArchiveFormat::tar_zst), "tar.zst");
  EXPECT_EQ(to_string(ArchiveFormat::tar_gz), "tar.gz");
}

TEST(SyncConfig, BadArchiveFormatIsAnError) {
  const auto p = parse_with({{"ARCHIVE_FORMAT", "zip"}});
  EXPECT_FALSE(p.config.enabled);
  ASSERT_TRUE(p.error);
  EXPECT_THAT(*p.error, HasSubstr("ARCHIVE_FORMAT"));
}

TEST(SyncConfig, CompressionLevelRangeDependsOnFormat) {
  EXPECT_EQ(parse_with({{"COMPRESSION_LEVEL", 9}}).config.compression_level, 9);
  EXPECT_EQ(parse_with({{"ARCHIVE_FORMAT", "tar.zst"}, {"COMPRESSION_LEVEL", 19}}).config.compression_level, 19);
  for (auto p : {parse_with({{"COMPRESSION_LEVEL", 10}}), parse_with({{"COMPRESSION_LEVEL", 0}}),
                 parse_with({{"COMPRESSION_LEVEL", 5.5}}), parse_with({{"COMPRESSION_LEVEL", "6"}}),
                 parse_with({{"ARCHIVE_FORMAT", "tar.zst"}, {"COMPRESSION_LEVEL", 20}})}) {
    EXPECT_FALSE(p.config.enabled);
    ASSERT_TRUE(p.error);
    EXPECT_THAT(*p.error, HasSubstr("COMPRESSION_LEVEL"));
  }
}

TEST(SyncConfig, ApplySemantics) {
  EXPECT_EQ(parse_with({}).config.apply_semantics, ApplySemantics::overlay);
  EXPECT_EQ(parse_with({{"APPLY_SEMANTICS", "mirror"}}).config.apply_semantics, ApplySemantics::mirror);
  const auto bad = parse_with({{"APPLY_SEMANTICS", "sync"}});
  ASSERT_TRUE(bad.error);
  EXPECT_THAT(*bad.error, HasSubstr("APPLY_SEMANTICS"));
}

TEST(SyncConfig, InitialSyncTimeout) {
  EXPECT_EQ(parse_with({}).config.initial_sync_timeout, std::nullopt);
  EXPECT_EQ(parse_with({{"INITIAL_SYNC_TIMEOUT", 0}}).config.initial_sync_timeout, 0.0);
  EXPECT_EQ(parse_with({{"INITIAL_SYNC_TIMEOUT", 90.5}}).config.initial_sync_timeout, 90.5);
  for (auto p : {parse_with({{"INITIAL_SYNC_TIMEOUT", -1}}), parse_with({{"INITIAL_SYNC_TIMEOUT", "10"}})}) {
    ASSERT_TRUE(p.error);
    EXPECT_THAT(*p.error, HasSubstr("INITIAL_SYNC_TIMEOUT"));
  }
}

TEST(SyncConfig, ErrorFieldNamesTheKey) {
  const auto field_of = [](const ParsedSync& p) {
    EXPECT_TRUE(p.error);
    return p.error_field;
  };
  EXPECT_EQ(field_of(parse(R"({"ENABLED": true, "TYPE": "provider"})")), "SYNC.KEY");
  EXPECT_EQ(field_of(parse(R"({"ENABLED": true, "KEY": "k", "TYPE": "both"})")), "SYNC.TYPE");
  EXPECT_EQ(field_of(parse_with({{"ARCHIVE_FORMAT", "zip"}})), "SYNC.ARCHIVE_FORMAT");
  EXPECT_EQ(field_of(parse_with({{"COMPRESSION_LEVEL", 0}})), "SYNC.COMPRESSION_LEVEL");
  EXPECT_EQ(field_of(parse_with({{"APPLY_SEMANTICS", "sync"}})), "SYNC.APPLY_SEMANTICS");
  EXPECT_EQ(field_of(parse_with({{"INITIAL_SYNC_TIMEOUT", -1}})), "SYNC.INITIAL_SYNC_TIMEOUT");
  EXPECT_EQ(parse_with({}).error_field, "");
}

// The reference tolerates extra SYNC keys, so carsync keeps parsing and says what it ignored.
TEST(SyncConfig, UnknownKeysAreWarningsNamingTheClosestKnownKey) {
  const auto p = parse_with({{"POLL_INTERVALL", 5}, {"Key", "other"}, {"FOO", 1}});
  EXPECT_FALSE(p.error);
  EXPECT_TRUE(p.config.enabled);
  EXPECT_EQ(p.config.poll_interval, 10.0) << "the misspelt key is not read";
  EXPECT_EQ(p.config.key, "shared-key") << "nor is a differently-cased one";
  EXPECT_THAT(p.config.warnings, ::testing::ElementsAre(
                                     "SYNC.POLL_INTERVALL: unknown key ignored (did you mean POLL_INTERVAL?)",
                                     "SYNC.Key: unknown key ignored (did you mean KEY?)",
                                     "SYNC.FOO: unknown key ignored"));
}

TEST(SyncConfig, NearMissOfEnabledLeavesTheBlockDisabledWithAWarning) {
  const auto p = parse(R"({"ENABLE": true, "KEY": "k", "TYPE": "provider"})");
  EXPECT_FALSE(p.config.enabled);
  EXPECT_FALSE(p.error);
  EXPECT_TRUE(p.config.block_given);
  EXPECT_FALSE(p.config.enabled_given);
  EXPECT_THAT(p.config.warnings, ::testing::ElementsAre("SYNC.ENABLE: unknown key ignored (did you mean ENABLED?)"));
}

TEST(SyncConfig, NonObjectBlockIsDisabledWithAWarning) {
  const auto p = parse("true");
  EXPECT_FALSE(p.config.enabled);
  EXPECT_FALSE(p.config.block_given);
  EXPECT_THAT(p.config.warnings, ::testing::ElementsAre("SYNC: true is not an object; sync stays disabled"));
  const json::value null;
  EXPECT_THAT(parse_sync_config(&null).config.warnings, IsEmpty()) << "null is the same as absent";
}

TEST(SyncConfig, KeyDistance) {
  EXPECT_EQ(key_distance("volumes", "volumes"), 0u);
  EXPECT_EQ(key_distance("volumse", "volumes"), 1u);  // adjacent transposition counts once
  EXPECT_EQ(key_distance("ENABLE", "ENABLED"), 1u);
  EXPECT_EQ(key_distance("sync", "SYNC"), 0u);        // case-insensitive
  EXPECT_EQ(key_distance("", "abc"), 3u);
  EXPECT_EQ(key_distance("abc", ""), 3u);
  EXPECT_EQ(key_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(key_distance("ab", "ba"), 1u);
}

TEST(SyncConfig, ClosestKey) {
  constexpr std::string_view known[] = {"io_workers", "archive_workers", "KEY", "kind"};
  EXPECT_EQ(closest_key("io_worker", known), "io_workers");
  EXPECT_EQ(closest_key("KYE", known), "KEY");
  EXPECT_EQ(closest_key("key", known), "KEY");
  EXPECT_EQ(closest_key("kid", known), "kind");
  EXPECT_EQ(closest_key("ky", known), "KEY") << "ties go to the earlier key";
  EXPECT_EQ(closest_key("workers", known), "io_workers") << "three edits in ten characters";
  EXPECT_EQ(closest_key("threads", known), std::nullopt);
  EXPECT_EQ(closest_key("KEYS_", known), std::nullopt) << "two edits in a three-letter key is a different word";
  EXPECT_EQ(closest_key("x", known), std::nullopt);
  EXPECT_EQ(closest_key("", known), std::nullopt);
  EXPECT_EQ(closest_key(std::string(1 << 20, 'k'), known), std::nullopt);
}

TEST(SyncConfig, ValidInstanceId) {
  for (std::string_view ok : {"a", "app-a", "A.b_c-9", "x."}) EXPECT_TRUE(valid_instance_id(ok)) << ok;
  EXPECT_TRUE(valid_instance_id(std::string(128, 'a')));
  for (std::string_view bad : {"", ".", "..", ".a", "a/b", "a b", "a\n", "caf\u00e9", "a:b"})
    EXPECT_FALSE(valid_instance_id(bad)) << bad;
  EXPECT_FALSE(valid_instance_id(std::string(129, 'a')));
}

// ---- disabled_reason ----

InstanceConfig instance_with_sync(std::optional<std::string_view> block) {
  InstanceConfig inst;
  inst.id = "app";
  if (!block) {
    inst.sync = parse_sync_config(nullptr).config;
    return inst;
  }
  const json::value v = json::parse(*block);
  auto parsed = parse_sync_config(&v);
  inst.sync = parsed.config;
  if (parsed.error) inst.error = *parsed.error;
  return inst;
}

TEST(DisabledReason, SaysWhyAnInstanceIsNotSyncing) {
  EXPECT_EQ(disabled_reason(instance_with_sync(std::nullopt)), "no SYNC block");
  EXPECT_EQ(disabled_reason(instance_with_sync("[1]")),
            "no SYNC block (SYNC: [1] is not an object; sync stays disabled)");
  EXPECT_EQ(disabled_reason(instance_with_sync("{}")), "SYNC.ENABLED is absent");
  EXPECT_EQ(disabled_reason(instance_with_sync(R"({"KEY": "k", "TYPE": "provider"})")), "SYNC.ENABLED is absent");
  EXPECT_EQ(disabled_reason(instance_with_sync(R"({"ENABLE": true, "KEY": "k", "TYPE": "provider"})")),
            "SYNC.ENABLED is absent (SYNC.ENABLE was given: did you mean ENABLED?)");
  EXPECT_EQ(disabled_reason(instance_with_sync(R"({"enabled": true, "KEY": "k", "TYPE": "provider"})")),
            "SYNC.ENABLED is absent (SYNC.enabled was given: did you mean ENABLED?)");
  EXPECT_EQ(disabled_reason(instance_with_sync(R"({"ENABLED": false, "KEY": "k", "TYPE": "provider"})")),
            "SYNC.ENABLED is false");
  EXPECT_EQ(disabled_reason(instance_with_sync(R"({"ENABLED": "off"})")), "SYNC.ENABLED is false");
  EXPECT_EQ(disabled_reason(instance_with_sync(R"({"ENABLED": "maybe"})")),
            R"(SYNC.ENABLED is false (SYNC.ENABLED: cannot read "maybe" as a boolean; using false))");
  // An unrelated unknown key is not offered as the reason.
  EXPECT_EQ(disabled_reason(instance_with_sync(R"({"ENABLED": false, "FOO": 1})")), "SYNC.ENABLED is false");
}

TEST(DisabledReason, ConfigErrorWinsAndEnabledIsEmpty) {
  EXPECT_EQ(disabled_reason(instance_with_sync(R"({"ENABLED": true, "KEY": "k"})")),
            R"(SYNC.TYPE must be "provider" or "consumer", got nothing)");
  EXPECT_EQ(disabled_reason(instance_with_sync(R"({"ENABLED": true, "KEY": "k", "TYPE": "provider"})")), "");

  // The parser's instance error (any field) is the reason, even for an otherwise enabled block.
  InstanceConfig broken = instance_with_sync(R"({"ENABLED": true, "KEY": "k", "TYPE": "provider"})");
  broken.error = "instance \"app\": system_volume must be an absolute host path";
  EXPECT_EQ(disabled_reason(broken), *broken.error);
}

// Whatever the block, an instance is either syncing (reason "") or says why not.
TEST(DisabledReason, NonEmptyExactlyWhenNotSyncing) {
  using Block = std::optional<std::string_view>;
  const Block blocks[] = {Block{},
                          Block{"null"},
                          Block{"5"},
                          Block{"{}"},
                          Block{R"({"ENABLED": 0})"},
                          Block{R"({"ENABLED": 2})"},
                          Block{R"({"ENABLED": "yes", "KEY": "k", "TYPE": "consumer"})"},
                          Block{R"({"ENABLED": true, "KEY": "", "TYPE": "consumer"})"},
                          Block{R"({"ENABLED": true, "KEY": "k", "TYPE": "consumer", "ENABLE": 1})"}};
  for (const Block& block : blocks) {
    const InstanceConfig inst = instance_with_sync(block);
    const bool syncing = inst.sync.enabled && !inst.error;
    EXPECT_EQ(disabled_reason(inst).empty(), syncing) << block.value_or("<absent>");
  }
}

TEST(SyncConfig, RoleNames) {
  EXPECT_EQ(to_string(Role::none), "none");
  EXPECT_EQ(to_string(Role::consumer), "consumer");
}

}  // namespace
}  // namespace carsync::core

namespace carsync::core {
namespace {

TEST(SyncConfig, DeltaDefaultsOnWithEightVersionsAndOneMebibyte) {
  const auto p = parse_with({});
  EXPECT_TRUE(p.config.delta);
  EXPECT_EQ(p.config.delta_versions, 8u);
  EXPECT_EQ(p.config.delta_min_bytes, 1u << 20);
  const auto set = parse_with({{"DELTA", "off"}, {"DELTA_VERSIONS", 64}, {"DELTA_MIN_BYTES", 0}});
  EXPECT_FALSE(set.error);
  EXPECT_FALSE(set.config.delta);
  EXPECT_EQ(set.config.delta_versions, 64u);
  EXPECT_EQ(set.config.delta_min_bytes, 0u);
}

TEST(SyncConfig, BadDeltaValuesDisableTheInstanceNamingTheKey) {
  const std::pair<const char*, json::value> bad[] = {
      {"DELTA", "maybe"},         {"DELTA_VERSIONS", 0},    {"DELTA_VERSIONS", 65},
      {"DELTA_VERSIONS", "8"},    {"DELTA_MIN_BYTES", -1},  {"DELTA_MIN_BYTES", 1.5},
  };
  for (const auto& [key, value] : bad) {
    const auto p = parse_with({{key, value}});
    EXPECT_FALSE(p.config.enabled) << key;
    ASSERT_TRUE(p.error) << key;
    EXPECT_THAT(*p.error, HasSubstr(std::string("SYNC.") + key));
  }
}

}  // namespace
}  // namespace carsync::core
