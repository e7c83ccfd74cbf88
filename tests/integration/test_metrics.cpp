// Node::metrics_text() against a real embedded sync: a provider answers a request.json the
// app wrote, a consumer applies the snapshot, and the series move by exactly what happened
// (one claim, one publish, one apply, the archive's bytes, one observation per histogram).
// The text is fed to Prometheus's own checker, `promtool check metrics`, which parses it and
// lints the names (counters end in _total, base units in names, HELP on every family).
#include "carsync/node.hpp"
#include "support/child_process.hpp"
#include "support/run_until.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"
#include "support/unix_http.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>

namespace carsync {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::ShellRun;
using test::TempDir;
using test::shell;
using test::shell_quote;
using test::write_file;

constexpr const char* promtool = "/usr/bin/promtool";

// The value of the sample whose name and labels are exactly `series`, if the text has it.
std::optional<double> sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with('#') || !line.starts_with(series + " ")) continue;
    return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

// `promtool check metrics` reads the exposition on stdin; it prints every lint problem and
// exits non-zero on a parse error or a lint problem.
ShellRun promtool_check(const fs::path& file) {
  return shell(std::string(promtool) + " check metrics < " + shell_quote(file.string()) + " 2>&1");
}

class MetricsTest : public ::testing::Test {
 protected:
  NodeConfig node_config() {
    NodeConfig c;
    c.data_dir = tmp / "state";
    c.node_id = "metrics-test";
    c.volume_roots = std::vector<std::string>{(tmp / "hosts/*").string()};
    c.limits.rescan_interval = std::chrono::seconds(3600);  // every reaction below is event-driven
    c.limits.shutdown_grace = 5s;
    return c;
  }

  InstanceConfig instance(const std::string& id, Role role) {
    fs::create_directories(tmp / "hosts" / id / "sys");
    fs::create_directories(data_of(id));
    InstanceConfig ic;
    ic.id = id;
    ic.system_volume = tmp / "hosts" / id / "sys";
    ic.volumes = {{data_of(id).string(), "/app/data", "rw"}};
    ic.sync.enabled = true;
    ic.sync.key = "metrics-key";
    ic.sync.role = role;
    return ic;
  }

  fs::path data_of(const std::string& id) const { return tmp / "hosts" / id / "data"; }

  bool run_until(const std::function<bool()>& pred, std::chrono::seconds limit = 30s) {
    return test::run_until(ioc, pred, limit);
  }

  static const InstanceStatus* find(const NodeStatus& s, const std::string& id) {
    for (const auto& i : s.instances)
      if (i.id == id) return &i;
    return nullptr;
  }

  TempDir tmp;
  boost::asio::io_context ioc{1};
};

TEST_F(MetricsTest, SeriesMoveWithARealSyncAndPassPromtool) {
  Node node(node_config(), ioc.get_executor());
  node.start();
  std::optional<Result<void>> added_p, added_c;
  ASSERT_TRUE(node.add_instance(instance("prov", Role::provider), [&](Result<void> r) { added_p = r; }));
  ASSERT_TRUE(node.add_instance(instance("cons", Role::consumer), [&](Result<void> r) { added_c = r; }));
  ASSERT_TRUE(run_until([&] { return added_p && added_c; }));
  ASSERT_TRUE(run_until([&] {
    const auto st = node.status();
    return st.instances.size() == 2 && find(st, "prov")->phase == Phase::idle && find(st, "cons")->phase == Phase::idle;
  }));

  // Before any sync: the instances' series exist, at zero.
  auto text = node.metrics_text();
  EXPECT_EQ(sample(text, R"(carsync_claims_total{instance="prov"})"), 0) << text;
  EXPECT_EQ(sample(text, R"(carsync_applies_total{instance="cons"})"), 0) << text;
  EXPECT_EQ(sample(text, R"(carsync_instances{phase="idle"})"), 2) << text;
  EXPECT_EQ(sample(text, R"(carsync_last_success_timestamp_seconds{instance="prov",role="provider"})"), std::nullopt);

  // The app's side: a file in the volume, then request.json written as an app would (a temp
  // renamed into place), which the node's watcher sees.
  const std::string content = "weights v1, some bytes to archive";
  write_file(data_of("prov") / "model.bin", content);
  const auto control = tmp / "hosts/prov/sys/volume-sync";
  write_file(control / ".request.json.tmp", R"({"archive_paths": ["/app/data/"]})");
  fs::rename(control / ".request.json.tmp", control / "request.json");

  // Both ends finished: the provider answered (its finish comes after the record the
  // consumer reacts to), the consumer applied.
  ASSERT_TRUE(run_until([&] {
    const auto st = node.status();
    const auto* p = find(st, "prov");
    const auto* c = find(st, "cons");
    return p && c && p->requests_ok == 1 && p->phase == Phase::idle && c->last_apply && c->phase == Phase::idle;
  })) << node.metrics_text();
  ASSERT_TRUE(fs::exists(control / "response.json"));
  EXPECT_EQ(test::read_file(data_of("cons") / "model.bin"), content);
  const auto st = node.status();
  const auto archive_size = static_cast<double>(find(st, "prov")->last_publish->size);
  ASSERT_GT(archive_size, 0);

  text = node.metrics_text();
  EXPECT_EQ(sample(text, R"(carsync_claims_total{instance="prov"})"), 1) << text;
  EXPECT_EQ(sample(text, R"(carsync_publishes_total{instance="prov"})"), 1) << text;
  EXPECT_EQ(sample(text, R"(carsync_applies_total{instance="cons"})"), 1) << text;
  EXPECT_EQ(sample(text, R"(carsync_archived_bytes_total{instance="prov"})"), archive_size) << text;
  EXPECT_EQ(sample(text, R"(carsync_uploaded_bytes_total{instance="prov"})"), archive_size) << text;
  EXPECT_EQ(sample(text, R"(carsync_downloaded_bytes_total{instance="cons"})"), archive_size) << text;
  EXPECT_EQ(sample(text, R"(carsync_applied_bytes_total{instance="cons"})"), static_cast<double>(content.size()))
      << text;
  for (const auto* h : {R"(carsync_reaction_latency_seconds_count{instance="prov"})",
                        R"(carsync_publish_duration_seconds_count{instance="prov"})",
                        R"(carsync_apply_duration_seconds_count{instance="cons"})"})
    EXPECT_EQ(sample(text, h), 1) << h << "\n" << text;
  // Observed values are real durations: positive, and within the test's own bound.
  const auto reaction = sample(text, R"(carsync_reaction_latency_seconds_sum{instance="prov"})");
  ASSERT_TRUE(reaction);
  EXPECT_GE(*reaction, 0);
  EXPECT_LT(*reaction, 30);
  EXPECT_GT(*sample(text, R"(carsync_publish_duration_seconds_sum{instance="prov"})"), 0);
  EXPECT_EQ(sample(text, R"(carsync_apply_duration_seconds_bucket{instance="cons",le="+Inf"})"), 1);
  EXPECT_EQ(sample(text, R"(carsync_last_success_timestamp_seconds{instance="prov",role="provider"})"),
            find(st, "prov")->last_publish->time);
  EXPECT_EQ(sample(text, R"(carsync_last_success_timestamp_seconds{instance="cons",role="consumer"})"),
            find(st, "cons")->last_apply->time);
  EXPECT_EQ(sample(text, R"(carsync_instances{phase="idle"})"), 2) << text;
  EXPECT_EQ(sample(text, R"(carsync_instances{phase="applying"})"), 0) << text;
  EXPECT_EQ(sample(text, "carsync_instances_halted"), 0);
  EXPECT_EQ(sample(text, "carsync_instances_quarantined"), 0);
  EXPECT_EQ(text.find("carsync_failures_total{"), std::string::npos) << text;
  EXPECT_NE(text.find("carsync_build_info{version=\""), std::string::npos);

  const std::string synced = text;

  // A removed instance's series go away; the others stay.
  std::optional<Result<void>> removed;
  ASSERT_TRUE(node.remove_instance("cons", {}, [&](Result<void> r) { removed = r; }));
  ASSERT_TRUE(run_until([&] { return removed.has_value(); }));
  text = node.metrics_text();
  EXPECT_EQ(text.find(R"(instance="cons")"), std::string::npos) << text;
  EXPECT_EQ(sample(text, R"(carsync_publishes_total{instance="prov"})"), 1) << text;
  EXPECT_EQ(sample(text, R"(carsync_instances{phase="idle"})"), 1) << text;
  node.stop();
  ASSERT_TRUE(run_until([&] { return node.wait_for(0ms); }));

  if (!fs::exists(promtool)) {
    // CI installs it (scripts/bootstrap): there, its absence is a failure, not a skip.
    const char* ci = std::getenv("CI");
    ASSERT_FALSE(ci && std::string_view(ci) == "true") << promtool << " is missing on CI";
    GTEST_SKIP() << promtool << " is absent (Debian package `prometheus`, scripts/bootstrap installs it): "
                 << "the exposition was not checked by Prometheus's parser and linter";
  }
  write_file(tmp / "metrics.txt", synced);
  const auto checked = promtool_check(tmp / "metrics.txt");
  EXPECT_EQ(checked.exit_code, 0) << checked.out << "\n" << synced;
  EXPECT_EQ(checked.out, "") << "lint problems:\n" << checked.out;
}

// A failure is counted by its stage, and a promtool-clean text still results.
TEST_F(MetricsTest, AFailedRequestIsCountedByItsStage) {
  Node node(node_config(), ioc.get_executor());
  node.start();
  std::optional<Result<void>> added;
  ASSERT_TRUE(node.add_instance(instance("prov", Role::provider), [&](Result<void> r) { added = r; }));
  ASSERT_TRUE(run_until([&] { return added.has_value(); }));
  ASSERT_TRUE(run_until([&] { return node.status().instances.at(0).phase == Phase::idle; }));

  // Not JSON: refused at validation, answered with a failure response.
  const auto control = tmp / "hosts/prov/sys/volume-sync";
  write_file(control / ".request.json.tmp", "not json");
  fs::rename(control / ".request.json.tmp", control / "request.json");
  ASSERT_TRUE(run_until([&] {
    const auto s = node.status().instances.at(0);
    return s.requests_failed == 1 && s.phase == Phase::idle;
  }));
  const auto text = node.metrics_text();
  EXPECT_EQ(sample(text, R"(carsync_claims_total{instance="prov"})"), 1) << text;
  EXPECT_EQ(sample(text, R"(carsync_publishes_total{instance="prov"})"), 0) << text;
  EXPECT_EQ(sample(text, R"(carsync_failures_total{instance="prov",stage="validation"})"), 1) << text;
  EXPECT_EQ(sample(text, R"(carsync_publish_duration_seconds_count{instance="prov"})"), 0) << text;

  if (fs::exists(promtool)) {
    write_file(tmp / "metrics.txt", text);
    const auto checked = promtool_check(tmp / "metrics.txt");
    EXPECT_EQ(checked.exit_code, 0) << checked.out;
    EXPECT_EQ(checked.out, "") << checked.out;
  }
  node.stop();
  ASSERT_TRUE(run_until([&] { return node.wait_for(0ms); }));
}

// carsyncd serves the same text at GET /metrics on its control socket and on the read-only
// metrics_listen address, with the format's content type.
TEST_F(MetricsTest, CarsyncdServesMetricsOnTheSocketAndOnMetricsListen) {
  namespace json = boost::json;
  const auto root = tmp / "hosts" / "prov";
  fs::create_directories(root / "sys");
  write_file(root / "data" / "state.txt", "state");
  const auto socket = tmp / "carsyncd.sock";
  write_file(tmp / "node.json",
             json::serialize(json::object{
                 {"data_dir", (tmp / "state").string()},
                 {"node_id", "metrics-node"},
                 {"control_socket", socket.string()},
                 {"metrics_listen", "127.0.0.1:0"},
                 {"volume_roots", json::array{(tmp / "hosts/*").string()}},
                 {"instances", json::array{json::object{
                                   {"id", "prov"},
                                   {"system_volume", (root / "sys").string()},
                                   {"volumes", json::object{{(root / "data").string(), json::object{{"bind", "/app/data"}}}}},
                                   {"SYNC", json::object{{"ENABLED", true}, {"KEY", "k"}, {"TYPE", "provider"}}}}}},
             }));
  test::ChildProcess d({CARSYNCD_PATH, "--config", (tmp / "node.json").string()});
  ASSERT_TRUE(d.wait_for_output("carsyncd ready", 20s)) << d.output();
  std::smatch m;
  const auto out = d.output();
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(\(port (\d+)\))"))) << out;
  const auto port = static_cast<unsigned short>(std::stoi(m[1]));

  auto published = test::unix_request(socket, "POST", "/v1/instances/prov/publish", R"({"archive_paths": ["/app/data"]})");
  ASSERT_EQ(published.status, 200u) << published.error << published.body;

  const auto on_socket = test::unix_request(socket, "GET", "/metrics");
  ASSERT_EQ(on_socket.status, 200u) << on_socket.error << on_socket.body;
  EXPECT_TRUE(on_socket.content_type.starts_with("text/plain; version=0.0.4")) << on_socket.content_type;
  EXPECT_EQ(sample(on_socket.body, R"(carsync_claims_total{instance="prov"})"), 1) << on_socket.body;
  EXPECT_EQ(sample(on_socket.body, R"(carsync_publishes_total{instance="prov"})"), 1) << on_socket.body;
  EXPECT_EQ(sample(on_socket.body, R"(carsync_publish_duration_seconds_count{instance="prov"})"), 1);
  // An API publish has no request.json: no reaction latency.
  EXPECT_EQ(sample(on_socket.body, R"(carsync_reaction_latency_seconds_count{instance="prov"})"), 0);
  EXPECT_TRUE(std::regex_search(on_socket.body, std::regex(R"(\ncarsync_build_info\{version="[^"]+"\} 1\n)")))
      << on_socket.body;

  const auto on_tcp = test::tcp_request(port, "GET", "/metrics");
  ASSERT_EQ(on_tcp.status, 200u) << on_tcp.error;
  EXPECT_TRUE(on_tcp.content_type.starts_with("text/plain; version=0.0.4")) << on_tcp.content_type;
  EXPECT_EQ(sample(on_tcp.body, R"(carsync_publishes_total{instance="prov"})"), 1) << on_tcp.body;

  if (fs::exists(promtool)) {
    write_file(tmp / "metrics.txt", on_socket.body);
    const auto checked = promtool_check(tmp / "metrics.txt");
    EXPECT_EQ(checked.exit_code, 0) << checked.out;
    EXPECT_EQ(checked.out, "") << checked.out;
  }
  EXPECT_EQ(d.terminate(20s), 0) << d.output();
}

}  // namespace
}  // namespace carsync
