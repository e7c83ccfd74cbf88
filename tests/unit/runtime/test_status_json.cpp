#include "runtime/status_json.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

namespace carsync::runtime {
namespace {

namespace json = boost::json;

TEST(StatusJson, EmptyOptionalsAreNull) {
  InstanceStatus s;
  s.id = "app-1";
  s.role = Role::consumer;
  const auto o = to_json(s);
  EXPECT_EQ(o.at("id"), "app-1");
  EXPECT_EQ(o.at("role"), "consumer");
  EXPECT_EQ(o.at("phase"), "starting");
  for (const char* key : {"config_error", "last_cid", "last_error", "error", "last_publish", "last_apply", "quarantine"})
    EXPECT_TRUE(o.at(key).is_null()) << key;
  EXPECT_EQ(o.at("progress"), (json::object{{"done", 0u}, {"total", 0u}}));
}

TEST(StatusJson, EveryFieldIsNamedAsTheApiDocumentSays) {
  InstanceStatus s;
  s.id = "app-2";
  s.role = Role::provider;
  s.enabled = true;
  s.phase = Phase::uploading;
  s.progress = {5, 10};
  s.requests_ok = 3;
  s.requests_failed = 1;
  s.last_cid = "bafyx";
  s.last_error = "r1fs_upload: down";
  s.error = LastError{Stage::r1fs_upload, "down", 1.5};
  s.last_publish = SyncPoint{"bafyx", 7, 2.5, 42};
  s.quarantine = QuarantineInfo{"bafyq", Stage::extract, 2, 9.0};
  s.halted = true;
  s.last_duration_s = 0.25;
  s.generation = 11;
  const auto o = to_json(s);
  EXPECT_EQ(o.at("phase"), "uploading");
  EXPECT_EQ(o.at("progress").at("done"), 5u);
  EXPECT_EQ(o.at("error").at("stage"), "r1fs_upload");
  EXPECT_EQ(o.at("error").at("time"), 1.5);
  EXPECT_EQ(o.at("last_publish"), (json::object{{"cid", "bafyx"}, {"version", 7}, {"time", 2.5}, {"size", 42u}}));
  EXPECT_EQ(o.at("quarantine").at("stage"), "extract");
  EXPECT_EQ(o.at("quarantine").at("failure_count"), 2u);
  EXPECT_EQ(o.at("halted"), true);
  EXPECT_EQ(o.at("generation"), 11u);
}

TEST(StatusJson, NodeAndEventWrapInstances) {
  NodeStatus n;
  n.node_id = "edge-1";
  n.file_engine = "portable";
  n.running = true;
  n.generation = 4;
  n.instances.resize(2);
  n.instances[1].id = "b";
  const auto o = to_json(n);
  EXPECT_EQ(o.at("node_id"), "edge-1");
  ASSERT_EQ(o.at("instances").as_array().size(), 2u);
  EXPECT_EQ(o.at("instances").as_array()[1].at("id"), "b");
  StatusEvent e{5, n.instances[1], true};
  const auto ev = to_json(e);
  EXPECT_EQ(ev.at("generation"), 5u);
  EXPECT_EQ(ev.at("removed"), true);
  EXPECT_EQ(ev.at("instance").at("id"), "b");
}

}  // namespace
}  // namespace carsync::runtime
