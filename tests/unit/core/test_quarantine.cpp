// Quarantine naming, digest input, backoff and records (spec §8.7, §12 item 18).
#include "core/quarantine.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace carsync::core {
namespace {

namespace json = boost::json;

const std::string digest_a = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

QuarantineFailure failure(double now, std::string stage = "extract") {
  return {"QmCid", 1714742401, digest_a, std::move(stage), "tar member outside manifest archive_paths", now};
}

TEST(Quarantine, BackoffDoublesFromSixtyAndReachesTheCap) {
  std::vector<double> got;
  for (int n = 1; n <= 9; ++n) got.push_back(quarantine_backoff(n));
  const std::vector<double> want{60, 120, 240, 480, 960, 1920, 3600, 3600, 3600};
  EXPECT_EQ(got, want);
  EXPECT_EQ(quarantine_backoff(1'000'000), 3600);
  EXPECT_EQ(quarantine_backoff(0), 60);  // never below the first step
}

TEST(Quarantine, FirstFailureRecordShape) {
  const json::object q = next_quarantine_record(nullptr, failure(1714742400.0));
  const json::object want{
      {"cid", "QmCid"},
      {"version", 1714742401},
      {"manifest_digest", digest_a},
      {"stage", "extract"},
      {"error", "tar member outside manifest archive_paths"},
      {"failure_count", 1},
      {"first_seen", 1714742400.0},
      {"last_failed", 1714742400.0},
      {"next_retry_after", 1714742460.0},
  };
  EXPECT_EQ(q, want);
}

TEST(Quarantine, RepeatedFailuresPreserveFirstSeenAndGrowToCap) {
  json::value previous = next_quarantine_record(nullptr, failure(1000.0));
  double now = 1000.0;
  std::vector<double> waits;
  for (int i = 0; i < 8; ++i) {
    now = previous.at("next_retry_after").as_double() + 5.0;
    json::object q = next_quarantine_record(&previous, failure(now, "r1fs_download"));
    EXPECT_EQ(q.at("first_seen"), 1000.0);
    EXPECT_EQ(q.at("last_failed"), now);
    EXPECT_EQ(q.at("failure_count"), i + 2);
    EXPECT_EQ(q.at("stage"), "r1fs_download");
    waits.push_back(q.at("next_retry_after").as_double() - now);
    previous = std::move(q);
  }
  const std::vector<double> want{120, 240, 480, 960, 1920, 3600, 3600, 3600};
  EXPECT_EQ(waits, want);
}

TEST(Quarantine, UnusablePreviousFileStartsAFreshCount) {
  const json::value not_object = json::array{1, 2};
  EXPECT_EQ(next_quarantine_record(&not_object, failure(50.0)).at("failure_count"), 1);

  const json::value bad_fields = json::object{{"failure_count", "7"}, {"first_seen", "yesterday"}};
  const json::object q = next_quarantine_record(&bad_fields, failure(50.0));
  EXPECT_EQ(q.at("failure_count"), 1);
  EXPECT_EQ(q.at("first_seen"), 50.0);
}

TEST(Quarantine, ActiveOnlyBeforeNumericNextRetryAfter) {
  const json::value q = next_quarantine_record(nullptr, failure(1000.0));
  EXPECT_TRUE(quarantine_active(q, 1000.0));
  EXPECT_TRUE(quarantine_active(q, 1059.9));
  EXPECT_FALSE(quarantine_active(q, 1060.0));
  EXPECT_TRUE(quarantine_active(json::object{{"next_retry_after", 2000}}, 1999.0));
  EXPECT_FALSE(quarantine_active(json::object{{"next_retry_after", "2000"}}, 1.0));
  EXPECT_FALSE(quarantine_active(json::object{{"next_retry_after", true}}, 0.0));
  EXPECT_FALSE(quarantine_active(json::object{}, 1.0));
  EXPECT_FALSE(quarantine_active(json::value("next_retry_after"), 1.0));
}

TEST(Quarantine, FileNameUsesSafeCidAndSixteenDigestDigits) {
  EXPECT_EQ(quarantine_file_name("QmCid", digest_a), "QmCid__0123456789abcdef.json");
  EXPECT_EQ(quarantine_file_name("../etc/passwd", digest_a), "___etc_passwd__0123456789abcdef.json");
  EXPECT_EQ(quarantine_file_name("", digest_a), "no_cid__0123456789abcdef.json");
  EXPECT_EQ(quarantine_file_name(nullptr, digest_a), "no_cid__0123456789abcdef.json");
}

TEST(Quarantine, SafeCidIsTruncatedToThirtyTwoCharacters) {
  const std::string long_cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
  EXPECT_EQ(quarantine_safe_cid(json::value(long_cid)), long_cid.substr(0, 32));
  // A multi-byte character is one character and becomes one '_'.
  EXPECT_EQ(quarantine_safe_cid(json::value("Qm\xC3\xA9x")), "Qm_x");
  EXPECT_EQ(quarantine_safe_cid(json::value(12345)), "12345");
}

TEST(Quarantine, DigestInputIsCanonicalJsonOfCidAndManifest) {
  const json::object manifest{{"schema_version", 1}, {"archive_paths", json::array{"/app/data/"}}};
  EXPECT_EQ(quarantine_digest_input("QmCid", manifest),
            R"({"cid":"QmCid","manifest":{"archive_paths":["/app/data/"],"schema_version":1}})");
  const json::value record = json::object{{"cid", "QmCid"}, {"version", 3}, {"manifest", manifest}};
  EXPECT_EQ(quarantine_digest_input(record), quarantine_digest_input("QmCid", manifest));
}

TEST(Quarantine, RepublishWithDifferentManifestGetsAnotherSlot) {
  const json::value a = json::object{{"cid", "QmCid"}, {"manifest", json::object{{"archive_paths", json::array{"/a"}}}}};
  const json::value b = json::object{{"cid", "QmCid"}, {"manifest", json::object{{"archive_paths", json::array{"/b"}}}}};
  EXPECT_NE(quarantine_digest_input(a), quarantine_digest_input(b));
}

TEST(Quarantine, FalsyOrMissingManifestCountsAsEmptyObject) {
  const json::value missing = json::object{{"cid", "QmCid"}};
  const json::value null_manifest = json::object{{"cid", "QmCid"}, {"manifest", nullptr}};
  const json::value empty_string = json::object{{"cid", "QmCid"}, {"manifest", ""}};
  EXPECT_EQ(quarantine_digest_input(missing), R"({"cid":"QmCid","manifest":{}})");
  EXPECT_EQ(quarantine_digest_input(null_manifest), quarantine_digest_input(missing));
  EXPECT_EQ(quarantine_digest_input(empty_string), quarantine_digest_input(missing));
  // A truthy non-object manifest is hashed as it is.
  const json::value text = json::object{{"cid", "QmCid"}, {"manifest", "zip"}};
  EXPECT_EQ(quarantine_digest_input(text), R"({"cid":"QmCid","manifest":"zip"})");
}

}  // namespace
}  // namespace carsync::core
