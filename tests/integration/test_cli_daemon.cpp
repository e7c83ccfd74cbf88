// The carsync CLI against a real carsyncd over its control socket: every API command, its
// output, --json and the exit codes scripts rely on; `watch` on a pipe and, in a real
// terminal, through tmux while a big snapshot is archived and uploaded.
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/shell.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

struct CliRun {
  int exit_code;
  std::string out;
  std::string err;
};

class CliDaemon : public ::testing::Test {
 protected:
  void SetUp() override {
    socket = (tmp / "ctl.sock").string();
    write_config();
    daemon = std::make_unique<ChildProcess>(std::vector<std::string>{CARSYNCD_PATH, "--config", config.string()});
    // Ready once the API answers (the socket exists before the first accept).
    const bool up = poll_until(Clock::now() + scaled(30s), [&] { return cli({"status"}).exit_code == 0; });
    ASSERT_TRUE(up) << daemon->output();
  }

  json::object instance(const std::string& id, std::string_view role) {
    const auto root = tmp / "hosts" / id;
    fs::create_directories(root / "sys");
    fs::create_directories(root / "data");
    return {{"id", id},
            {"system_volume", (root / "sys").string()},
            {"volumes", json::object{{(root / "data").string(), json::object{{"bind", "/app/data"}}}}},
            {"SYNC", json::object{{"ENABLED", true}, {"KEY", "key-1"}, {"TYPE", role}}}};
  }

  void write_config() {
    write_file(config, json::serialize(json::object{
                           {"data_dir", (tmp / "state").string()},
                           {"node_id", "cli-node"},
                           {"control_socket", socket},
                           {"volume_roots", json::array{(tmp / "hosts/*").string()}},
                           {"limits", json::object{{"progress_interval_ms", 100}}},
                           {"instances", json::array{instance("p1", "provider"), instance("c1", "consumer")}},
                       }));
  }

  // The CLI with --socket (unless `args` name one), stdin from `input`; stdout and stderr apart.
  CliRun cli(const std::vector<std::string>& args, std::string_view input = "") {
    const auto in_file = tmp / "stdin.txt", err_file = tmp / "stderr.txt";
    write_file(in_file, input);
    std::string cmd = shell_quote(CARSYNC_CLI_PATH);
    if (std::find(args.begin(), args.end(), "--socket") == args.end()) cmd += " --socket " + shell_quote(socket);
    for (const auto& a : args) cmd += " " + shell_quote(a);
    cmd += " <" + shell_quote(in_file.string()) + " 2>" + shell_quote(err_file.string());
    auto r = shell(cmd);
    return {r.exit_code, std::move(r.out), read_file(err_file)};
  }

  json::object status_json(const std::string& id) {
    auto r = cli({"status", id, "--json"});
    if (r.exit_code != 0) return {};
    return json::parse(r.out).as_object();
  }

  // The provider's volume gets `bytes` that deflate must code (random 8-bit bytes are stored
  // at once), so archiving takes seconds.
  void fill_provider(std::size_t bytes) { write_file(tmp / "hosts/p1/data/blob.bin", seven_bit_bytes(bytes, 7)); }

  TempDir tmp;
  fs::path config = tmp / "node.json";
  std::string socket;
  std::unique_ptr<ChildProcess> daemon;
};

TEST_F(CliDaemon, StatusIsATableAndJsonIsTheApisAnswer) {
  auto table = cli({"status"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("INSTANCE  ROLE      PHASE", 0), 0u) << table.out;
  EXPECT_TRUE(std::regex_search(table.out, std::regex(R"(\np1 +provider +\w+ +never +- +- +ok\n)"))) << table.out;
  EXPECT_TRUE(std::regex_search(table.out, std::regex(R"(\nc1 +consumer +\w+ +never +- +- +\w+\n)"))) << table.out;

  auto raw = cli({"status", "--json"});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  auto node = json::parse(raw.out).as_object();
  EXPECT_EQ(node.at("node_id").as_string(), "cli-node");
  EXPECT_EQ(node.at("instances").as_array().size(), 2u);

  auto one = cli({"--json", "status", "p1"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(json::parse(one.out).at("role").as_string(), "provider");
}

TEST_F(CliDaemon, ExitCodesAreTheDocumentedOnes) {
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string_view stderr_has;
  };
  write_file(tmp / "bad.json", "{not json");
  write_file(tmp / "p2.json", R"({"id": "p2"})");
  write_file(tmp / "request.json", R"({"archive_paths": ["/app/data"]})");
  write_file(tmp / "bad-value.json", R"({"id": "x1", "SYNC": {"ENABLED": true, "KEY": "k", "TYPE": "sideways"}})");
  const std::vector<Case> cases = {
      {{"status", "nobody"}, 4, "not_found"},
      {{"history", "nobody"}, 4, "not_found"},
      {{"unhalt", "nobody"}, 4, "not_found"},
      {{"instances", "rm", "p1"}, 3, "conflict"},           // defined by the configuration file
      {{"instances", "add", (tmp / "bad.json").string()}, 2, "not JSON"},
      {{"instances", "add", (tmp / "bad-value.json").string()}, 2, "[system_volume] (bad_config, HTTP 400)"},
      {{"instances", "add", (tmp / "absent.json").string()}, 2, "cannot read"},
      {{"history", "p1", "--limit", "0"}, 2, "limit"},
      {{"publish", "p1"}, 2, "no earlier publish to repeat"},  // nothing to repeat yet
      {{"publish", "c1", (tmp / "request.json").string()}, 2, "wrong_role"},
      {{"instances", "update", "p9", (tmp / "p2.json").string()}, 2, "not \"p9\""},
      {{"frobnicate"}, 2, ""},
  };
  for (const auto& c : cases) {
    auto r = cli(c.args);
    EXPECT_EQ(r.exit_code, c.code) << c.args[0] << " " << c.args.back() << ": " << r.err;
    EXPECT_NE(r.err.find(c.stderr_has), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.out, "");
  }
  // Nothing listens there: 5, for every API command.
  for (std::vector<std::string> args : {std::vector<std::string>{"status"}, {"watch"}, {"history", "p1"}}) {
    std::vector<std::string> full{"--socket", (tmp / "nobody.sock").string()};
    full.insert(full.end(), args.begin(), args.end());
    auto r = cli(full);
    EXPECT_EQ(r.exit_code, 5) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("nobody.sock"), std::string::npos) << r.err;
  }
}

TEST_F(CliDaemon, InstancesAddUpdateAndRemove) {
  auto p2 = instance("p2", "provider");
  write_file(tmp / "p2.json", json::serialize(p2));
  auto added = cli({"instances", "add", (tmp / "p2.json").string()});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_EQ(added.out, "added p2\n");
  EXPECT_EQ(status_json("p2").at("source").as_string(), "api");
  EXPECT_EQ(cli({"instances", "add", (tmp / "p2.json").string()}).exit_code, 3);  // the id exists

  p2["SYNC"].as_object()["ENABLED"] = false;
  auto updated = cli({"instances", "update", "-"}, json::serialize(p2));
  ASSERT_EQ(updated.exit_code, 0) << updated.err;
  EXPECT_EQ(updated.out, "updated p2\n");
  EXPECT_TRUE(poll_until(Clock::now() + scaled(20s), [&] { return status_json("p2")["enabled"] == false; }));
  // ID before FILE, the file without an id.
  p2.erase("id");
  p2["SYNC"].as_object()["ENABLED"] = true;
  write_file(tmp / "p2-noid.json", json::serialize(p2));
  auto by_id = cli({"instances", "update", "p2", (tmp / "p2-noid.json").string()});
  ASSERT_EQ(by_id.exit_code, 0) << by_id.err;
  EXPECT_EQ(by_id.out, "updated p2\n");
  EXPECT_TRUE(poll_until(Clock::now() + scaled(20s), [&] { return status_json("p2")["enabled"] == true; }));
  p2["id"] = "p2";
  p2["SYNC"].as_object()["ENABLED"] = false;
  ASSERT_EQ(cli({"instances", "update", "-"}, json::serialize(p2)).exit_code, 0);
  EXPECT_TRUE(poll_until(Clock::now() + scaled(20s), [&] { return status_json("p2")["enabled"] == false; }));
  auto table = cli({"status", "p2"});
  EXPECT_NE(table.out.find("disabled"), std::string::npos) << table.out;

  auto removed = cli({"instances", "rm", "p2", "--delete-state"});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_EQ(removed.out, "removed p2 (and its state)\n");
  EXPECT_EQ(cli({"status", "p2"}).exit_code, 4);
  EXPECT_EQ(cli({"instances", "rm", "p2"}).exit_code, 4);
}

TEST_F(CliDaemon, PublishReachesTheConsumerAndShowsInHistory) {
  fill_provider(64 * 1024);
  auto pub = cli({"publish", "p1", "-"}, R"({"archive_paths": ["/app/data"]})");
  ASSERT_EQ(pub.exit_code, 0) << pub.err << daemon->output();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(pub.out, m, std::regex(R"(^p1: published (\S+) version \d+ \(\d+\.\d KiB\)\n$)")))
      << pub.out;
  const std::string cid = m[1];

  // The consumer on the same node applies it; its status row shows the CID's start.
  ASSERT_TRUE(poll_until(Clock::now() + scaled(60s), [&] {
    auto s = status_json("c1");
    return s.contains("last_apply") && s["last_apply"].is_object() && s["last_apply"].at("cid") == cid.c_str();
  })) << cli({"status"}).out << daemon->output();
  auto table = cli({"status"});
  EXPECT_TRUE(std::regex_search(table.out, std::regex("\nc1 +consumer +idle +\\d+s ago +\\S+ \\S+ +" + cid.substr(0, 12) + " +ok\n")))
      << table.out;

  auto sent = cli({"history", "p1", "--dir", "sent"});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_EQ(sent.out.rfind("DIR", 0), 0u) << sent.out;
  EXPECT_NE(sent.out.find("\nsent "), std::string::npos) << sent.out;
  EXPECT_NE(sent.out.find(cid), std::string::npos) << sent.out;
  auto received = cli({"history", "c1", "--json", "--dir", "received", "--limit", "1"});
  ASSERT_EQ(received.exit_code, 0) << received.err;
  auto h = json::parse(received.out).as_object();
  ASSERT_EQ(h.at("received").as_array().size(), 1u) << received.out;
  EXPECT_EQ(h.at("received").as_array()[0].at("cid").as_string(), cid);

  // Without FILE: the newest publish's request again, a new version.
  write_file(tmp / "hosts/p1/data/blob.bin", "changed");
  auto again = cli({"publish", "p1"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  std::smatch m2;
  ASSERT_TRUE(std::regex_search(again.out, m2, std::regex(R"(^p1: published (\S+) version \d+ )"))) << again.out;
  EXPECT_NE(std::string(m2[1]), cid);

  auto accepted = cli({"publish", "p1", "--no-wait", "-"}, R"({"archive_paths": ["/app/data"]})");
  EXPECT_EQ(accepted.exit_code, 0) << accepted.err;
  EXPECT_EQ(accepted.out, "p1: publish accepted\n");
  auto refused = cli({"publish", "p1", "-"}, R"({"archive_paths": "not a list"})");
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_NE(refused.err.find("invalid_request"), std::string::npos) << refused.err;
}

// Not halted: the daemon says so; the offline path is not taken while it runs.
TEST_F(CliDaemon, UnhaltGoesThroughTheDaemon) {
  auto r = cli({"--config", config.string(), "unhalt", "c1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "c1: unhalted\n");
  EXPECT_EQ(r.err.find("offline"), std::string::npos) << r.err;
}

// Without a terminal: one line per change, then a clean exit on SIGINT.
TEST_F(CliDaemon, WatchOnAPipePrintsOneLinePerChange) {
  ChildProcess watch({CARSYNC_CLI_PATH, "--socket", socket, "watch"});
  ASSERT_TRUE(watch.wait_for_output(" p1 idle ok", 20s)) << watch.output();
  ASSERT_TRUE(watch.wait_for_output(" c1 ", 20s)) << watch.output();
  fill_provider(64 * 1024);
  ASSERT_EQ(cli({"publish", "p1", "-"}, R"({"archive_paths": ["/app/data"]})").exit_code, 0);
  EXPECT_TRUE(watch.wait_for_output(" p1 archiving", 20s)) << watch.output();
  EXPECT_TRUE(watch.wait_for_output(" p1 idle ok cid ", 20s)) << watch.output();
  EXPECT_TRUE(watch.wait_for_output(" c1 idle ok cid ", 60s)) << watch.output();
  // Every line is a change: no line repeats its predecessor for the same instance.
  const std::string out = watch.output();
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ p1 idle ok)"))) << out;
  watch.signal(SIGINT);
  auto status = watch.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
}

TEST_F(CliDaemon, WatchJsonPrintsTheEventsData) {
  ChildProcess watch({CARSYNC_CLI_PATH, "--socket", socket, "watch", "--json"});
  ASSERT_TRUE(watch.wait_for_output("\n", 20s)) << watch.output();
  const std::string first = watch.output().substr(0, watch.output().find('\n'));
  auto snapshot = json::parse(first).as_object();
  EXPECT_EQ(snapshot.at("instances").as_array().size(), 2u) << first;
  watch.signal(SIGINT);
  ASSERT_TRUE(watch.wait_exit(10s).has_value());
}

// The daemon going away for longer than --reconnect-for ends a watch with "cannot reach"
// (5), not a hang.
TEST_F(CliDaemon, WatchEndsWhenTheDaemonStaysAway) {
  ChildProcess watch({CARSYNC_CLI_PATH, "--socket", socket, "watch", "--reconnect-for", "1"});
  ASSERT_TRUE(watch.wait_for_output(" p1 ", 20s)) << watch.output();
  ASSERT_TRUE(daemon->terminate(30s).has_value());
  auto status = watch.wait_exit(20s);
  ASSERT_TRUE(status.has_value()) << watch.output();
  EXPECT_EQ(WEXITSTATUS(*status), 5) << watch.output();
  EXPECT_NE(watch.output().find("reconnecting for up to 1 s"), std::string::npos) << watch.output();
  EXPECT_NE(watch.output().find("no answer for 1 s"), std::string::npos) << watch.output();
}

// A watch outlives a daemon restart: it reconnects and goes on with the new daemon's events.
TEST_F(CliDaemon, WatchReconnectsAcrossADaemonRestart) {
  ChildProcess watch({CARSYNC_CLI_PATH, "--socket", socket, "watch"});
  ASSERT_TRUE(watch.wait_for_output(" p1 idle ok", 20s)) << watch.output();
  ASSERT_TRUE(daemon->terminate(30s).has_value());
  ASSERT_TRUE(watch.wait_for_output("reconnecting for up to 30 s", 20s)) << watch.output();
  daemon = std::make_unique<ChildProcess>(std::vector<std::string>{CARSYNCD_PATH, "--config", config.string()});
  ASSERT_TRUE(watch.wait_for_output("carsync: watch: reconnected", 30s)) << watch.output() << daemon->output();
  fill_provider(64 * 1024);
  ASSERT_EQ(cli({"publish", "p1", "-"}, R"({"archive_paths": ["/app/data"]})").exit_code, 0);
  EXPECT_TRUE(watch.wait_for_output(" p1 idle ok cid ", 30s)) << watch.output();
  watch.signal(SIGINT);
  auto status = watch.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
}

// tmux: a private server (its own socket) with one 120x40 window running `watch`.
class Tmux {
 public:
  explicit Tmux(fs::path socket) : socket_(std::move(socket)) {}
  ~Tmux() { run_quiet({"tmux", "-S", socket_.string(), "kill-server"}); }

  bool start(const std::string& shell_command) {
    return run_quiet({"tmux", "-S", socket_.string(), "new-session", "-d", "-x", "120", "-y", "40", shell_command}) == 0;
  }
  std::string pane() {
    FILE* p = ::popen(("tmux -S " + shell_quote(socket_.string()) + " capture-pane -p 2>/dev/null").c_str(), "r");
    if (!p) return {};
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    ::pclose(p);
    return out;
  }
  void keys(const std::string& k) { run_quiet({"tmux", "-S", socket_.string(), "send-keys", k}); }
  // Polls the pane until `re` matches (returning the pane then) or the deadline passes ("").
  std::string wait_for(const std::regex& re, Clock::duration limit) {
    std::string seen;
    poll_until(Clock::now() + scaled(limit), [&] {
      seen = pane();
      return std::regex_search(seen, re);
    });
    return std::regex_search(seen, re) ? seen : std::string();
  }

 private:
  fs::path socket_;
};

// What the terminal showed, kept for people: <build>/test-artifacts/<name> under ctest.
void keep_artifact(std::string_view name, std::string_view text) {
  const char* build = std::getenv("CARSYNC_BUILD_DIR");
  if (!build) return;
  const fs::path dir = fs::path(build) / "test-artifacts";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!ec) write_file(dir / name, text);
}

TEST_F(CliDaemon, WatchInATerminalShowsProgressBarsThenTheFinalState) {
  // Not a skip: "watch is checked in a real terminal" must not pass unnoticed without one.
  ASSERT_EQ(run_quiet({"tmux", "-V"}), 0) << "tmux is not installed (scripts/bootstrap installs it)";
  fill_provider(160u << 20);
  Tmux tmux(tmp / "tmux.sock");
  const std::string cmd = shell_quote(CARSYNC_CLI_PATH) + " --socket " + shell_quote(socket) +
                          " watch; echo \"watch exited $?\"; sleep 600";
  ASSERT_TRUE(tmux.start(cmd));
  ASSERT_FALSE(tmux.wait_for(std::regex(R"(carsync cli-node: 2 instances)"), 20s).empty()) << tmux.pane();

  auto publish = cli({"publish", "p1", "--no-wait", "-"}, R"({"archive_paths": ["/app/data"]})");
  ASSERT_EQ(publish.exit_code, 0) << publish.err;
  // A bar with the bytes done (and "/ total" once the total is known: the upload's) and a
  // rate, for the provider's archive or upload.
  const std::regex bar(
      R"(p1 +(archiving|uploading) +\[(#*-*|-*<=>-*)\] +(\d+% )?\d+(\.\d)? (B|[KMG]iB)( / \d+\.\d [KMG]iB)?  \d+(\.\d)? (B|[KMG]iB)/s)");
  const std::string busy = tmux.wait_for(bar, 60s);
  ASSERT_FALSE(busy.empty()) << tmux.pane() << daemon->output();
  keep_artifact("cli-watch-busy.txt", busy);
  EXPECT_NE(busy.find("1 in flight"), std::string::npos) << busy;

  // Then the final state: both idle and ok, the consumer on the provider's new CID.
  ASSERT_TRUE(poll_until(Clock::now() + scaled(120s), [&] {
    auto s = status_json("c1");
    return s.contains("last_apply") && s["last_apply"].is_object();
  })) << daemon->output();
  const std::string cid = status_json("p1").at("last_cid").as_string().c_str();
  // Both lines in one capture (in-flight first, then by id: c1 before p1).
  const std::regex done("0 in flight[\\s\\S]*\nc1 +idle +ok +last sync +\\S+ ago +160\\.\\d MiB +" + cid.substr(0, 12) +
                        "[\\s\\S]*\np1 +idle +ok +last sync +\\S+ ago +\\d+\\.\\d MiB +" + cid.substr(0, 12));
  const std::string final_pane = tmux.wait_for(done, 30s);
  EXPECT_FALSE(final_pane.empty()) << tmux.pane();
  keep_artifact("cli-watch-final.txt", final_pane);

  tmux.keys("C-c");
  EXPECT_FALSE(tmux.wait_for(std::regex("watch exited 0"), 10s).empty()) << tmux.pane();
}

}  // namespace
}  // namespace carsync::test
