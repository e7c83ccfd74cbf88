#include "cmd/status_summary.hpp"

#include <gtest/gtest.h>

namespace carsync::cmd {
namespace {

InstanceStatus with(std::string id, Phase phase) {
  InstanceStatus s;
  s.id = std::move(id);
  s.phase = phase;
  return s;
}

TEST(StatusSummary, CountsInstancesSyncingAndFailingFromEvents) {
  StatusSummary sum;
  NodeStatus node;
  node.instances = {with("a", Phase::idle), with("b", Phase::uploading), with("c", Phase::halted)};
  node.instances[2].halted = true;
  sum.reset(node);
  EXPECT_EQ(sum.text(), "3 instances, 1 syncing, 1 failing");

  sum.update({.generation = 2, .instance = with("a", Phase::applying), .removed = false});
  EXPECT_EQ(sum.text(), "3 instances, 2 syncing, 1 failing");
  sum.update({.generation = 3, .instance = with("c", Phase::halted), .removed = true});
  EXPECT_EQ(sum.text(), "2 instances, 2 syncing, 0 failing");
  sum.update({.generation = 4, .instance = with("b", Phase::idle), .removed = false});
  sum.update({.generation = 5, .instance = with("a", Phase::idle), .removed = true});
  EXPECT_EQ(sum.text(), "1 instance, 0 syncing, 0 failing");
}

TEST(StatusSummary, AFailureCountsUntilALaterSuccess) {
  auto s = with("p", Phase::idle);
  s.error = LastError{Stage::r1fs_upload, "timeout", 100.0};
  EXPECT_TRUE(is_failing(s));
  s.last_publish = SyncPoint{"cid", 1, 90.0, 10};
  EXPECT_TRUE(is_failing(s));
  s.last_publish->time = 110.0;
  EXPECT_FALSE(is_failing(s));

  auto q = with("c", Phase::idle);
  q.quarantine = QuarantineInfo{};
  EXPECT_TRUE(is_failing(q));
  auto d = with("d", Phase::disabled);
  d.config_error = "SYNC.KEY: missing";
  EXPECT_TRUE(is_failing(d));
  EXPECT_FALSE(is_failing(with("e", Phase::disabled)));  // disabled on purpose
}

}  // namespace
}  // namespace carsync::cmd
