// The metrics registry and its text format 0.0.4: escaping, cumulative histogram buckets
// with +Inf, _sum and _count, a stable sorted output, series removal, snapshots, and the
// node's series computed from a NodeStatus.
#include "runtime/metrics.hpp"
#include "runtime/node_metrics.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>
#include <vector>

namespace carsync::runtime::metrics {
namespace {

TEST(Metrics, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(escape_label_value(R"(a\b"c)" "\n" "d"), R"(a\\b\"c\nd)");
  EXPECT_EQ(escape_label_value("plain é"), "plain é");
  // HELP text keeps quotes as they are.
  EXPECT_EQ(escape_help("say \"hi\"\\\nnow"), R"(say "hi"\\\nnow)");

  Registry r;
  r.declare("x_total", Type::counter, "Help with a\nnewline.");
  r.inc("x_total", {{"instance", "we\"ird\\id\n"}});
  EXPECT_EQ(r.render(),
            "# HELP x_total Help with a\\nnewline.\n"
            "# TYPE x_total counter\n"
            "x_total{instance=\"we\\\"ird\\\\id\\n\"} 1\n");
}

TEST(Metrics, ValuesPrintAsPrometheusParsesThem) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(1), "1");
  EXPECT_EQ(format_value(0.005), "0.005");
  EXPECT_EQ(format_value(123456789012.0), "123456789012");
  EXPECT_EQ(format_value(1764490678.25), "1764490678.25");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  r.declare("d_seconds", Type::histogram, "D.", {0.25, 1, 10});
  const Labels l{{"instance", "a"}};
  // Exact in binary, so the sum is exact too.
  for (double v : {0.125, 0.25, 0.5, 2.0, 50.0}) r.observe("d_seconds", l, v);
  EXPECT_EQ(r.render(),
            "# HELP d_seconds D.\n"
            "# TYPE d_seconds histogram\n"
            "d_seconds_bucket{instance=\"a\",le=\"0.25\"} 2\n"  // 0.25 counts as "<= 0.25"
            "d_seconds_bucket{instance=\"a\",le=\"1\"} 3\n"
            "d_seconds_bucket{instance=\"a\",le=\"10\"} 4\n"
            "d_seconds_bucket{instance=\"a\",le=\"+Inf\"} 5\n"
            "d_seconds_sum{instance=\"a\"} 52.875\n"
            "d_seconds_count{instance=\"a\"} 5\n");
  EXPECT_EQ(r.value("d_seconds", l), 5);
}

TEST(Metrics, OutputIsSortedAndStableWhateverTheOrderOfUse) {
  auto fill = [](Registry& r, bool reversed) {
    r.declare("b_total", Type::counter, "B.");
    r.declare("a", Type::gauge, "A.");
    std::vector<std::string> ids{"x", "m", "c"};
    if (reversed) std::reverse(ids.begin(), ids.end());
    for (const auto& id : ids) {
      r.inc("b_total", {{"stage", "s"}, {"instance", id}}, 2);
      r.set("a", {{"phase", id}}, 1.5);
    }
  };
  Registry one, two;
  fill(one, false);
  fill(two, true);
  const auto text = one.render();
  EXPECT_EQ(text, two.render());
  EXPECT_EQ(text,
            "# HELP a A.\n# TYPE a gauge\n"
            "a{phase=\"c\"} 1.5\na{phase=\"m\"} 1.5\na{phase=\"x\"} 1.5\n"
            "# HELP b_total B.\n# TYPE b_total counter\n"
            "b_total{instance=\"c\",stage=\"s\"} 2\n"
            "b_total{instance=\"m\",stage=\"s\"} 2\n"
            "b_total{instance=\"x\",stage=\"s\"} 2\n");
  EXPECT_EQ(text, one.render());
}

TEST(Metrics, EraseDropsEverySeriesOfAnInstanceAndTouchCreatesZero) {
  Registry r;
  r.declare("c_total", Type::counter, "C.");
  r.declare("h_seconds", Type::histogram, "H.", {1});
  r.touch("c_total", {{"instance", "gone"}});
  r.touch("c_total", {{"instance", "kept"}});
  r.observe("h_seconds", {{"instance", "gone"}}, 0.5);
  EXPECT_NE(r.render().find("c_total{instance=\"gone\"} 0\n"), std::string::npos);
  r.erase("instance", "gone");
  const auto text = r.render();
  EXPECT_EQ(text.find("gone"), std::string::npos) << text;
  EXPECT_NE(text.find("c_total{instance=\"kept\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE h_seconds histogram\n"), std::string::npos) << text;
}

TEST(Metrics, MisuseIsAProgrammingErrorNotASilentSeries) {
  Registry r;
  r.declare("c_total", Type::counter, "C.");
  EXPECT_THROW(r.inc("nope_total", {}), std::logic_error);
  EXPECT_THROW(r.set("c_total", {}, 1), std::logic_error);
  EXPECT_THROW(r.inc("c_total", {}, -1), std::logic_error);
  EXPECT_THROW(r.declare("c_total", Type::gauge, "again"), std::logic_error);
  EXPECT_THROW(r.declare("h", Type::histogram, "H.", {2, 1}), std::logic_error);
}

TEST(Metrics, ASnapshotIsIndependentOfTheLiveRegistry) {
  Registry r;
  r.declare("g", Type::gauge, "G.");
  r.set("g", {}, 1);
  Registry copy(r);
  copy.set("g", {}, 7);
  EXPECT_EQ(r.value("g", {}), 1);
  EXPECT_EQ(copy.value("g", {}), 7);
}

TEST(Metrics, ConcurrentIncrementsAreAllCounted) {
  Registry r;
  r.declare("c_total", Type::counter, "C.");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) r.inc("c_total", {{"instance", "a"}});
    });
  std::string rendered;
  for (int i = 0; i < 50; ++i) rendered = r.render();  // rendering meanwhile is safe
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.value("c_total", {{"instance", "a"}}), 40000);
}

}  // namespace
}  // namespace carsync::runtime::metrics

namespace carsync::runtime {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.starts_with(line + "\n");
}

TEST(NodeMetrics, StatusGaugesCoverEveryPhaseAndInstancesComeAndGo) {
  NodeMetrics m;
  m.add_instance("p", Role::provider);
  m.add_instance("c", Role::consumer);
  m.claimed("p");
  m.failed("c", Stage::r1fs_download);

  NodeStatus st;
  InstanceStatus p;
  p.id = "p";
  p.role = Role::provider;
  p.phase = Phase::idle;
  p.last_publish = SyncPoint{.cid = "Qm", .version = 1, .time = 1764490678.5, .size = 10};
  InstanceStatus c;
  c.id = "c";
  c.role = Role::consumer;
  c.phase = Phase::idle;
  c.halted = true;
  c.quarantine = QuarantineInfo{};
  st.instances = {p, c};

  auto text = m.render(st);
  EXPECT_TRUE(has_line(text, "carsync_instances{phase=\"idle\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "carsync_instances{phase=\"removing\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "carsync_instances{phase=\"starting\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "carsync_instances_halted 1")) << text;
  EXPECT_TRUE(has_line(text, "carsync_instances_quarantined 1")) << text;
  EXPECT_TRUE(has_line(text, "carsync_last_success_timestamp_seconds{instance=\"p\",role=\"provider\"} 1764490678.5"))
      << text;
  EXPECT_EQ(text.find("carsync_last_success_timestamp_seconds{instance=\"c\""), std::string::npos) << text;
  EXPECT_TRUE(has_line(text, "carsync_claims_total{instance=\"p\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "carsync_publishes_total{instance=\"p\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "carsync_applies_total{instance=\"c\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "carsync_failures_total{instance=\"c\",stage=\"r1fs_download\"} 1")) << text;
  EXPECT_NE(text.find("carsync_build_info{version=\""), std::string::npos) << text;
  // Render-time series never leak into the live registry.
  EXPECT_EQ(m.registry().value("carsync_instances_halted", {}), 0);

  m.remove_instance("c");
  st.instances = {p};
  text = m.render(st);
  EXPECT_EQ(text.find("instance=\"c\""), std::string::npos) << text;
  EXPECT_TRUE(has_line(text, "carsync_instances{phase=\"idle\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "carsync_instances_halted 0")) << text;
}

}  // namespace
}  // namespace carsync::runtime
