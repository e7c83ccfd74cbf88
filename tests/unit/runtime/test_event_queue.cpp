#include "runtime/event_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace carsync::runtime {
namespace {

StatusEvent event(std::uint64_t generation, const std::string& id, Phase phase) {
  StatusEvent e;
  e.generation = generation;
  e.instance.id = id;
  e.instance.phase = phase;
  return e;
}

std::vector<std::uint64_t> generations(const std::vector<StatusEvent>& events) {
  std::vector<std::uint64_t> out;
  for (const auto& e : events) out.push_back(e.generation);
  return out;
}

TEST(EventQueue, KeepsEveryEventInOrderUpToTheBound) {
  EventQueue q(4);
  q.push(event(1, "a", Phase::stopping));
  q.push(event(2, "a", Phase::archiving));
  q.push(event(3, "b", Phase::downloading));
  q.push(event(4, "a", Phase::uploading));
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(generations(q.take()), (std::vector<std::uint64_t>{1, 2, 3, 4}));
  EXPECT_TRUE(q.empty());
}

TEST(EventQueue, PastTheBoundOnlyTheNewestPerInstanceIsKeptInGenerationOrder) {
  EventQueue q(4);
  q.push(event(1, "a", Phase::stopping));
  q.push(event(2, "b", Phase::downloading));
  q.push(event(3, "a", Phase::archiving));
  q.push(event(4, "c", Phase::idle));
  q.push(event(5, "a", Phase::uploading));  // the fifth: coalesced
  const auto kept = q.take();
  EXPECT_EQ(generations(kept), (std::vector<std::uint64_t>{2, 4, 5}));
  EXPECT_EQ(kept.back().instance.phase, Phase::uploading);  // a ends on its current state
}

TEST(EventQueue, AStalledReaderCostsAtMostTheBoundPlusOneEvents) {
  EventQueue q(8);
  for (std::uint64_t g = 1; g <= 10'000; ++g) {
    q.push(event(g, "i" + std::to_string(g % 3), Phase::archiving));
    ASSERT_LE(q.size(), 9u);
  }
  const auto kept = generations(q.take());
  ASSERT_GE(kept.size(), 3u);
  EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
  EXPECT_EQ(std::vector<std::uint64_t>(kept.end() - 3, kept.end()),
            (std::vector<std::uint64_t>{9'998, 9'999, 10'000}));
}

TEST(EventQueue, ARemovalSurvivesCoalescingAsTheInstancesLastEvent) {
  EventQueue q(2);
  q.push(event(1, "a", Phase::idle));
  q.push(event(2, "b", Phase::idle));
  auto gone = event(3, "a", Phase::idle);
  gone.removed = true;
  q.push(gone);
  const auto kept = q.take();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[1].instance.id, "a");
  EXPECT_TRUE(kept[1].removed);
}

}  // namespace
}  // namespace carsync::runtime
