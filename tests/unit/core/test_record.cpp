#include "core/record.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

namespace carsync::core {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

class RecordTest : public ::testing::Test {
 protected:
  RecordTest() { policy_.legacy_root = "/legacy/container_volumes/"; }

  static json::object manifest() {
    return {
        {"schema_version", 1},
        {"archive_paths", json::array{"/app/data/"}},
        {"archive_format", "tar.gz"},
        {"archive_size_bytes", 12345},
        {"encryption", "r1fs-default"},
        {"runtime", json::object{{"provider_capture", "offline"}, {"consumer_apply", "offline_restart"}}},
    };
  }
  static json::object record(json::value m = manifest()) {
    return {{"cid", "QmCid"}, {"version", 1714742401}, {"timestamp", 1714742401.73}, {"manifest", std::move(m)}};
  }
  static json::object manifest_with(std::string_view key, json::value v) {
    json::object m = manifest();
    m[key] = std::move(v);
    return m;
  }

  std::vector<std::string> validate(const json::value& rec) { return validate_record(rec, mounts_, policy_); }
  std::vector<std::string> validate_m(const json::value& rec) { return validate_manifest(rec, mounts_, policy_); }

  std::vector<VolumeMount> mounts_ = {{"/x/fixed_volumes/mounts/r1en_system", "/r1en_system"},
                                      {"/x/fixed_volumes/mounts/appdata", "/app/data"},
                                      {"/x/anon", "/app/legacy"}};
  MountPolicy policy_;
};

TEST_F(RecordTest, BuildRecordShape) {
  SyncRequest req;
  req.archive_paths = {"/app/data/"};
  req.metadata = {{"epoch", 1}};
  PublishedSnapshot snap{"QmCid", 1714742401, 1714742401.73, "node-a", ArchiveFormat::tar_gz, 12345, std::nullopt};

  const json::object expected_manifest = manifest();
  EXPECT_EQ(build_manifest(req, snap), expected_manifest);
  const json::object expected = {
      {"cid", "QmCid"},
      {"version", 1714742401},
      {"timestamp", 1714742401.73},
      {"node_id", "node-a"},
      {"metadata", json::object{{"epoch", 1}}},
      {"runtime", json::object{{"provider_capture", "offline"}, {"consumer_apply", "offline_restart"}}},
      {"manifest", expected_manifest},
  };
  EXPECT_EQ(build_record(req, snap), expected);
  EXPECT_THAT(validate(build_record(req, snap)), IsEmpty());
}

TEST_F(RecordTest, BuildRecordWithoutNodeIdAndWithZstd) {
  SyncRequest req;
  req.archive_paths = {"/app/data/a", "/app/data/b"};
  req.runtime.provider_capture = "online";
  PublishedSnapshot snap{"QmZ", 7, 7.5, std::nullopt, ArchiveFormat::tar_zst, 1, std::nullopt};
  const json::object rec = build_record(req, snap);
  EXPECT_TRUE(rec.at("node_id").is_null());
  EXPECT_EQ(rec.at("manifest").at("archive_format"), "tar.zst");
  EXPECT_EQ(rec.at("manifest").at("runtime").at("provider_capture"), "online");
  EXPECT_EQ(rec.at("metadata"), json::object{});
  EXPECT_THAT(validate(rec), IsEmpty());  // tar.zst is accepted
}

// A record whose history entry could not be read back is refused before it is applied.
TEST_F(RecordTest, RecordTooLargeAsWrittenIsRefused) {
  auto big = record();
  big["metadata"] = json::object{{"blob", std::string(max_record_written_bytes, 'x')}};
  EXPECT_THAT(validate(big), ElementsAre(HasSubstr("larger than 8388608 bytes as written")));
  auto fits = record();
  fits["metadata"] = json::object{{"blob", std::string(max_record_written_bytes / 2, 'x')}};
  EXPECT_THAT(validate(fits), IsEmpty());
}

TEST_F(RecordTest, H97_AlignedManifestIsValid) { EXPECT_THAT(validate(record()), IsEmpty()); }

TEST_F(RecordTest, H98_UnmappedPathReportedOnce) {
  const auto reasons = validate(record(manifest_with("archive_paths", json::array{"/app/data/", "/srv/extra"})));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("unmapped archive_paths"));
  EXPECT_THAT(reasons[0], HasSubstr("/srv/extra"));
}

// Without a consumer's mounts (carsync kv hset): every rule but the mapping still holds.
TEST_F(RecordTest, ShapeOnlyValidationSkipsTheMappingButNotTheRest) {
  EXPECT_THAT(validate_record_shape(record(manifest_with("archive_paths", json::array{"/srv/extra"}))), IsEmpty());
  const auto bad = validate_record_shape(record(manifest_with("archive_paths", json::array{"relative", "/r1en_system/x"})));
  ASSERT_THAT(bad, SizeIs(1));
  EXPECT_THAT(bad[0], HasSubstr("invalid archive_paths entries"));
  EXPECT_THAT(bad[0], HasSubstr("absolute"));
  EXPECT_THAT(bad[0], HasSubstr("system volume"));
  json::object no_cid = record();
  no_cid.erase("cid");
  EXPECT_THAT(validate_record_shape(no_cid), ElementsAre(HasSubstr("cid must be a non-empty string")));
  EXPECT_THAT(validate_record_shape(json::value("text")), ElementsAre("sync record is not a dict"));
}

TEST_F(RecordTest, H99_FutureSchemaVersion) {
  const auto reasons = validate(record(manifest_with("schema_version", 999)));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("schema_version"));
  EXPECT_THAT(reasons[0], HasSubstr("999"));
}

TEST_F(RecordTest, H100_MissingSchemaVersion) {
  json::object m = manifest();
  m.erase("schema_version");
  const auto reasons = validate(record(m));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("schema_version"));
  EXPECT_THAT(reasons[0], HasSubstr("1"));
}

TEST_F(RecordTest, H101_StringSchemaVersion) {
  const auto reasons = validate(record(manifest_with("schema_version", "1")));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("schema_version"));
}

TEST_F(RecordTest, OlderSchemaVersionsAreAccepted) {
  EXPECT_THAT(validate(record(manifest_with("schema_version", 0))), IsEmpty());
  EXPECT_THAT(validate(record(manifest_with("schema_version", -3))), IsEmpty());
  EXPECT_THAT(validate(record(manifest_with("schema_version", 1.0))), SizeIs(1));
}

TEST_F(RecordTest, H102_UnknownArchiveFormat) {
  const auto reasons = validate(record(manifest_with("archive_format", "zip")));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("archive_format"));
  EXPECT_THAT(reasons[0], HasSubstr("zip"));
  EXPECT_THAT(reasons[0], HasSubstr("tar.gz"));
}

TEST_F(RecordTest, H103_UnknownEncryption) {
  const auto reasons = validate(record(manifest_with("encryption", "plaintext")));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("encryption"));
  EXPECT_THAT(reasons[0], HasSubstr("plaintext"));
  EXPECT_THAT(reasons[0], HasSubstr("r1fs-default"));
}

TEST_F(RecordTest, H104_AllProblemsReportedTogether) {
  json::object m = manifest_with("schema_version", 999);
  m["archive_format"] = "zip";
  m["archive_paths"] = json::array{"/app/data", "/srv/extra"};
  const auto reasons = validate(record(m));
  ASSERT_THAT(reasons, SizeIs(3));
  EXPECT_THAT(reasons[0], HasSubstr("999"));
  EXPECT_THAT(reasons[1], HasSubstr("zip"));
  EXPECT_THAT(reasons[2], HasSubstr("unmapped archive_paths"));
}

TEST_F(RecordTest, H105_EmptyRecordAndEmptyManifestRejected) {
  EXPECT_THAT(validate(json::object{}), Not(IsEmpty()));
  EXPECT_THAT(validate(record(json::object{})), Not(IsEmpty()));
  // A falsy manifest counts as {}: the manifest reasons, not the "not an object" one.
  const auto reasons = validate_m(record(nullptr));
  EXPECT_THAT(reasons, Not(IsEmpty()));
  EXPECT_THAT(reasons, Not(testing::Contains("manifest must be a JSON object")));
}

TEST_F(RecordTest, H106_StringManifest) {
  EXPECT_THAT(validate_m(record("tar.gz")), ElementsAre("manifest must be a JSON object"));
  EXPECT_THAT(validate(record(json::array{1})), ElementsAre("manifest must be a JSON object"));
}

TEST_F(RecordTest, H107_MissingArchivePaths) {
  json::object m = manifest();
  m.erase("archive_paths");
  const auto reasons = validate(record(m));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("archive_paths"));
}

TEST_F(RecordTest, H108_EmptyArchivePaths) {
  const auto reasons = validate(record(manifest_with("archive_paths", json::array{})));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("non-empty list"));
}

TEST_F(RecordTest, H109_StringArchivePaths) {
  const auto reasons = validate(record(manifest_with("archive_paths", "/app/data")));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("non-empty list"));
}

TEST_F(RecordTest, H110_NonStringEntry) {
  const auto reasons = validate(record(manifest_with("archive_paths", json::array{"/app/data", 5, ""})));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("invalid archive_paths"));
  EXPECT_THAT(reasons[0], HasSubstr("5"));
}

TEST_F(RecordTest, H111_NonObjectRecordForManifestValidator) {
  EXPECT_THAT(validate_m(nullptr), ElementsAre("manifest record is not a dict"));
  EXPECT_THAT(validate_m("QmCid"), ElementsAre("manifest record is not a dict"));
  EXPECT_THAT(validate(nullptr), ElementsAre("sync record is not a dict"));
}

TEST_F(RecordTest, H112_EmptyCidAndStringVersion) {
  json::object rec = record();
  rec["cid"] = "";
  rec["version"] = "1714742401";
  const auto reasons = validate(rec);
  ASSERT_THAT(reasons, SizeIs(2));
  EXPECT_THAT(reasons[0], HasSubstr("cid"));
  EXPECT_THAT(reasons[1], HasSubstr("version"));
}

TEST_F(RecordTest, FloatVersionRejected) {
  json::object rec = record();
  rec["version"] = 1714742401.0;
  EXPECT_THAT(validate(rec), ElementsAre(HasSubstr("version")));
}

TEST_F(RecordTest, ManifestEntriesObeyShapeRulesOnTheConsumer) {
  const auto reasons =
      validate(record(manifest_with("archive_paths", json::array{"/r1en_system/x", "/app/data/../../etc", "/app/legacy"})));
  ASSERT_THAT(reasons, SizeIs(1));
  EXPECT_THAT(reasons[0], HasSubstr("unmapped archive_paths"));
  EXPECT_THAT(reasons[0], HasSubstr("anti-recursion"));
  EXPECT_THAT(reasons[0], HasSubstr("non-volume-backed mount"));
}

// Issue 10: the record carries the archive's SHA-256 (hashed while it was built) as an extra
// field; the reference ignores it, carsync consumers verify the download against it.
TEST_F(RecordTest, ArchiveSha256IsWrittenAndReadBack) {
  SyncRequest req;
  req.archive_paths = {"/app/data/"};
  const std::string hex = "00ff" + std::string(56, 'a') + "0123";
  PublishedSnapshot snap{"QmCid", 1714742401, 1714742401.73, "node-a", ArchiveFormat::tar_gz, 12345, hex};
  const json::object rec = build_record(req, snap);
  EXPECT_EQ(rec.at("archive_sha256"), json::value(hex));
  EXPECT_FALSE(build_manifest(req, snap).contains("archive_sha256"));  // the record's, not the manifest's
  EXPECT_THAT(validate(rec), IsEmpty());
  auto parsed = record_archive_sha256(rec);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ((*parsed)[0], std::byte{0x00});
  EXPECT_EQ((*parsed)[1], std::byte{0xff});
  EXPECT_EQ((*parsed)[2], std::byte{0xaa});
  EXPECT_EQ((*parsed)[30], std::byte{0x01});
  EXPECT_EQ((*parsed)[31], std::byte{0x23});

  snap.archive_sha256.reset();  // absent is fine: a reference provider never writes it
  const json::object without = build_record(req, snap);
  EXPECT_FALSE(without.contains("archive_sha256"));
  EXPECT_THAT(validate(without), IsEmpty());
  EXPECT_FALSE(record_archive_sha256(without).has_value());
}

TEST_F(RecordTest, MalformedArchiveSha256RefusesTheRecord) {
  const std::vector<json::value> bad = {
      json::value(std::string(63, 'a')),        // short
      json::value(std::string(65, 'a')),        // long
      json::value(std::string(64, 'A')),        // uppercase
      json::value(std::string(63, 'a') + "g"),  // not hex
      json::value(nullptr),
      json::value(12),
  };
  for (const auto& v : bad) {
    json::object rec = record();
    rec["archive_sha256"] = v;
    EXPECT_THAT(validate(rec), ElementsAre(HasSubstr("archive_sha256"))) << json::serialize(v);
    EXPECT_THAT(validate_record_shape(rec), ElementsAre(HasSubstr("archive_sha256"))) << json::serialize(v);
    EXPECT_FALSE(record_archive_sha256(rec).has_value()) << json::serialize(v);
  }
}

}  // namespace
}  // namespace carsync::core
