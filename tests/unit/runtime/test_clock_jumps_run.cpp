// Wall-clock steps while the consumer and provider drivers run (issue 8 item 5), with the
// fixture's clock stepped with FakeClock::jump (wall time moves, steady time does not):
// hsync pacing and quarantine backoff are not stretched by a backward step; dedupe,
// history order and retirement follow what happened, not the wall clock.
#include "support/consumer_fixture.hpp"
#include "support/provider_fixture.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace carsync::test {
namespace {

namespace json = boost::json;
using core::ConsumerOutcome;
using ::testing::ElementsAre;

constexpr double day = 86400.0;

class ConsumerClockJumps : public ::testing::Test, protected ConsumerFixture {
 protected:
  Published publish_file(std::int64_t version, std::string_view content) {
    write_file(provider_tree() / "weights.bin", content);
    return publish(version);
  }
  // Both clocks move on: time passes.
  void later(double s) { clock.set(clock.peek() + s); }
};

TEST_F(ConsumerClockJumps, BackwardStepDoesNotSuspendHsyncForTheLengthOfTheStep) {
  kv.watching = false;  // a remote replica: fetches are paced by the hsync gate
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::no_record);
  ASSERT_EQ(kv.hsyncs.size(), 1u);

  clock.jump(-day);
  later(config.sync.hsync_poll_interval);  // one interval of real time
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::no_record);
  EXPECT_EQ(kv.hsyncs.size(), 2u);  // due: a day's step back changes nothing
}

TEST_F(ConsumerClockJumps, ForwardStepDoesNotHurryHsync) {
  kv.watching = false;
  run_once();
  ASSERT_EQ(kv.hsyncs.size(), 1u);

  clock.jump(+day);
  later(1);
  run_once();
  EXPECT_EQ(kv.hsyncs.size(), 1u);  // not due: one second has passed
}

TEST_F(ConsumerClockJumps, BackwardStepDoesNotStretchTheQuarantineBackoff) {
  auto pub = publish_file(1714742401, "new");
  cas.error_on_get = "r1fs timeout";
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::preflight_failed);
  cas.error_on_get.reset();

  // Before: backing off. The clock steps back a day; waiting for it to catch up would
  // hold the record for a day.
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::backing_off);
  clock.jump(-day);
  auto out = run_once();
  EXPECT_EQ(out.outcome, ConsumerOutcome::applied) << out.error;
  EXPECT_EQ(read_file(appdata() / "weights.bin"), "new");
  EXPECT_EQ(last_apply().at("cid"), json::value(pub.cid));
}

TEST_F(ConsumerClockJumps, DedupeAndHistoryOrderIgnoreWallSteps) {
  auto first = publish_file(1714742401, "one");
  ASSERT_EQ(run_once().outcome, ConsumerOutcome::applied);
  clock.jump(-day);
  later(1);
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::up_to_date);  // same CID: nothing again
  auto second = publish_file(1714742402, "two");
  ASSERT_EQ(run_once().outcome, ConsumerOutcome::applied);
  clock.jump(+2 * day);
  later(1);
  EXPECT_EQ(run_once().outcome, ConsumerOutcome::up_to_date);

  auto latest = history.latest(core::HistoryDir::received);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->body.at("cid"), json::value(second.cid));  // written a day "earlier"
  EXPECT_EQ(received().size(), 2u);
  EXPECT_EQ(read_file(appdata() / "weights.bin"), "two");
  (void)first;
}

class ProviderClockJumps : public ::testing::Test, protected ProviderFixture {};

TEST_F(ProviderClockJumps, BackwardStepKeepsWriteOrderAndRetiresTheOlderPublish) {
  write_file(appdata() / "a.txt", "one");
  write_request(R"({"archive_paths": ["/app/data/"]})");
  auto first = run_once();
  ASSERT_TRUE(first.succeeded) << first.error;

  clock.jump(-day);
  write_file(appdata() / "a.txt", "two");
  write_request(R"({"archive_paths": ["/app/data/"]})");
  auto second = run_once();
  ASSERT_TRUE(second.succeeded) << second.error;
  EXPECT_LT(second.version, first.version);  // version is the wall clock (spec §7.2)

  // The newer publish is the record, and the older one is what got retired.
  EXPECT_EQ(kv.data.at(std::string(core::sync_hkey)).at(std::string(sync_key)).at("cid"), json::value(second.cid));
  ASSERT_EQ(cas.deletes.size(), 1u);
  EXPECT_EQ(cas.deletes[0].cid, first.cid);
  auto latest = history.latest(core::HistoryDir::sent);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->body.at("cid"), json::value(second.cid));
}

}  // namespace
}  // namespace carsync::test
