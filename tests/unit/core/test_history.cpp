#include "core/history.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace carsync::core {
namespace {

namespace json = boost::json;

HistoryEntry entry(std::string cid, std::int64_t version, std::optional<std::int64_t> written_ns,
                   std::optional<std::int64_t> sequence = std::nullopt, std::int64_t mtime_ns = 0) {
  json::object body = {{"cid", cid}, {"version", version}, {"deletion", null_deletion()}};
  if (written_ns) body["history_written_at_ns"] = *written_ns;
  if (sequence) body["sequence"] = *sequence;
  return {history_file_name(version, cid), std::move(body), mtime_ns};
}

HistoryEntry retired(HistoryEntry e) {
  e.body["deletion"] = deletion_result(1714742500.5, true, std::nullopt);
  return e;
}

std::vector<std::string> cids(const std::vector<HistoryEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.emplace_back(e.body.at("cid").as_string());
  return out;
}

TEST(History, D36_NamePadsVersionAndTruncatesCid) {
  EXPECT_EQ(history_file_name(1714742400, "QmHash1234567890ABCDEF"), "1714742400__QmHash123456.json");
}

TEST(History, D37_ShortCidKept) { EXPECT_EQ(history_file_name(7, "Qm"), "0000000007__Qm.json"); }

TEST(History, D38_EmptyCidIsNoCid) { EXPECT_EQ(history_file_name(7, ""), "0000000007__no_cid.json"); }

TEST(History, NameReplacesNonAlphanumerics) {
  EXPECT_EQ(history_file_name(1, "a/b.c-d_e"), "0000000001__a_b_c_d_e.json");
  // One multi-byte character is one character of the 12 and one '_'.
  EXPECT_EQ(history_file_name(1, "\xC3\xA9" "bcdefghijklmn"), "0000000001___bcdefghijkl.json");
}

TEST(History, DirNames) {
  EXPECT_EQ(to_string(HistoryDir::sent), "sent");
  EXPECT_EQ(to_string(HistoryDir::received), "received");
}

TEST(History, SequenceOrdersBeforeWallClock) {
  // A wall-clock step backwards must not reorder entries that carry a sequence.
  std::vector<HistoryEntry> v = {entry("B", 2, 100, 2), entry("A", 1, 900, 1)};
  sort_by_write_order(v);
  EXPECT_EQ(cids(v), (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(max_sequence(v), 2);
}

TEST(History, ReferenceEntriesOrderByWrittenNsThenMtime) {
  std::vector<HistoryEntry> v = {entry("late", 1, 300), entry("mtime", 9, std::nullopt, std::nullopt, 200),
                                 entry("early", 5, 100)};
  sort_by_write_order(v);
  EXPECT_EQ(cids(v), (std::vector<std::string>{"early", "mtime", "late"}));
  EXPECT_EQ(max_sequence(v), 0);
}

TEST(History, UnsequencedEntriesPredateSequencedOnes) {
  std::vector<HistoryEntry> v = {entry("new", 1, 10, 1), entry("ref", 1, 999)};
  sort_by_write_order(v);
  EXPECT_EQ(cids(v), (std::vector<std::string>{"ref", "new"}));
}

TEST(History, OrderKeyFallsBackToMtimeForNonIntegerTimestamps) {
  HistoryEntry e = entry("x", 1, std::nullopt, std::nullopt, 42);
  e.body["history_written_at_ns"] = 1.5;
  e.body["sequence"] = "3";
  EXPECT_EQ(order_key(e), (OrderKey{-1, 42}));
}

TEST(History, RetirementNeedsTwoEntries) {
  EXPECT_EQ(retirement_target({}), std::nullopt);
  EXPECT_EQ(retirement_target({entry("A", 1, 1)}), std::nullopt);
}

TEST(History, RetirementPicksThePreviousEntry) {
  EXPECT_EQ(retirement_target({entry("A", 1, 1), entry("B", 2, 2)}), 0u);
}

TEST(History, RetirementSkipsSameCidAndRetiredEntries) {
  const std::vector<HistoryEntry> v = {entry("A", 1, 1), retired(entry("B", 2, 2)), entry("C", 3, 3),
                                       entry("C", 4, 4)};
  EXPECT_EQ(retirement_target(v), 0u);
  EXPECT_EQ(retirement_target({retired(entry("A", 1, 1)), entry("B", 2, 2)}), std::nullopt);
  EXPECT_EQ(retirement_target({entry("B", 1, 1), entry("B", 2, 2)}), std::nullopt);
}

TEST(History, RetirementStopsAtAnEmptyCid) {
  EXPECT_EQ(retirement_target({entry("A", 1, 1), entry("", 2, 2), entry("C", 3, 3)}), std::nullopt);
}

TEST(History, FailedRetirementIsPickedAgain) {
  HistoryEntry failed = entry("A", 1, 1);
  failed.body["deletion"] = deletion_result(std::nullopt, false, "store down");
  EXPECT_EQ(retirement_target({failed, entry("B", 2, 2)}), 0u);
}

TEST(History, RetirementTargetsEveryEarlierUnretiredCid) {
  const std::vector<HistoryEntry> v = {entry("A", 1, 1), retired(entry("B", 2, 2)), entry("C", 3, 3),
                                       entry("D", 4, 4), entry("D", 5, 5)};
  EXPECT_EQ(retirement_targets(v), (std::vector<std::size_t>{2, 0}));
  EXPECT_TRUE(retirement_targets({entry("A", 1, 1)}).empty());
  EXPECT_TRUE(retirement_targets({entry("A", 1, 1), entry("", 2, 2), entry("C", 3, 3)}).empty());
}

TEST(History, G94_RetirementFollowsWriteOrderNotVersion) {
  // The higher version was written first; the lower version is the latest write.
  std::vector<HistoryEntry> v = {entry("Low", 100, 2000, 2), entry("High", 900, 1000, 1)};
  sort_by_write_order(v);
  const auto target = retirement_target(v);
  ASSERT_TRUE(target);
  EXPECT_EQ(v[*target].body.at("cid"), "High");
}

TEST(History, DeletionRecords) {
  EXPECT_EQ(null_deletion(),
            (json::object{{"deleted_at", nullptr}, {"deletion_succeeded", nullptr}, {"deletion_error", nullptr}}));
  EXPECT_EQ(deletion_result(12.5, true, std::nullopt),
            (json::object{{"deleted_at", 12.5}, {"deletion_succeeded", true}, {"deletion_error", nullptr}}));
  EXPECT_EQ(deletion_result(std::nullopt, false, "boom"),
            (json::object{{"deleted_at", nullptr}, {"deletion_succeeded", false}, {"deletion_error", "boom"}}));
}

HistoryEntry failed_deletion(HistoryEntry e) {
  e.body["deletion"] = deletion_result(std::nullopt, false, std::string("store down"));
  return e;
}

// Spec §12 item 7: history grows without bound in the reference. What may go, keep = 2.
TEST(HistoryPrune, KeepsTheNewestAndEverythingStillAwaitingRetirement) {
  struct Case {
    const char* name;
    std::vector<HistoryEntry> sorted;
    std::vector<std::size_t> expected;
  };
  const std::vector<Case> cases = {
      {"no more than keep", {retired(entry("A", 1, 1)), entry("B", 2, 2)}, {}},
      {"retired beyond keep go", {retired(entry("A", 1, 1)), retired(entry("B", 2, 2)), retired(entry("C", 3, 3)), entry("D", 4, 4)}, {0, 1}},
      {"awaiting retirement stays", {entry("A", 1, 1), retired(entry("B", 2, 2)), retired(entry("C", 3, 3)), entry("D", 4, 4)}, {1}},
      {"failed deletion stays: the next pass retries it", {failed_deletion(entry("A", 1, 1)), retired(entry("B", 2, 2)), entry("C", 3, 3), entry("D", 4, 4)}, {1}},
      {"same CID as a newer entry goes", {entry("D", 1, 1), entry("D", 2, 2), entry("D", 3, 3), entry("D", 4, 4)}, {0, 1}},
      {"no CID goes", {entry("", 1, 1), entry("B", 2, 2), entry("C", 3, 3)}, {0}},
      {"the newest keep stay even if retired", {retired(entry("A", 1, 1)), retired(entry("B", 2, 2))}, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(prunable(c.sorted, 2), c.expected);
  }
}

// Pruning never changes what retirement picks next.
TEST(HistoryPrune, RetirementTargetSurvivesPruning) {
  std::vector<HistoryEntry> sorted;
  for (int i = 0; i < 40; ++i) sorted.push_back(i % 3 == 0 ? entry("X" + std::to_string(i), i, i) : retired(entry("R" + std::to_string(i), i, i)));
  sorted.push_back(entry("LATEST", 99, 99));
  const auto target = retirement_target(sorted);
  ASSERT_TRUE(target);
  const auto doomed = prunable(sorted, 2);
  EXPECT_EQ(std::count(doomed.begin(), doomed.end(), *target), 0);
  std::vector<HistoryEntry> kept;
  for (std::size_t i = 0; i < sorted.size(); ++i)
    if (std::find(doomed.begin(), doomed.end(), i) == doomed.end()) kept.push_back(sorted[i]);
  EXPECT_EQ(cids({kept[*retirement_target(kept)]}), cids({sorted[*target]}));
}

}  // namespace
}  // namespace carsync::core

namespace carsync::core {
namespace {

// A sent entry of delta serial `serial` with its index and pack, and the packs its record names.
HistoryEntry delta_entry(std::int64_t version, std::int64_t seq, std::uint64_t serial,
                         std::vector<std::string> record_packs, bool with_pack = true) {
  auto e = entry("QmArchive" + std::to_string(serial), version, std::nullopt, seq);
  json::object d{{"serial", serial},
                 {"index", json::object{{"cid", "QmIndex" + std::to_string(serial)}, {"size", 1}}}};
  if (with_pack) d["pack"] = json::object{{"cid", "QmPack" + std::to_string(serial)}, {"size", 1}};
  json::array named;
  for (auto& p : record_packs) named.emplace_back(p);
  d["record_packs"] = std::move(named);
  e.body["delta"] = std::move(d);
  return e;
}

std::vector<std::string> targets_of(const std::vector<HistoryEntry>& sorted) {
  std::vector<std::string> out;
  for (const auto& t : delta_retirement_targets(sorted)) out.push_back(t.part + ":" + t.cid);
  return out;
}

TEST(HistoryDelta, TheNewestRecordsIndexAndPacksAreKeptEveryOtherGoes) {
  const std::vector<HistoryEntry> h{
      delta_entry(1, 1, 1, {"QmPack1"}),
      delta_entry(2, 2, 2, {"QmPack1", "QmPack2"}),
      delta_entry(3, 3, 3, {"QmPack2", "QmPack3"}),  // K = 2: pack 1 left the window
  };
  EXPECT_EQ(targets_of(h), (std::vector<std::string>{"index:QmIndex1", "pack:QmPack1", "index:QmIndex2"}));
}

TEST(HistoryDelta, DeletedObjectsAreNotPickedAgainAndAFailedOneIs) {
  auto old = delta_entry(1, 1, 1, {"QmPack1"});
  old.body["delta"].as_object()["index"].as_object()["deleted_at"] = 17.0;
  old.body["delta"].as_object()["pack"].as_object()["deletion_error"] = "store down";  // retried
  const std::vector<HistoryEntry> h{old, delta_entry(2, 2, 2, {"QmPack2"})};
  EXPECT_EQ(targets_of(h), (std::vector<std::string>{"pack:QmPack1"}));
}

TEST(HistoryDelta, ANewestEntryWithoutDeltaRetiresEveryDeltaObject) {
  const std::vector<HistoryEntry> h{delta_entry(1, 1, 1, {"QmPack1"}), entry("QmPlain", 2, std::nullopt, 2)};
  EXPECT_EQ(targets_of(h), (std::vector<std::string>{"index:QmIndex1", "pack:QmPack1"}));
}

TEST(HistoryDelta, AVersionWithoutPackAndADuplicatedPackCidAreHandled) {
  // Serial 2's pack has the same bytes (so the same CID) as serial 1's: it is still named.
  auto two = delta_entry(2, 2, 2, {"QmPack1"}, false);
  const std::vector<HistoryEntry> h{delta_entry(1, 1, 1, {"QmPack1"}), two};
  EXPECT_EQ(targets_of(h), (std::vector<std::string>{"index:QmIndex1"}));
}

TEST(HistoryDelta, AnEntryWithLiveDeltaObjectsIsNeverPruned) {
  std::vector<HistoryEntry> h;
  for (std::int64_t i = 1; i <= 5; ++i) h.push_back(retired(delta_entry(i, i, static_cast<std::uint64_t>(i), {})));
  // Entry 1's objects were deleted; entry 2's pack is still live (a failed delete, say).
  for (const char* part : {"index", "pack"}) h[0].body["delta"].as_object()[part].as_object()["deleted_at"] = 1.0;
  h[1].body["delta"].as_object()["index"].as_object()["deleted_at"] = 1.0;
  for (int i = 2; i < 5; ++i)
    for (const char* part : {"index", "pack"}) h[i].body["delta"].as_object()[part].as_object()["deleted_at"] = 1.0;
  EXPECT_TRUE(delta_pending(h[1]));
  EXPECT_FALSE(delta_pending(h[0]));
  EXPECT_EQ(prunable(h, 2), (std::vector<std::size_t>{0, 2}));
}

}  // namespace
}  // namespace carsync::core

namespace carsync::core {
namespace {

TEST(HistoryDelta, AReplacedEntrysObjectsAreCarriedAndRetired) {
  // Two publishes of one snapshot in one second: the second entry replaces the first file.
  auto first = delta_entry(7, 7, 7, {"QmPack7"});
  auto second = delta_entry(7, 8, 8, {"QmPack7", "QmPack8"});
  carry_replaced_delta(first.body, second.body);
  const auto& replaced = second.body.at("delta").at("replaced").as_array();
  ASSERT_EQ(replaced.size(), 2u);  // index 7 and pack 7
  EXPECT_EQ(replaced[0].at("cid"), "QmIndex7");
  EXPECT_TRUE(delta_pending(second));
  // Pack 7 is still named by the new record: only index 7 goes, from the newest entry.
  EXPECT_EQ(targets_of({second}), (std::vector<std::string>{"replaced/0:QmIndex7"}));
  // Carried again by a third replacement, deleted ones are not.
  auto third = delta_entry(7, 9, 9, {});
  second.body["delta"].as_object()["replaced"].as_array()[1].as_object()["deleted_at"] = 3.0;
  carry_replaced_delta(second.body, third.body);
  std::vector<std::string> cids;
  for (const auto& o : third.body.at("delta").at("replaced").as_array()) cids.emplace_back(o.at("cid").as_string());
  EXPECT_EQ(cids, (std::vector<std::string>{"QmIndex8", "QmPack8", "QmIndex7"}));
}

TEST(HistoryDelta, NothingIsCarriedWhenTheObjectsAreTheSame) {
  auto first = delta_entry(7, 7, 7, {"QmPack7"});
  auto same = first;
  carry_replaced_delta(first.body, same.body);
  EXPECT_FALSE(same.body.at("delta").as_object().contains("replaced"));
}

}  // namespace
}  // namespace carsync::core
