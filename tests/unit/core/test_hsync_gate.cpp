// hsync timing of a consumer's fetch (spec §8.2, checklist I113, I116-I118).
#include "core/hsync_gate.hpp"

#include <gtest/gtest.h>

namespace carsync::core {
namespace {

// A fetch as the reference performs it: hsync when due, then always read the replica.
// The clock advances one second per read, like the reference's fake.
struct Fetcher {
  HsyncGate gate{60.0};
  double clock = 1'000'000.0;
  int hsyncs = 0;
  bool hsync_fails = false;

  double now() { return clock += 1.0; }
  void fetch() {
    const double t = now();
    if (!gate.due(t)) return;
    ++hsyncs;
    if (hsync_fails) gate.on_failure(t);
    else gate.on_success(t);
  }
};

TEST(HsyncGate, I113_FirstFetchAfterStartIsDue) {
  Fetcher f;
  f.fetch();
  EXPECT_EQ(f.hsyncs, 1);
}

TEST(HsyncGate, I116_TwoFetchesWithinIntervalHsyncOnce) {
  Fetcher f;
  f.fetch();
  f.fetch();
  EXPECT_EQ(f.hsyncs, 1);
}

TEST(HsyncGate, I117_HsyncAgainOnceIntervalElapsed) {
  Fetcher f;
  f.fetch();
  const double first = f.clock;
  f.clock = first + 58.0;  // the next read is at +59 s
  f.fetch();
  EXPECT_EQ(f.hsyncs, 1);
  f.clock = first + 59.0;  // +60 s: due exactly at the interval
  f.fetch();
  EXPECT_EQ(f.hsyncs, 2);
  EXPECT_EQ(f.gate.last(), first + 60.0);
}

TEST(HsyncGate, I118_FailedHsyncRetriedAfterThirtySecondsNotNextFetch) {
  Fetcher f;
  f.hsync_fails = true;
  f.fetch();
  const double failed_at = f.clock;
  f.fetch();
  EXPECT_EQ(f.hsyncs, 1);
  f.clock = failed_at + 28.0;  // read at +29 s
  f.fetch();
  EXPECT_EQ(f.hsyncs, 1);
  f.fetch();  // +30 s
  EXPECT_EQ(f.hsyncs, 2);
  EXPECT_EQ(f.gate.next_due(), f.clock + 30.0);
}

TEST(HsyncGate, SuccessAfterFailureRestoresFullInterval) {
  HsyncGate g(60.0);
  g.on_failure(1000.0);
  EXPECT_EQ(g.next_due(), 1030.0);
  g.on_success(1030.0);
  EXPECT_FALSE(g.due(1089.0));
  EXPECT_TRUE(g.due(1090.0));
}

TEST(HsyncGate, ShortIntervalRetriesAfterTheIntervalItself) {
  HsyncGate g(10.0);  // min(30, 10) = 10: a failure waits no longer than a success
  g.on_failure(500.0);
  EXPECT_EQ(g.last(), 500.0);
  EXPECT_FALSE(g.due(509.0));
  EXPECT_TRUE(g.due(510.0));
}

}  // namespace
}  // namespace carsync::core
