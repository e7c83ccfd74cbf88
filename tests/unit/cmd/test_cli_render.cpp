#include "cmd/cli_render.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

namespace carsync::cmd {
namespace {

namespace json = boost::json;

json::object obj(std::string_view text) { return json::parse(text).as_object(); }

// A provider status as the API serves it, with `extra` members replacing the defaults.
json::object status(std::string_view id, std::string_view extra = "") {
  auto s = obj(R"({"id":"ID","role":"provider","enabled":true,"config_error":null,"phase":"idle",
      "progress":{"done":0,"total":0},"requests_ok":1,"requests_failed":0,
      "last_cid":"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi","last_error":null,"error":null,
      "last_publish":{"cid":"bafy","version":1000,"time":1000.0,"size":4194304},"last_apply":null,
      "quarantine":null,"halted":false,"last_duration_s":0.4,"generation":3,"source":"file"})");
  s["id"] = id;
  if (!extra.empty())
    for (auto& [k, v] : obj(extra)) s[k] = v;
  return s;
}

TEST(HumanUnits, Bytes) {
  EXPECT_EQ(human_bytes(0), "0 B");
  EXPECT_EQ(human_bytes(1023), "1023 B");
  EXPECT_EQ(human_bytes(1024), "1.0 KiB");
  EXPECT_EQ(human_bytes(1536), "1.5 KiB");
  EXPECT_EQ(human_bytes(4 * 1024 * 1024), "4.0 MiB");
  EXPECT_EQ(human_bytes(1024 * 1024 - 1), "1.0 MiB");  // not "1024.0 KiB"
  EXPECT_EQ(human_bytes(std::uint64_t{5} << 40), "5.0 TiB");
}

TEST(HumanUnits, RatesAndAges) {
  EXPECT_EQ(human_rate(1.5 * 1024 * 1024), "1.5 MiB/s");
  EXPECT_EQ(human_rate(-1), "-");
  EXPECT_EQ(human_age(0.4), "0s");
  EXPECT_EQ(human_age(59.9), "59s");
  EXPECT_EQ(human_age(65), "1m05s");
  EXPECT_EQ(human_age(2 * 3600 + 3 * 60 + 9), "2h03m");
  EXPECT_EQ(human_age(3 * 86400 + 4 * 3600), "3d04h");
  EXPECT_EQ(human_age(-5), "-");
  EXPECT_EQ(cid_prefix("bafybeigdyrzt5sfp7udm7hu76"), "bafybeigdyrz");
  EXPECT_EQ(cid_prefix(""), "-");
}

TEST(InstanceState, FirstThatHoldsWins) {
  EXPECT_EQ(instance_state(status("a")), "ok");
  EXPECT_EQ(instance_state(status("a", R"({"enabled":false,"phase":"disabled"})")), "disabled");
  EXPECT_EQ(instance_state(status("a", R"({"halted":true,"quarantine":{"cid":"x"}})")), "halted");
  EXPECT_EQ(instance_state(status("a", R"({"quarantine":{"cid":"x","stage":"extract"}})")), "quarantined");
  EXPECT_EQ(instance_state(status("a", R"({"quarantine":{"cid":"x","stage":"signature"}})")), "untrusted");
  // A failure after the last success is "failing"; one before it is history.
  EXPECT_EQ(instance_state(status("a", R"({"error":{"stage":"r1fs_upload","message":"m","time":2000.0}})")), "failing");
  EXPECT_EQ(instance_state(status("a", R"({"error":{"stage":"r1fs_upload","message":"m","time":500.0}})")), "ok");
  EXPECT_EQ(instance_state(status("a", R"({"last_publish":null,"error":{"stage":"config","time":1.0}})")), "failing");
}

TEST(ProgressBar, FillsInProportionAndKeepsItsWidth) {
  EXPECT_EQ(progress_bar(0, 100, 12), "[----------]");
  EXPECT_EQ(progress_bar(50, 100, 12), "[#####-----]");
  EXPECT_EQ(progress_bar(100, 100, 12), "[##########]");
  EXPECT_EQ(progress_bar(500, 100, 12), "[##########]");  // never past full
  EXPECT_EQ(progress_bar(0, 0, 8), "[------]");          // total unknown, nothing done yet
  EXPECT_EQ(progress_bar(7, 0, 8), "[<=>---]");          // total unknown: moves per MiB
  EXPECT_EQ(progress_bar(std::uint64_t{2} << 20, 0, 8), "[--<=>-]");
  EXPECT_EQ(progress_bar(std::uint64_t{4} << 20, 0, 8), "[<=>---]");  // wraps around
  EXPECT_EQ(progress_bar(1, 2, 0).size(), 3u);
}

TEST(Table, ColumnsLineUp) {
  EXPECT_EQ(render_table({{"A", "BB"}, {"ccc", "d"}}), "A    BB\nccc  d\n");
}

TEST(StatusTable, OneRowPerInstanceWithAgeSizeCidAndState) {
  json::object node{{"node_id", "n1"}, {"instances", json::array{status("app-1"), status("app-2", R"({"halted":true,"role":"consumer","last_publish":null,"last_apply":null,"last_cid":null})")}}};
  const std::string out = render_status(node, 1065.0);
  EXPECT_EQ(out,
            "INSTANCE  ROLE      PHASE  LAST SYNC  SIZE     CID           STATE\n"
            "app-1     provider  idle   1m05s ago  4.0 MiB  bafybeigdyrz  ok\n"
            "app-2     consumer  idle   never      -        -             halted\n");
}

TEST(HistoryTable, SentThenReceivedWithUtcTimes) {
  auto h = obj(R"({"sent":[{"cid":"bafyA","version":1764489600,"history_written_at_ns":1764489600500000000,
                   "manifest":{"archive_size_bytes":2048}}],
                   "received":[{"cid":"bafyB","version":7,"timestamp":1764489601.0}]})");
  EXPECT_EQ(render_history(h),
            "DIR       WRITTEN               VERSION     CID    SIZE\n"
            "sent      2025-11-30T08:00:00Z  1764489600  bafyA  2.0 KiB\n"
            "received  2025-11-30T08:00:01Z  7           bafyB  -\n");
}

TEST(WatchModel, InFlightLinesShowBarBytesAndRate) {
  WatchModel m;
  json::object node{{"node_id", "n1"}, {"instances", json::array{status("idle-one"), status("busy")}}};
  m.snapshot(node, 100.0);
  m.update(json::object{{"generation", 4}, {"removed", false},
                        {"instance", status("busy", R"({"phase":"uploading","progress":{"done":0,"total":4194304}})")}},
           100.0);
  m.update(json::object{{"generation", 5}, {"removed", false},
                        {"instance", status("busy", R"({"phase":"uploading","progress":{"done":2097152,"total":4194304}})")}},
           102.0);
  auto frame = m.frame(102.0, 120, 40);
  ASSERT_EQ(frame.size(), 3u);
  EXPECT_EQ(frame[0], "carsync n1: 2 instances, 1 in flight, 0 failing, 0 quarantined, 0 halted");
  // In-flight first: 2 MiB in 2 s is 1 MiB/s.
  EXPECT_NE(frame[1].find("busy             uploading   [#"), std::string::npos) << frame[1];
  EXPECT_NE(frame[1].find(" 50% 2.0 MiB / 4.0 MiB  1.0 MiB/s"), std::string::npos) << frame[1];
  EXPECT_EQ(frame[2].rfind("idle-one         idle        ok", 0), 0u) << frame[2];
  for (const auto& line : m.frame(102.0, 50, 40)) EXPECT_LE(line.size(), 50u) << line;
}

TEST(WatchModel, RemovedInstancesLeaveAndHeightIsRespected) {
  WatchModel m;
  json::array many;
  for (int i = 0; i < 10; ++i) many.push_back(status("i" + std::to_string(i)));
  m.snapshot(json::object{{"node_id", "n"}, {"instances", many}}, 1.0);
  auto frame = m.frame(1.0, 80, 5);
  ASSERT_EQ(frame.size(), 5u);
  EXPECT_EQ(frame.back(), "... 7 more");
  m.update(json::object{{"removed", true}, {"instance", status("i3")}}, 2.0);
  EXPECT_EQ(m.size(), 9u);
}

TEST(WatchModel, ChangeLinesOnlyWhenSomethingChanged) {
  WatchModel m;
  m.snapshot(json::object{{"node_id", "n"}, {"instances", json::array{status("a")}}}, 1764489600.0);
  EXPECT_EQ(m.change_line("a", 1764489600.0),
            "2025-11-30T08:00:00Z a idle ok cid bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi");
  EXPECT_EQ(m.change_line("a", 1764489601.0), "");
  m.set(status("a", R"({"phase":"archiving","progress":{"done":1024,"total":0}})"), 1764489602.0);
  EXPECT_EQ(m.change_line("a", 1764489602.0), "2025-11-30T08:00:02Z a archiving ok 1.0 KiB");
  EXPECT_EQ(m.change_line("nobody", 1.0), "");
}

}  // namespace
}  // namespace carsync::cmd
