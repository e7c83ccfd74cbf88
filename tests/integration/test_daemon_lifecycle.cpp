// carsyncd as an operator meets it: one owner per data_dir, strict configuration keys that
// say what they did, SIGHUP reloads instead of killing, the CLI never acts behind a running
// daemon's back, SIGTERM stops promptly.
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <csignal>
#include <string>

namespace carsync::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

class DaemonLifecycle : public ::testing::Test {
 protected:
  json::object instance(const std::string& id, json::object sync) {
    const auto root = tmp / "hosts" / id;
    fs::create_directories(root / "sys");
    fs::create_directories(root / "data");
    return {{"id", id},
            {"system_volume", (root / "sys").string()},
            {"volumes", json::object{{(root / "data").string(), json::object{{"bind", "/app/data"}}}}},
            {"SYNC", std::move(sync)}};
  }
  json::object provider(const std::string& id) {
    return instance(id, {{"ENABLED", true}, {"KEY", "k"}, {"TYPE", "provider"}});
  }

  fs::path write_config(json::array instances) {
    write_file(tmp / "node.json", json::serialize(json::object{
                                      {"data_dir", (tmp / "state").string()},
                                      {"control_socket", (tmp / "carsyncd.sock").string()},
                                      {"node_id", "lifecycle-node"},
                                      {"volume_roots", json::array{(tmp / "hosts/*").string()}},
                                      {"instances", std::move(instances)},
                                  }));
    return tmp / "node.json";
  }

  std::unique_ptr<ChildProcess> daemon(const fs::path& config) {
    return std::make_unique<ChildProcess>(std::vector<std::string>{CARSYNCD_PATH, "--config", config.string()});
  }

  TempDir tmp;
};

TEST_F(DaemonLifecycle, ASecondDaemonOnTheSameDataDirExitsAtOnceNamingTheHolder) {
  auto config = write_config(json::array{provider("a")});
  auto first = daemon(config);
  ASSERT_TRUE(first->wait_for_output("carsyncd ready", 20s)) << first->output();
  auto second = daemon(config);
  auto status = second->wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "the second daemon kept running:\n" << second->output();
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(second->output().find("pid " + std::to_string(first->pid())), std::string::npos) << second->output();
  EXPECT_EQ(first->output().find("second"), std::string::npos);  // the first one is untouched
  auto stopped = first->terminate(20s);
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(WEXITSTATUS(*stopped), 0);
}

TEST_F(DaemonLifecycle, UnknownKeyStopsStartupNamingTheClosestKnownOne) {
  auto inst = provider("a");
  inst["volumse"] = inst["volumes"];
  inst.erase("volumes");
  auto config = write_config(json::array{inst});
  auto d = daemon(config);
  auto status = d->wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(d->output().find("volumse"), std::string::npos) << d->output();
  EXPECT_NE(d->output().find("did you mean \"volumes\""), std::string::npos) << d->output();
}

TEST_F(DaemonLifecycle, MisspelledSyncKeyIsWarnedAndTheDisabledInstanceSaysWhy) {
  auto config = write_config(json::array{instance("a", {{"ENABLE", true}, {"KEY", "k"}, {"TYPE", "provider"}})});
  auto d = daemon(config);
  ASSERT_TRUE(d->wait_for_output("carsyncd ready", 20s)) << d->output();
  const auto out = d->output();
  EXPECT_NE(out.find("SYNC.ENABLE: unknown key ignored (did you mean ENABLED?)"), std::string::npos) << out;
  EXPECT_NE(out.find("[a] sync disabled: SYNC.ENABLED is absent"), std::string::npos) << out;
  d->terminate(20s);
}

TEST_F(DaemonLifecycle, SighupReloadsAddingAndRemovingInstancesAndABadFileChangesNothing) {
  auto config = write_config(json::array{provider("a")});
  auto d = daemon(config);
  ASSERT_TRUE(d->wait_for_output("carsyncd ready", 20s)) << d->output();

  write_config(json::array{provider("b")});
  d->signal(SIGHUP);
  ASSERT_TRUE(d->wait_for_output("[a] instance removed", 20s)) << d->output();
  ASSERT_TRUE(d->wait_for_output("[b] sync enabled", 20s)) << d->output();
  EXPECT_NE(d->output().find("reload: 1 instances added, 0 updated, 1 removed"), std::string::npos) << d->output();
  EXPECT_TRUE(fs::is_directory(tmp / "hosts/b/sys/volume-sync"));

  // The new instance works: a request dropped by its app is answered.
  drop_request(tmp / "hosts/b/sys/volume-sync", R"({"archive_paths": ["/app/data/"]})");
  ASSERT_TRUE(poll_until(Clock::now() + 20s, [&] { return fs::exists(tmp / "hosts/b/sys/volume-sync/response.json"); }))
      << d->output();

  write_file(config, "{ broken");
  d->signal(SIGHUP);
  ASSERT_TRUE(d->wait_for_output("nothing changed", 20s)) << d->output();
  EXPECT_FALSE(d->wait_exit(200ms).has_value()) << "a bad reload stopped the daemon";

  const auto t0 = Clock::now();
  auto stopped = d->terminate(20s);
  ASSERT_TRUE(stopped.has_value());
  EXPECT_TRUE(WIFEXITED(*stopped));
  EXPECT_EQ(WEXITSTATUS(*stopped), 0);
  EXPECT_LT(Clock::now() - t0, 5s);  // idle: no grace period is waited out
}

TEST_F(DaemonLifecycle, CliRefusesRecoverAndUnhaltBehindARunningDaemon) {
  auto config = write_config(json::array{provider("a")});
  auto d = daemon(config);
  ASSERT_TRUE(d->wait_for_output("carsyncd ready", 20s)) << d->output();
  for (const char* cmd : {"recover", "unhalt"}) {
    std::vector<std::string> argv{CARSYNC_CLI_PATH, "--config", config.string(), cmd};
    if (std::string(cmd) == "unhalt") argv.push_back("a");
    ChildProcess cli(argv);
    auto status = cli.wait_exit(10s);
    ASSERT_TRUE(status.has_value()) << cmd;
    EXPECT_EQ(WEXITSTATUS(*status), 3) << cmd << ": " << cli.output();
    EXPECT_NE(cli.output().find("pid " + std::to_string(d->pid())), std::string::npos) << cli.output();
  }
  d->terminate(20s);
  // With the daemon gone the same commands run.
  ChildProcess recover({CARSYNC_CLI_PATH, "--config", config.string(), "recover"});
  auto status = recover.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 0) << recover.output();
}

TEST_F(DaemonLifecycle, VersionFlag) {
  ChildProcess v({CARSYNCD_PATH, "--version"});
  auto status = v.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_NE(v.output().find("carsyncd "), std::string::npos) << v.output();
}

}  // namespace
}  // namespace carsync::test
