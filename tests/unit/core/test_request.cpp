#include "core/request.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace carsync::core {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

const std::string appdata_root = "/x/fixed_volumes/mounts/appdata";

// The spec §11 fixture: system volume, a fixed-size volume and an anonymous host dir.
class RequestTest : public ::testing::Test {
 protected:
  RequestTest() { policy_.legacy_root = "/legacy/container_volumes/"; }

  boost::system::result<SyncRequest, RequestRejection> parse(std::string_view body, bool opt_in = false) {
    return parse_request(body, RequestContext{mounts_, &policy_, opt_in});
  }

  RequestRejection rejected(std::string_view body, bool opt_in = false) {
    auto r = parse(body, opt_in);
    if (r) ADD_FAILURE() << "accepted: " << body;
    return r ? RequestRejection{} : r.error();
  }

  std::vector<VolumeMount> mounts_ = {{"/x/fixed_volumes/mounts/r1en_system", "/r1en_system"},
                                      {appdata_root, "/app/data"},
                                      {"/x/anon", "/app/legacy"}};
  MountPolicy policy_;
};

TEST_F(RequestTest, E47_ValidRequestGetsDefaultRuntime) {
  auto r = parse(R"({"archive_paths": ["/app/data/"], "metadata": {"epoch": 1}, "extra": 5})");
  ASSERT_TRUE(r) << r.error().error.message;
  EXPECT_EQ(r->archive_paths, std::vector<std::string>{"/app/data/"});  // verbatim, slash kept
  EXPECT_EQ(r->metadata, (json::object{{"epoch", 1}}));
  EXPECT_EQ(r->runtime.provider_capture, "offline");
  EXPECT_EQ(r->runtime.consumer_apply, "offline_restart");
  ASSERT_EQ(r->sources.size(), 1u);
  EXPECT_EQ(r->sources[0].host_path(), appdata_root);

  const json::object expected = {
      {"archive_paths", json::array{"/app/data/"}},
      {"metadata", json::object{{"epoch", 1}}},
      {"runtime", json::object{{"provider_capture", "offline"}, {"consumer_apply", "offline_restart"}}},
  };
  EXPECT_EQ(r->normalised(), expected);  // unknown fields are dropped
}

TEST_F(RequestTest, E48_OnlineRuntimeKeptWithOptIn) {
  auto r = parse(
      R"({"archive_paths": ["/app/data/x"],
          "runtime": {"provider_capture": "online", "consumer_apply": "online_no_restart", "other": 1}})",
      true);
  ASSERT_TRUE(r) << r.error().error.message;
  EXPECT_TRUE(r->runtime.online());
  EXPECT_EQ(r->runtime.consumer_apply, "online_no_restart");
  EXPECT_TRUE(r->sources.empty());  // online capture reads from the container, not volumes
  EXPECT_EQ(r->runtime.to_json(),
            (json::object{{"provider_capture", "online"}, {"consumer_apply", "online_no_restart"}}));
}

TEST_F(RequestTest, E49_RuntimeStringRejected) {
  auto e = rejected(R"({"archive_paths": ["/app/data"], "runtime": "offline"})");
  EXPECT_THAT(e.error.message, HasSubstr("runtime must be a JSON object"));
  EXPECT_EQ(e.error.code, make_error_code(errc::invalid_request));
}

TEST_F(RequestTest, E50_BadProviderCaptureNamesFieldAndValue) {
  auto e = rejected(R"({"archive_paths": ["/app/data"], "runtime": {"provider_capture": "maybe"}})");
  EXPECT_THAT(e.error.message, HasSubstr("provider_capture"));
  EXPECT_THAT(e.error.message, HasSubstr("maybe"));
  EXPECT_THAT(e.error.message, HasSubstr("[offline, online]"));
}

TEST_F(RequestTest, ProviderCaptureNullIsInvalid) {
  auto e = rejected(R"({"archive_paths": ["/app/data"], "runtime": {"provider_capture": null}})");
  EXPECT_THAT(e.error.message, HasSubstr("runtime.provider_capture"));
}

TEST_F(RequestTest, E51_BadConsumerApplyNamesFieldAndValue) {
  auto e = rejected(R"({"archive_paths": ["/app/data"], "runtime": {"consumer_apply": "sometimes"}})");
  EXPECT_THAT(e.error.message, HasSubstr("consumer_apply"));
  EXPECT_THAT(e.error.message, HasSubstr("sometimes"));
  EXPECT_THAT(e.error.message, HasSubstr("[offline_restart, online_no_restart, online_restart]"));
}

TEST_F(RequestTest, E52_OnlineCaptureAcceptsUnmountedPath) {
  auto r = parse(R"({"archive_paths": ["/tmp/generated.txt"], "runtime": {"provider_capture": "online"}})", true);
  ASSERT_TRUE(r) << r.error().error.message;
  EXPECT_EQ(r->archive_paths, std::vector<std::string>{"/tmp/generated.txt"});
}

TEST_F(RequestTest, OnlineCaptureStillAppliesShapeRules) {
  auto e = rejected(R"({"archive_paths": ["//r1en_system/x"], "runtime": {"provider_capture": "online"}})", true);
  EXPECT_THAT(e.error.message, HasSubstr("anti-recursion"));
}

TEST_F(RequestTest, E53_OnlineCaptureWithoutOptInRejected) {
  auto e = rejected(R"({"archive_paths": ["/tmp/generated.txt"], "runtime": {"provider_capture": "online"}})");
  EXPECT_THAT(e.error.message, HasSubstr("ALLOW_ONLINE_PROVIDER_CAPTURE"));
}

TEST_F(RequestTest, MalformedJsonCarriesRawBody) {
  auto e = rejected("not-json{");
  EXPECT_THAT(e.error.message, HasSubstr("malformed JSON: "));
  EXPECT_TRUE(e.request.is_null());
  EXPECT_EQ(e.raw_body, "not-json{");
  EXPECT_TRUE(e.archive_paths.empty());
}

TEST_F(RequestTest, InvalidUtf8HasNoRawBody) {
  auto e = rejected("{\"archive_paths\": [\"/app/data/\xFF\"]}");
  EXPECT_THAT(e.error.message, HasSubstr("malformed JSON: invalid UTF-8 in request.json: "));
  EXPECT_EQ(e.raw_body, std::nullopt);
  EXPECT_TRUE(e.request.is_null());
}

TEST_F(RequestTest, RawBodyIsCappedAt1024CodePoints) {
  std::string body;
  for (int i = 0; i < 2000; ++i) body += "\xC3\xA9";  // é: two bytes, one code point
  auto e = rejected(body);
  ASSERT_TRUE(e.raw_body);
  EXPECT_EQ(e.raw_body->size(), 2 * raw_body_code_points);
  EXPECT_EQ(*e.raw_body, body.substr(0, 2 * raw_body_code_points));
}

TEST_F(RequestTest, OversizedBodyRejectedWithoutRawBody) {
  auto e = rejected(std::string(max_request_bytes + 1, ' '));
  EXPECT_EQ(e.raw_body, std::nullopt);
}

TEST_F(RequestTest, E56_ArrayBodyRejectedExactly) {
  auto e = rejected(R"(["/app/data"])");
  EXPECT_EQ(e.error.message, "request.json must be a JSON object");
  EXPECT_EQ(e.raw_body, R"(["/app/data"])");
  EXPECT_TRUE(e.request.is_null());
}

TEST_F(RequestTest, E57_MissingArchivePathsRejected) {
  auto e = rejected(R"({"metadata": {"a": 1}})");
  EXPECT_THAT(e.error.message, HasSubstr("archive_paths must be a non-empty list"));
  EXPECT_EQ(e.request, json::parse(R"({"metadata": {"a": 1}})"));
  EXPECT_EQ(e.raw_body, std::nullopt);
}

TEST_F(RequestTest, E58_EmptyArchivePathsRejected) {
  auto e = rejected(R"({"archive_paths": []})");
  EXPECT_THAT(e.error.message, HasSubstr("archive_paths must be a non-empty list"));
  e = rejected(R"({"archive_paths": "/app/data"})");
  EXPECT_THAT(e.error.message, HasSubstr("archive_paths must be a non-empty list"));
  EXPECT_TRUE(e.archive_paths.empty());  // not an array: nothing to echo
}

TEST_F(RequestTest, E59_MetadataStringRejected) {
  auto e = rejected(R"({"archive_paths": ["/app/data"], "metadata": "x"})");
  EXPECT_THAT(e.error.message, HasSubstr("metadata must be a JSON object"));
}

TEST_F(RequestTest, FalsyMetadataAndRuntimeBecomeEmpty) {
  for (auto falsy : {"null", "false", "0", "\"\"", "[]", "{}"}) {
    auto r = parse(std::string(R"({"archive_paths": ["/app/data"], "metadata": )") + falsy +
                   R"(, "runtime": )" + falsy + "}");
    ASSERT_TRUE(r) << falsy << ": " << r.error().error.message;
    EXPECT_TRUE(r->metadata.empty());
    EXPECT_EQ(r->runtime.provider_capture, "offline");
  }
  auto e = rejected(R"({"archive_paths": ["/app/data"], "metadata": [1]})");
  EXPECT_THAT(e.error.message, HasSubstr("metadata must be a JSON object"));
}

TEST_F(RequestTest, MetadataIsCheckedBeforeRuntimeAndPaths) {
  auto e = rejected(R"({"metadata": 5, "runtime": 5})");
  EXPECT_THAT(e.error.message, HasSubstr("metadata"));
  e = rejected(R"({"runtime": 5})");
  EXPECT_THAT(e.error.message, HasSubstr("runtime"));
}

TEST_F(RequestTest, E60_TraversalRejectedAndBodyEchoed) {
  const std::string body = R"({"archive_paths": ["/app/data/ok", "/app/data/../../etc/passwd"], "x": 1})";
  auto e = rejected(body);
  EXPECT_THAT(e.error.message, HasSubstr(".."));
  EXPECT_EQ(e.error.code, make_error_code(errc::path_rejected));
  EXPECT_EQ(e.request, json::parse(body));  // verbatim, unknown fields included
  EXPECT_EQ(e.archive_paths, (json::array{"/app/data/ok", "/app/data/../../etc/passwd"}));
  EXPECT_EQ(e.raw_body, std::nullopt);
}

TEST_F(RequestTest, E61_UnmountedEntryRejected) {
  auto e = rejected(R"({"archive_paths": ["/srv/nothing"]})");
  EXPECT_THAT(e.error.message, HasSubstr("no mounted volume covers"));
}

// carsync resolves every offline source at claim time, so an unmapped path never reaches
// the archive builder: F69's failure surfaces here, before the container is touched.
TEST_F(RequestTest, F69_ArchivingAnUnmappedPathFailsBeforeCapture) {
  auto e = rejected(R"({"archive_paths": ["/app/data/ok.bin", "/var/unmapped/file"]})");
  EXPECT_THAT(e.error.message, HasSubstr("no mounted volume covers"));
  EXPECT_THAT(e.error.message, HasSubstr("/var/unmapped/file"));
}

TEST_F(RequestTest, E62_AnonymousMountEntryRejected) {
  auto e = rejected(R"({"archive_paths": ["/app/legacy/x"]})");
  EXPECT_THAT(e.error.message, HasSubstr("non-volume-backed mount"));
}

TEST_F(RequestTest, E63_SystemVolumeEntryRejected) {
  auto e = rejected(R"({"archive_paths": ["/r1en_system/volume-sync"]})");
  EXPECT_THAT(e.error.message, HasSubstr("anti-recursion"));
}

TEST_F(RequestTest, NonStringEntryRejected) {
  auto e = rejected(R"({"archive_paths": ["/app/data", 7]})");
  EXPECT_THAT(e.error.message, HasSubstr("non-empty"));
  EXPECT_EQ(e.archive_paths, (json::array{"/app/data", 7}));
  e = rejected(R"({"archive_paths": [""]})");
  EXPECT_THAT(e.error.message, HasSubstr("non-empty"));
}

TEST_F(RequestTest, DuplicatePathsAreKept) {
  auto r = parse(R"({"archive_paths": ["/app/data", "/app/data/"]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->archive_paths.size(), 2u);
  EXPECT_EQ(r->sources.size(), 2u);
}

}  // namespace
}  // namespace carsync::core

namespace carsync::core {
namespace {

// A number beyond double's range used to be accepted and published as Infinity, which no
// reader can parse: every consumer of the key stalled until it was republished.
TEST_F(RequestTest, NumberOutOfDoubleRangeIsRefusedNamingWhereItIs) {
  for (std::string_view body :
       {R"({"archive_paths": ["/app/data/"], "metadata": {"x": 1e400}})",
        R"({"archive_paths": ["/app/data/"], "metadata": {"deep": {"list": [1, -1e999]}}})",
        R"({"archive_paths": ["/app/data/"], "runtime": {"weird": 1e309}})"}) {
    auto e = rejected(body);
    EXPECT_EQ(e.error.code, make_error_code(errc::invalid_request)) << body;
    EXPECT_THAT(e.error.message, HasSubstr("outside the range of a double")) << body;
    EXPECT_TRUE(e.request.is_null()) << "echoed as JSON: " << body;  // .invalid stays readable
    EXPECT_TRUE(e.raw_body.has_value()) << body;
  }
  EXPECT_THAT(rejected(R"({"archive_paths": ["/app/data/"], "metadata": {"x": 1e400}})").error.message,
              HasSubstr("metadata.x"));
  EXPECT_THAT(
      rejected(R"({"archive_paths": ["/app/data/"], "metadata": {"deep": {"list": [1, -1e999]}}})").error.message,
      HasSubstr("metadata.deep.list[1]"));
}

// Under 1 MiB of text, yet gigabytes once indented in the record and the sent history:
// refused before anything is built, and not echoed as JSON.
TEST_F(RequestTest, RequestTooLargeAsWrittenIsRefused) {
  std::string nested(400, '[');
  for (int i = 0; i < 50'000; ++i) nested += i ? ",0" : "0";
  nested += std::string(400, ']');
  const std::string body = R"({"archive_paths": ["/app/data/"], "metadata": {"deep": )" + nested + "}}";
  ASSERT_LT(body.size(), max_request_bytes);
  auto e = rejected(body);
  EXPECT_EQ(e.error.code, make_error_code(errc::limit_exceeded));
  EXPECT_THAT(e.error.message, HasSubstr("as written"));
  EXPECT_TRUE(e.request.is_null());
  EXPECT_TRUE(e.raw_body.has_value());
}

// Integers keep their precision; large but finite doubles are fine.
TEST_F(RequestTest, LargeIntegersAndFiniteDoublesKeepTheirValue) {
  auto r = parse(
      R"({"archive_paths": ["/app/data/"], "metadata": {"u": 18446744073709551615, "i": -9223372036854775808, "d": 1.7e308}})");
  ASSERT_TRUE(r) << r.error().error.message;
  EXPECT_EQ(r->metadata.at("u"), json::value(std::uint64_t{18446744073709551615ull}));
  EXPECT_EQ(r->metadata.at("i"), json::value(std::int64_t{-9223372036854775807ll - 1}));
  EXPECT_EQ(r->metadata.at("d").as_double(), 1.7e308);
}

TEST(NonFiniteNumber, FindsTheFirstAndNothingInFiniteDocuments) {
  EXPECT_EQ(non_finite_number(json::parse(R"({"a": [1, 2.5, {"b": "x"}]})"), ""), std::nullopt);
  json::value v = json::parse(R"({"a": [1, {"b": 0}]})");
  v.at("a").as_array()[1].as_object()["b"] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(non_finite_number(v, ""), "a[1].b");
  EXPECT_EQ(non_finite_number(json::value(std::numeric_limits<double>::infinity()), ""), "the document");
}

}  // namespace
}  // namespace carsync::core
