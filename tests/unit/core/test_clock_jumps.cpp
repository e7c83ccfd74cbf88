// Wall-clock steps backwards and forwards (issue 8 item 5), table-driven over the pieces of
// core that take time as input: a step may shorten or end a wait (one early retry at most),
// never stretch it by the length of the step; history order and the retirement choice do
// not depend on the wall clock at all.
#include "core/history.hpp"
#include "core/hsync_gate.hpp"
#include "core/quarantine.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace carsync::core {
namespace {

namespace json = boost::json;

constexpr double t0 = 1714742400.0;
constexpr double day = 86400.0;

json::object failed_at(double now, const json::value* previous = nullptr) {
  QuarantineFailure f;
  f.cid = "bafkx";
  f.version = 1;
  f.manifest_digest = std::string(64, 'a');
  f.stage = "r1fs_download";
  f.error = "boom";
  f.now = now;
  return next_quarantine_record(previous, f);
}

struct QuarantineStep {
  const char* name;
  double wall_after;  // the wall clock read at the next tick, for a failure at t0
  bool active;
};

// First failure at t0: a 60 s backoff, next_retry_after = t0 + 60.
TEST(ClockJumps, QuarantineBackoffIsNeverStretchedByABackwardStep) {
  const json::value q = failed_at(t0);
  const std::vector<QuarantineStep> table{
      {"no step, within the backoff", t0 + 30, true},
      {"no step, backoff over", t0 + 60, false},
      {"forward step past the backoff: retry now", t0 + day, false},
      {"forward step within the backoff", t0 + 59, true},
      // The wall clock went back before the failure: the wait cannot be measured any more,
      // and waiting for the wall clock to catch up would stall the record for the step's
      // length (a day here). One retry now; its failure re-arms the backoff from the new clock.
      {"backward step of a day", t0 - day, false},
      {"backward step of a second", t0 - 1, false},
      {"backward step of a year", t0 - 365 * day, false},
  };
  for (const auto& s : table) EXPECT_EQ(quarantine_active(q, s.wall_after), s.active) << s.name;
}

TEST(ClockJumps, FailureAfterABackwardStepRearmsTheFullBackoffFromTheNewClock) {
  const json::value first = failed_at(t0);
  const double stepped = t0 - day;
  ASSERT_FALSE(quarantine_active(first, stepped));  // retried once
  const json::value second = failed_at(stepped, &first);
  EXPECT_EQ(second.at("failure_count"), json::value(2));
  EXPECT_TRUE(quarantine_active(second, stepped + 1));       // backing off again...
  EXPECT_TRUE(quarantine_active(second, stepped + 119));     // ...for the doubled backoff
  EXPECT_FALSE(quarantine_active(second, stepped + 120));
}

TEST(ClockJumps, HsyncGateOnAMonotonicClockStartsDueWhateverItsOrigin) {
  // The driver feeds the gate steady time, which starts near 0 at boot: the first check
  // after start-up is due even on a host up for less than the interval.
  for (double boot_uptime : {0.0, 1.0, 59.0, 60.0, 1e6}) {
    HsyncGate gate(60.0);
    EXPECT_TRUE(gate.due(boot_uptime)) << boot_uptime;
    gate.on_success(boot_uptime);
    EXPECT_FALSE(gate.due(boot_uptime + 59)) << boot_uptime;
    EXPECT_TRUE(gate.due(boot_uptime + 60)) << boot_uptime;
  }
}

HistoryEntry entry(std::int64_t sequence, std::int64_t written_ns, std::string cid) {
  HistoryEntry e;
  e.file_name = cid + ".json";
  e.body = {{"cid", cid}, {"sequence", sequence}, {"history_written_at_ns", written_ns},
            {"deletion", null_deletion()}};
  return e;
}

struct HistoryStep {
  const char* name;
  double step_s;  // the wall clock's step between the first and the second write
};

TEST(ClockJumps, HistoryOrderAndRetirementFollowWritesWhateverTheWallClockDid) {
  const std::vector<HistoryStep> table{
      {"no step", 10}, {"backward a day", -day}, {"backward a second", -1}, {"forward a year", 365 * day}};
  for (const auto& s : table) {
    const auto ns0 = static_cast<std::int64_t>(t0 * 1e9);
    const auto ns1 = ns0 + static_cast<std::int64_t>(s.step_s * 1e9);
    std::vector<HistoryEntry> entries{entry(2, ns1, "bafksecond"), entry(1, ns0, "bafkfirst")};
    sort_by_write_order(entries);
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[0].body.at("cid"), json::value("bafkfirst")) << s.name;
    EXPECT_EQ(entries[1].body.at("cid"), json::value("bafksecond")) << s.name;
    EXPECT_EQ(max_sequence(entries), 2) << s.name;
    auto target = retirement_target(entries);
    ASSERT_TRUE(target) << s.name;
    EXPECT_EQ(entries[*target].body.at("cid"), json::value("bafkfirst")) << s.name;
  }
}

}  // namespace
}  // namespace carsync::core
