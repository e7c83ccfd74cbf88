// current_apply.json documents, the durable halt and dedupe (spec §8.1 step 3, §8.8).
#include "core/apply_state.hpp"
#include "core/json_text.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace carsync::core {
namespace {

namespace json = boost::json;

const ApplyIdentity id{"QmCid", 1714742401};

TEST(ApplyState, IdentityTakesRawCidAndVersion) {
  const ApplyIdentity got = identity_of(json::object{{"cid", "QmX"}, {"version", "7"}});
  EXPECT_EQ(got.cid, "QmX");
  EXPECT_EQ(got.version, "7");
  const ApplyIdentity none = identity_of(json::value("not a record"));
  EXPECT_TRUE(none.cid.is_null());
  EXPECT_TRUE(none.version.is_null());
}

TEST(ApplyState, PlainStatesCarryStateCidVersionTimestamp) {
  EXPECT_EQ(apply_state_document(ApplyState::preparing, id, 10.5),
            (json::object{{"state", "preparing"}, {"cid", "QmCid"}, {"version", 1714742401}, {"timestamp", 10.5}}));
  EXPECT_EQ(apply_state_document(ApplyState::applying, id, 11.0).at("state"), "applying");
}

TEST(ApplyState, FailedPreflightAddsStageAndError) {
  EXPECT_EQ(failed_preflight_state(id, 12.0, "r1fs_download", "not found"),
            (json::object{{"state", "failed_preflight"}, {"cid", "QmCid"}, {"version", 1714742401},
                          {"timestamp", 12.0}, {"stage", "r1fs_download"}, {"error", "not found"}}));
}

TEST(ApplyState, AppliedAddsExtractedPaths) {
  EXPECT_EQ(applied_state(id, 13.0, {"/app/data", "/app/data/weights.bin"}),
            (json::object{{"state", "applied"}, {"cid", "QmCid"}, {"version", 1714742401}, {"timestamp", 13.0},
                          {"extracted_paths", json::array{"/app/data", "/app/data/weights.bin"}}}));
}

// An archive may hold a million members; the state and history documents listing them
// must stay readable (max_json_file_bytes), so the list stops at a byte budget and says so.
TEST(ApplyState, ExtractedPathsStopAtTheBudgetAndSaySo) {
  std::vector<std::string> paths;
  for (int i = 0; i < 1'000'000; ++i) paths.push_back("/app/data/shard-" + std::to_string(i % 1000) + "/file-" + std::to_string(i));
  const auto doc = applied_state({json::value("Qm"), json::value(1)}, 5.0, paths);
  const auto& listed = doc.at("extracted_paths").as_array();
  EXPECT_GT(listed.size(), 50'000u);
  EXPECT_LT(listed.size(), paths.size());
  EXPECT_EQ(listed.back().as_string(), paths[listed.size() - 1]);
  EXPECT_EQ(doc.at("extracted_paths_truncated"), json::value(true));
  EXPECT_EQ(doc.at("extracted_count"), json::value(1'000'000));
  const auto text = to_reference_json_within(doc, max_json_file_bytes);
  ASSERT_TRUE(text.has_value());
  EXPECT_LT(text->size(), max_extracted_paths_bytes + 1024);

  const auto small = applied_state({json::value("Qm"), json::value(1)}, 5.0, {"/app/data", "/app/data/x"});
  EXPECT_EQ(small.at("extracted_paths").as_array().size(), 2u);
  EXPECT_FALSE(small.contains("extracted_paths_truncated"));
  EXPECT_FALSE(small.contains("extracted_count"));
}

TEST(ApplyState, RolledBackIsNotHalted) {
  const json::value doc = rolled_back_state(id, 14.0, "cannot replace directory with file: /app/data/x", {"/app/data"});
  EXPECT_EQ(doc, (json::object{{"state", "failed_rolled_back"}, {"cid", "QmCid"}, {"version", 1714742401},
                               {"timestamp", 14.0}, {"error", "cannot replace directory with file: /app/data/x"},
                               {"extracted_paths", json::array{"/app/data"}}}));
  EXPECT_FALSE(is_halted(&doc));
}

TEST(ApplyState, UncertainIsDurablyHaltedUntilCleared) {
  const json::value doc = uncertain_state(id, 15.0, "rollback incomplete", {});
  EXPECT_EQ(doc, (json::object{{"state", "uncertain"}, {"cid", "QmCid"}, {"version", 1714742401},
                               {"timestamp", 15.0}, {"error", "rollback incomplete"},
                               {"extracted_paths", json::array{}}, {"halted", true}}));
  EXPECT_TRUE(is_halted(&doc));

  const json::value cleared = clear_halt(doc.as_object(), 99.0);
  EXPECT_FALSE(is_halted(&cleared));
  EXPECT_EQ(cleared.at("state"), "uncertain");
  EXPECT_EQ(cleared.at("halt_cleared_at"), 99.0);
}

TEST(ApplyState, OnlyBooleanTrueHalts) {
  EXPECT_FALSE(is_halted(nullptr));
  const json::value text = json::object{{"halted", "true"}};
  const json::value not_object = json::array{true};
  EXPECT_FALSE(is_halted(&text));
  EXPECT_FALSE(is_halted(&not_object));
}

TEST(ApplyState, DedupeAppliedStateWinsOverHistory) {
  const json::value state = applied_state({"QmState", 1}, 1.0, {});
  const json::object history{{"cid", "QmHistory"}};
  EXPECT_EQ(dedupe_cid(&state, &history), "QmState");
  EXPECT_EQ(dedupe_cid(&state, nullptr), "QmState");
}

TEST(ApplyState, DedupeNonAppliedStateFallsBackToLatestHistory) {
  const json::object history{{"cid", "QmHistory"}};
  for (const json::value& state : {json::value(apply_state_document(ApplyState::preparing, {"QmNew", 2}, 1.0)),
                                   json::value(rolled_back_state({"QmNew", 2}, 1.0, "x", {})),
                                   json::value(uncertain_state({"QmNew", 2}, 1.0, "x", {}))}) {
    EXPECT_EQ(dedupe_cid(&state, &history), "QmHistory") << state;
    EXPECT_EQ(dedupe_cid(&state, nullptr), std::nullopt) << state;
  }
}

// A crash after `applied B` but before B's history entry, then an interrupted attempt at
// A: the carried-over applied_cid keeps dedupe on B instead of an older history entry.
TEST(ApplyState, DedupeNonAppliedStateUsesCarriedAppliedCidBeforeHistory) {
  const json::object older_history{{"cid", "QmOlder"}};
  json::object preparing = apply_state_document(ApplyState::preparing, {"QmA", 3}, 1.0);
  preparing["applied_cid"] = "QmB";
  const json::value state = preparing;
  EXPECT_EQ(dedupe_cid(&state, &older_history), "QmB");
  EXPECT_EQ(dedupe_cid(&state, nullptr), "QmB");
}

TEST(ApplyState, DedupeAppliedStateWithoutUsableCidFallsBack) {
  const json::object history{{"cid", "QmHistory"}};
  const json::value empty_cid = applied_state({"", 1}, 1.0, {});
  const json::value null_cid = applied_state({nullptr, 1}, 1.0, {});
  const json::value not_object = json::array{"applied"};
  EXPECT_EQ(dedupe_cid(&empty_cid, &history), "QmHistory");
  EXPECT_EQ(dedupe_cid(&null_cid, &history), "QmHistory");
  EXPECT_EQ(dedupe_cid(&not_object, &history), "QmHistory");
  EXPECT_EQ(dedupe_cid(nullptr, &history), "QmHistory");
}

TEST(ApplyState, DedupeWithNothingOrCidlessHistoryIsNone) {
  EXPECT_EQ(dedupe_cid(nullptr, nullptr), std::nullopt);
  const json::object cidless{{"version", 3}};
  EXPECT_EQ(dedupe_cid(nullptr, &cidless), std::nullopt);
}

}  // namespace
}  // namespace carsync::core
