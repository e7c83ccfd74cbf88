// Steps the first-boot gate's decisions.
#include "core/initial_sync_gate.hpp"

#include <gtest/gtest.h>

namespace carsync::core {
namespace {

GateFacts fresh_consumer(std::optional<double> timeout = 30.0) {
  return {.consumer = true, .has_container = true, .halted = false, .applied_before = false, .timeout = timeout};
}

TEST(InitialSyncGate, HoldsOnlyAFreshConsumerWithAContainerAndATimeout) {
  struct Case {
    const char* name;
    GateFacts facts;
    GateAction want;
  };
  GateFacts provider = fresh_consumer();
  provider.consumer = false;
  GateFacts no_container = fresh_consumer();
  no_container.has_container = false;
  GateFacts halted = fresh_consumer();
  halted.halted = true;
  GateFacts applied = fresh_consumer();
  applied.applied_before = true;
  const Case cases[] = {
      {"fresh consumer", fresh_consumer(), GateAction::hold},
      {"forever", fresh_consumer(0.0), GateAction::hold},
      {"no timeout configured", fresh_consumer(std::nullopt), GateAction::none},
      {"provider", provider, GateAction::none},
      {"no container", no_container, GateAction::none},
      {"halted", halted, GateAction::none},
      {"applied before", applied, GateAction::none},
  };
  for (const auto& c : cases) {
    InitialSyncGate g;
    EXPECT_EQ(g.on_start(c.facts), c.want) << c.name;
    EXPECT_EQ(g.holding(), c.want == GateAction::hold) << c.name;
  }
}

TEST(InitialSyncGate, ZeroTimeoutArmsNoTimer) {
  InitialSyncGate g;
  g.on_start(fresh_consumer(0.0));
  EXPECT_FALSE(g.timed());
  InitialSyncGate t;
  t.on_start(fresh_consumer(5.0));
  EXPECT_TRUE(t.timed());
}

TEST(InitialSyncGate, TimeoutReleasesOnlyWithoutASnapshotOrHalt) {
  InitialSyncGate g;
  g.on_start(fresh_consumer());
  EXPECT_EQ(g.on_timeout(false, false), GateAction::release);
  EXPECT_FALSE(g.holding());
  EXPECT_EQ(g.on_timeout(false, false), GateAction::none);  // once

  InitialSyncGate applied;
  applied.on_start(fresh_consumer());
  EXPECT_EQ(applied.on_timeout(true, false), GateAction::none);

  InitialSyncGate halted;
  halted.on_start(fresh_consumer());
  EXPECT_EQ(halted.on_timeout(false, true), GateAction::none);
}

TEST(InitialSyncGate, AnApplyOrCancellationEndsTheHold) {
  InitialSyncGate g;
  g.on_start(fresh_consumer());
  g.on_applied();
  EXPECT_EQ(g.on_timeout(false, false), GateAction::none);

  InitialSyncGate c;
  c.on_start(fresh_consumer());
  c.on_cancel();
  EXPECT_FALSE(c.holding());
  EXPECT_EQ(c.on_timeout(false, false), GateAction::none);
}

}  // namespace
}  // namespace carsync::core
