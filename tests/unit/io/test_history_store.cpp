#include "io/history_store.hpp"

#include "core/apply_state.hpp"
#include "core/json_text.hpp"

#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using carsync::test::read_file;
using carsync::test::TempDir;
using carsync::test::write_file;
using core::HistoryDir;
using ::testing::HasSubstr;

json::object entry(std::int64_t version, std::string_view cid) {
  return {{"version", version}, {"cid", cid}, {"archive_paths", json::array{"/app/data/"}}};
}

json::object read_object(const fs::path& p) { return json::parse(read_file(p)).as_object(); }

// Routes the default logger into a string for the duration of one test.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

class HistoryStoreTest : public ::testing::Test {
 protected:
  TempDir tmp;
  fs::path root = tmp / "sync_history";
  HistoryStore store{root};
};

TEST_F(HistoryStoreTest, D39_SentAppendNameAndNullDeletion) {
  auto name = store.append(HistoryDir::sent, entry(1714742400, "QmHash1234567890ABCDEF"), 1234);
  ASSERT_TRUE(name) << name.error().message;
  EXPECT_EQ(*name, "1714742400__QmHash123456.json");

  const auto body = read_object(root / "sent" / *name);
  EXPECT_EQ(body.at("deletion"),
            (json::value{{"deleted_at", nullptr}, {"deletion_succeeded", nullptr}, {"deletion_error", nullptr}}));
  EXPECT_EQ(body.at("history_written_at_ns"), 1234);
  EXPECT_EQ(body.at("cid"), "QmHash1234567890ABCDEF");
  EXPECT_EQ(fs::status(root / "sent" / *name).permissions(), fs::perms(0644));
}

// A million extracted paths used to make an entry the reader's cap refused: the apply
// counted, but dedupe and retirement could never see it again.
TEST_F(HistoryStoreTest, EntryForAMillionExtractedPathsIsReadBack) {
  std::vector<std::string> paths;
  for (int i = 0; i < 1'000'000; ++i) paths.push_back("/app/data/shard-" + std::to_string(i % 1000) + "/file-" + std::to_string(i));
  auto e = entry(9, "QmMillion");
  core::put_extracted_paths(e, paths);
  ASSERT_TRUE(store.append(HistoryDir::received, e, 1));
  const auto entries = store.entries(HistoryDir::received);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].body.at("extracted_count"), json::value(1'000'000));
}

TEST_F(HistoryStoreTest, AnEntryNoReaderWouldAcceptIsNotWritten) {
  auto e = entry(10, "QmHuge");
  e["metadata"] = json::object{{"blob", std::string(core::max_json_file_bytes, 'x')}};
  auto name = store.append(HistoryDir::received, e, 1);
  ASSERT_FALSE(name);
  EXPECT_EQ(name.error().code, make_error_code(errc::limit_exceeded));
  EXPECT_TRUE(store.entries(HistoryDir::received).empty());
  EXPECT_TRUE(fs::is_empty(root / "received"));  // no temp file either
}

TEST_F(HistoryStoreTest, PruneRemovesRetiredEntriesBeyondKeepAndNumberingContinues) {
  for (int v = 1; v <= 6; ++v) {
    ASSERT_TRUE(store.append(HistoryDir::sent, entry(v, "Qm" + std::to_string(v)), v));
    if (v > 1) ASSERT_TRUE(store.record_deletion(HistoryDir::sent, v - 1, "Qm" + std::to_string(v - 1), 1.0, true, std::nullopt));
  }
  auto pruned = store.prune(HistoryDir::sent, 2);
  ASSERT_TRUE(pruned) << pruned.error().message;
  EXPECT_EQ(*pruned, 4u);
  auto left = store.entries(HistoryDir::sent);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].body.at("cid"), "Qm5");
  EXPECT_EQ(left[1].body.at("cid"), "Qm6");
  EXPECT_EQ(*store.prune(HistoryDir::sent, 2), 0u);

  HistoryStore reopened{root};
  ASSERT_TRUE(reopened.append(HistoryDir::sent, entry(7, "Qm7"), 7));
  EXPECT_EQ(reopened.latest(HistoryDir::sent)->body.at("sequence"), json::value(7));
}

TEST_F(HistoryStoreTest, D40_ReceivedAppendWritesUnderReceived) {
  auto name = store.append(HistoryDir::received, entry(7, "Qm"), 1);
  ASSERT_TRUE(name);
  EXPECT_EQ(*name, "0000000007__Qm.json");
  EXPECT_TRUE(fs::is_regular_file(root / "received/0000000007__Qm.json"));
  EXPECT_FALSE(fs::exists(root / "sent/0000000007__Qm.json"));
  EXPECT_EQ(store.dir_path(HistoryDir::received), root / "received");
}

TEST_F(HistoryStoreTest, D41_LatestIsMostRecentlyWrittenNotHighestVersion) {
  ASSERT_TRUE(store.append(HistoryDir::sent, entry(200, "QmHigh"), 1000));
  ASSERT_TRUE(store.append(HistoryDir::sent, entry(100, "QmLow"), 2000));
  const auto latest = store.latest(HistoryDir::sent);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->body.at("cid"), "QmLow");
  EXPECT_EQ(latest->file_name, "0000000100__QmLow.json");
}

TEST_F(HistoryStoreTest, D42_LatestOnEmptyHistoryIsNone) {
  EXPECT_FALSE(store.latest(HistoryDir::sent));
  EXPECT_FALSE(store.latest(HistoryDir::received));
  fs::create_directories(root / "sent");
  EXPECT_FALSE(store.latest(HistoryDir::sent));
}

TEST_F(HistoryStoreTest, D43_DeletionSuccessSetsFieldsAndPreservesOthers) {
  ASSERT_TRUE(store.append(HistoryDir::sent, entry(5, "QmOld"), 1000));
  const auto path = root / "sent/0000000005__QmOld.json";
  const auto before = read_object(path);

  const double start = 1714742400.5;
  ASSERT_TRUE(store.record_deletion(HistoryDir::sent, 5, "QmOld", start + 1.25, true, std::nullopt));

  auto after = read_object(path);
  const auto& deletion = after.at("deletion").as_object();
  EXPECT_GT(deletion.at("deleted_at").as_double(), start);
  EXPECT_EQ(deletion.at("deletion_succeeded"), true);
  EXPECT_TRUE(deletion.at("deletion_error").is_null());

  after.erase("deletion");
  auto expected = before;
  expected.erase("deletion");
  EXPECT_EQ(after, expected);  // history_written_at_ns and sequence included
}

TEST_F(HistoryStoreTest, D44_DeletionFailureStoresError) {
  ASSERT_TRUE(store.append(HistoryDir::received, entry(5, "QmOld"), 1000));
  ASSERT_TRUE(store.record_deletion(HistoryDir::received, 5, "QmOld", std::nullopt, false, "unpin failed"));
  const auto deletion = read_object(root / "received/0000000005__QmOld.json").at("deletion");
  EXPECT_TRUE(deletion.at("deleted_at").is_null());
  EXPECT_EQ(deletion.at("deletion_succeeded"), false);
  EXPECT_EQ(deletion.at("deletion_error"), "unpin failed");
}

TEST_F(HistoryStoreTest, D45_DeletionUpdateForMissingFileLogsAndSucceeds) {
  CapturedLog log;
  EXPECT_TRUE(store.record_deletion(HistoryDir::sent, 9, "QmGone", 1.0, true, std::nullopt));
  ASSERT_TRUE(store.append(HistoryDir::sent, entry(1, "QmOther"), 1));
  EXPECT_TRUE(store.record_deletion(HistoryDir::sent, 9, "QmGone", 1.0, true, std::nullopt));
  EXPECT_THAT(log.text(), HasSubstr("history file missing"));
  EXPECT_FALSE(fs::exists(root / "sent/0000000009__QmGone.json"));
}

TEST_F(HistoryStoreTest, SequenceContinuesAfterReopeningStore) {
  ASSERT_TRUE(store.append(HistoryDir::sent, entry(1, "QmA"), 100));
  ASSERT_TRUE(store.append(HistoryDir::sent, entry(2, "QmB"), 200));
  const auto second_seq = read_object(root / "sent/0000000002__QmB.json").at("sequence").as_int64();

  HistoryStore reopened{root};
  ASSERT_TRUE(reopened.append(HistoryDir::sent, entry(3, "QmC"), 300));
  EXPECT_EQ(read_object(root / "sent/0000000003__QmC.json").at("sequence").as_int64(), second_seq + 1);
  // Each directory counts on its own.
  ASSERT_TRUE(reopened.append(HistoryDir::received, entry(1, "QmA"), 400));
  EXPECT_EQ(read_object(root / "received/0000000001__QmA.json").at("sequence").as_int64(), 1);
}

TEST_F(HistoryStoreTest, OrderFollowsSequenceWhenWallClockStepsBack) {
  ASSERT_TRUE(store.append(HistoryDir::sent, entry(1, "QmFirst"), 5'000'000'000));
  ASSERT_TRUE(store.append(HistoryDir::sent, entry(2, "QmSecond"), 1'000'000'000));
  ASSERT_TRUE(store.append(HistoryDir::sent, entry(3, "QmThird"), 3'000'000'000));

  const auto all = store.entries(HistoryDir::sent);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].body.at("cid"), "QmFirst");
  EXPECT_EQ(all[1].body.at("cid"), "QmSecond");
  EXPECT_EQ(all[2].body.at("cid"), "QmThird");
  EXPECT_EQ(store.latest(HistoryDir::sent)->body.at("cid"), "QmThird");
}

TEST_F(HistoryStoreTest, EntriesSkipUnparseableFilesAndTemps) {
  ASSERT_TRUE(store.append(HistoryDir::sent, entry(1, "QmA"), 100));
  write_file(root / "sent/0000000002__broken.json", "{not json");
  write_file(root / "sent/0000000003__array.json", "[1]");
  write_file(root / "sent/.0000000004__tmp.json.0123456789abcdef.tmp", "{}");
  const auto all = store.entries(HistoryDir::sent);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].file_name, "0000000001__QmA.json");
}

TEST_F(HistoryStoreTest, AppendKeepsExistingDeletionAndRejectsMissingVersion) {
  auto e = entry(4, "QmD");
  e["deletion"] = json::object{{"deleted_at", 1.5}, {"deletion_succeeded", true}, {"deletion_error", nullptr}};
  ASSERT_TRUE(store.append(HistoryDir::sent, e, 10));
  EXPECT_EQ(read_object(root / "sent/0000000004__QmD.json").at("deletion").at("deleted_at"), 1.5);

  auto no_version = store.append(HistoryDir::sent, json::object{{"cid", "QmX"}}, 10);
  ASSERT_FALSE(no_version);
  EXPECT_EQ(no_version.error().code, make_error_code(errc::invalid_record));
}

}  // namespace
}  // namespace carsync::io

namespace carsync::io {
namespace {

json::object with_delta(std::int64_t version, std::string_view cid, std::string_view index, std::string_view pack) {
  auto e = entry(version, cid);
  e["delta"] = json::object{{"serial", 1},
                            {"index", json::object{{"cid", index}, {"size", 1}}},
                            {"pack", json::object{{"cid", pack}, {"size", 1}}},
                            {"record_packs", json::array{pack}}};
  return e;
}

TEST_F(HistoryStoreTest, ASecondPublishInTheSameSecondCarriesTheFirstsDeltaObjects) {
  auto first = store.append(HistoryDir::sent, with_delta(1714742400, "QmSame", "QmIndexA", "QmPackA"), 1);
  auto second = store.append(HistoryDir::sent, with_delta(1714742400, "QmSame", "QmIndexB", "QmPackB"), 2);
  ASSERT_TRUE(first && second);
  ASSERT_EQ(*first, *second);  // the reference's name: one file
  const auto body = read_object(root / "sent" / *second);
  const auto& replaced = body.at("delta").at("replaced").as_array();
  ASSERT_EQ(replaced.size(), 2u);
  EXPECT_EQ(replaced[0].at("cid"), "QmIndexA");
  EXPECT_EQ(replaced[1].at("cid"), "QmPackA");
  // Their deletion is recorded in place.
  ASSERT_TRUE(store.record_delta_deletion(HistoryDir::sent, *second, "replaced/1", 5.0, std::nullopt));
  ASSERT_TRUE(store.record_delta_deletion(HistoryDir::sent, *second, "index", std::nullopt, "store down"));
  const auto after = read_object(root / "sent" / *second);
  EXPECT_EQ(after.at("delta").at("replaced").at(1).at("deleted_at"), 5.0);
  EXPECT_EQ(after.at("delta").at("index").at("deletion_error"), "store down");
  EXPECT_FALSE(store.record_delta_deletion(HistoryDir::sent, *second, "replaced/9", 5.0, std::nullopt));
  EXPECT_FALSE(store.record_delta_deletion(HistoryDir::sent, *second, "replaced/x", 5.0, std::nullopt));
}

}  // namespace
}  // namespace carsync::io
