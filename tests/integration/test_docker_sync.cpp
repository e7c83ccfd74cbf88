// carsyncd driving real containers on a private Docker Engine (tests/fixtures/dockerd.sh):
// busybox apps that keep their state in bind-mounted volumes, write their own request.json
// and log every boot and SIGTERM, so each test can see from the app's side that it was
// stopped before its volume was read or written and started again afterwards. Where
// dockerd cannot run, every test skips with the fixture's reason.
#include "net/docker_client.hpp"
#include "support/child_process.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"
#include "support/tree_snapshot.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace carsync::test {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto poll_step = 50ms;
constexpr auto ready_deadline = 30s;
constexpr auto sync_deadline = 60s;
constexpr std::string_view image = "carsync-busybox:latest";

template <class T>
T run(asio::awaitable<T> op) {
  asio::io_context ioc;
  auto result = asio::co_spawn(ioc, std::move(op), asio::use_future);
  ioc.run();
  return result.get();
}

bool poll_until(Clock::duration limit, const std::function<bool()>& ready) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    if (ready()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll_step);
  }
}

std::string read_or_empty(const fs::path& file) {
  std::error_code ec;
  return fs::exists(file, ec) ? read_file(file) : std::string();
}

std::optional<json::object> read_object(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return std::nullopt;
  return json::parse(read_file(file)).as_object();
}

// Relative path -> bytes of every regular file under `root`.
std::map<std::string, std::string> files_under(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (auto& [path, node] : snapshot_tree(root))
    if (node.type == 'f') files.emplace(path, node.data);
  return files;
}

// --- The engine ---------------------------------------------------------------------------

// One private engine per test program, started by the first test that needs it (so test
// processes without Docker tests never pay for it) and stopped by its pidfile at the end.
// CARSYNC_TEST_DOCKER_SOCKET names an engine shared by a whole ctest run instead.
class DockerEngine : public ::testing::Environment {
 public:
  static DockerEngine& get();

  // The socket, or nullopt with reason() saying why there is no engine.
  const std::optional<std::string>& socket() {
    if (!tried_) start();
    return socket_;
  }
  const std::string& reason() const { return reason_; }
  bool broken() const { return broken_; }  // the fixture failed for another reason than "unavailable"

  void TearDown() override {
    if (dir_) fixture("stop");
    dir_.reset();
  }

 private:
  static fs::path script() { return fs::path(__FILE__).parent_path().parent_path() / "fixtures/dockerd.sh"; }

  int fixture(const char* verb, std::string* out = nullptr) {
    const auto err = dir_->path() / "fixture.err";
    auto r = shell("bash " + shell_quote(script().string()) + " " + verb + " " + shell_quote(dir_->path().string()) +
                   " 2>" + shell_quote(err.string()));
    if (out) *out = std::move(r.out);
    return r.exit_code;
  }

  void start() {
    tried_ = true;
    if (const char* shared = std::getenv("CARSYNC_TEST_DOCKER_SOCKET"); shared && *shared) {
      socket_ = shared;
      return;
    }
    dir_.emplace();
    std::string out;
    const int rc = fixture("start", &out);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    if (rc == 0 && !out.empty()) {
      socket_ = out;
      return;
    }
    reason_ = read_or_empty(dir_->path() / "fixture.err");
    broken_ = rc != 77;
    if (broken_) reason_ = "tests/fixtures/dockerd.sh start failed (exit " + std::to_string(rc) + "): " + reason_;
  }

  bool tried_ = false;
  bool broken_ = false;
  std::optional<TempDir> dir_;
  std::optional<std::string> socket_;
  std::string reason_;
};

DockerEngine* const kEngine = static_cast<DockerEngine*>(::testing::AddGlobalTestEnvironment(new DockerEngine));
DockerEngine& DockerEngine::get() { return *kEngine; }

// --- Apps ---------------------------------------------------------------------------------

// An app's host directories, where rule 3 (§6.2) accepts them: the system volume, the
// synced data volume (/app/data) and a log volume carsync knows nothing about (/app/log).
struct Side {
  std::string id;
  fs::path system_volume, data, log;
  fs::path control_dir() const { return system_volume / "volume-sync"; }
  // The boot/term log of the consumer app (the provider app keeps its log in `data`).
  std::string events() const { return read_or_empty(log / "events"); }
};

Side make_side(const TempDir& tmp, const std::string& id) {
  const fs::path root = tmp / "edge" / id / "fixed_volumes/mounts";
  Side s{id, root / "r1en_system", root / "appdata", root / "applog"};
  for (const auto* dir : {&s.system_volume, &s.data, &s.log}) fs::create_directories(*dir);
  return s;
}

// Every app logs its SIGTERMs to `events_file` (`wait` lets the trap run at once, so a stop
// needs no SIGKILL), runs `body` (which logs the boot) and idles.
std::string app_script(std::string_view events_file, std::string_view body) {
  return "trap 'echo term >> " + std::string(events_file) + "; exit 0' TERM\n" + std::string(body) +
         "sleep 3600 & wait\n";
}

// On its first boot the provider app writes its state and then, as an app does, its own
// request (temp name, then rename). Its events log lives in the synced volume, so the
// archive shows at which point of the app's life it was captured. The boot is logged
// first: once the request is in place, carsyncd may stop the app at any moment.
const std::string provider_app = app_script("/app/data/events", R"(echo boot >> /app/data/events
if [ ! -e /app/log/requested ]; then
  mkdir -p /app/data/nested
  echo 'generation 1' > /app/data/state.txt
  head -c 200000 /dev/urandom > /app/data/nested/blob.bin
  while [ ! -d /r1en_system/volume-sync ]; do sleep 0.05; done
  touch /app/log/requested
  echo '{"archive_paths": ["/app/data"], "metadata": {"writer": "container"}}' > /r1en_system/volume-sync/.request.tmp
  mv /r1en_system/volume-sync/.request.tmp /r1en_system/volume-sync/request.json
fi
)");

// The consumer app copies what it finds in /app/data at boot to /app/log/seen and then
// logs the boot: once "boot" is logged, the copy is what the app saw.
const std::string consumer_app = app_script("/app/log/events", R"(
rm -rf /app/log/seen && mkdir /app/log/seen && cp -R /app/data/. /app/log/seen/
echo boot >> /app/log/events
)");

struct ContainerState {
  bool running = false;
  std::string started_at;
};

// A container of one app, removed (forced) when the test ends, however it ends.
class AppContainer {
 public:
  AppContainer(net::DockerClient& engine, std::string name, const Side& side, const std::string& script)
      : engine_(engine), name_(std::move(name)) {
    json::object spec{
        {"Image", image},
        {"Cmd", json::array{"sh", "-c", script}},
        {"HostConfig",
         {{"Binds", json::array{side.system_volume.string() + ":/r1en_system", side.data.string() + ":/app/data",
                                side.log.string() + ":/app/log"}},
          {"NetworkMode", "none"}}},
    };
    auto id = run(engine_.create_container(name_, std::move(spec)));
    if (!id) throw std::runtime_error(id.error().message);
    auto started = run(engine_.start(name_));
    if (!started) {
      remove();
      throw std::runtime_error(started.error().message);
    }
  }
  ~AppContainer() { remove(); }
  AppContainer(const AppContainer&) = delete;
  AppContainer& operator=(const AppContainer&) = delete;

  const std::string& name() const { return name_; }

  ContainerState state() {
    auto reply = run(engine_.call(net::Method::get, "/containers/" + name_ + "/json", "", 10s));
    if (!reply) throw std::runtime_error(reply.error().message);
    if (reply->status != 200) throw std::runtime_error("inspect " + name_ + ": HTTP " + std::to_string(reply->status));
    const auto doc = json::parse(reply->body);
    const auto& st = doc.at("State").as_object();
    return {st.at("Running").as_bool(), std::string(st.at("StartedAt").as_string())};
  }

 private:
  void remove() {
    auto removed = run(engine_.remove_container(name_));
    if (!removed) ADD_FAILURE() << removed.error().message;
  }

  net::DockerClient& engine_;
  std::string name_;
};

// --- carsyncd -----------------------------------------------------------------------------

// carsyncd as a child process, stopped with SIGTERM so that lifecycles in flight give their
// containers back; SIGKILL after 15 s.
struct Daemon : ChildProcess {
  explicit Daemon(const fs::path& config) : ChildProcess({CARSYNCD_PATH, "--config", config.string()}) {}
  ~Daemon() { terminate(15s); }  // SIGKILL (ChildProcess) only if it has not exited by then
};

// --- The tests ----------------------------------------------------------------------------

class DockerSync : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& engine = DockerEngine::get();
    if (!engine.socket()) {
      if (engine.broken()) FAIL() << engine.reason();
      GTEST_SKIP() << engine.reason();
    }
    socket_ = *engine.socket();
    net::DockerLimits limits;
    limits.stop_grace = 2s;
    engine_.emplace(socket_, limits);
    key_ = "e2e-" + std::to_string(::getpid()) + "-" + test_name();
  }

  static std::string test_name() { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }
  std::string container_name(std::string_view role) const { return key_ + "-" + std::string(role); }

  AppContainer app(const Side& side, const std::string& script) {
    return AppContainer(*engine_, container_name(side.id), side, script);
  }

  json::object instance(const Side& side, std::string_view role, std::optional<std::string> container,
                        json::object extra_sync = {}) const {
    json::object sync{{"ENABLED", true}, {"KEY", key_}, {"TYPE", role}};
    for (auto& kv : extra_sync) sync[kv.key()] = kv.value();
    return json::object{
        {"id", side.id},
        {"container", container ? json::value(*container) : json::value(nullptr)},
        {"system_volume", side.system_volume.string()},
        {"volumes", json::object{{side.data.string(), json::object{{"bind", "/app/data"}}}}},
        {"SYNC", std::move(sync)},
    };
  }

  // Starts carsyncd on these instances and waits until it is serving them.
  std::unique_ptr<Daemon> start_daemon(json::array instances) {
    write_file(tmp / "node.json", json::serialize(json::object{
                                      {"data_dir", data_dir().string()},
                                      {"control_socket", (data_dir() / "carsyncd.sock").string()},
                                      {"node_id", "e2e-node"},
                                      {"backend", json::object{{"kind", "local"}}},
                                      {"docker_socket", "unix://" + socket_},
                                      {"instances", std::move(instances)},
                                  }));
    auto daemon = std::make_unique<Daemon>(tmp / "node.json");
    EXPECT_TRUE(daemon->wait_for_output("carsyncd ready", ready_deadline)) << daemon->output();
    return daemon;
  }

  fs::path data_dir() const { return tmp / "state"; }
  fs::path state_dir(const Side& side) const { return data_dir() / "instances" / side.id / "sync_history/state"; }

  // The provider's answer, once there is one.
  std::optional<json::object> wait_response(const Side& provider, Daemon& daemon) {
    std::optional<json::object> response;
    const bool answered = poll_until(sync_deadline, [&] {
      return (response = read_object(provider.control_dir() / "response.json")).has_value();
    });
    EXPECT_TRUE(answered) << "no response.json\n" << daemon.output();
    return response;
  }

  // The published archive, fetched with the operator CLI and unpacked with GNU tar.
  std::map<std::string, std::string> archive_files(const std::string& cid) {
    const fs::path archive = tmp / "fetched.tar.gz", out = tmp / "fetched";
    auto get = shell(shell_quote(CARSYNC_CLI_PATH) + " --data-dir " + shell_quote(data_dir().string()) + " cas get " +
                     shell_quote(cid) + " -o " + shell_quote(archive.string()));
    if (get.exit_code != 0) throw std::runtime_error("carsync cas get failed: " + get.out);
    fs::create_directories(out);
    if (shell("tar -xzf " + shell_quote(archive.string()) + " -C " + shell_quote(out.string())).exit_code != 0)
      throw std::runtime_error("tar -xzf failed");
    return files_under(out);
  }

  // As an app without a container would: temp name, then rename.
  static void drop_request(const Side& provider) {
    const auto tmp_name = provider.control_dir() / ".request.json.app-tmp";
    write_file(tmp_name, R"({"archive_paths": ["/app/data"], "metadata": {"writer": "host"}})");
    fs::rename(tmp_name, provider.control_dir() / "request.json");
  }

  TempDir tmp;
  std::string socket_;
  std::optional<net::DockerClient> engine_;
  std::string key_;
};

// The app in its container writes its state and its request; carsyncd stops the container,
// captures the volume, starts the container again and publishes.
TEST_F(DockerSync, M155_ProviderContainerIsStoppedForTheCaptureAndStartedAgain) {
  const Side provider = make_side(tmp, "prov");
  AppContainer app_container = app(provider, provider_app);
  const auto first_boot = app_container.state();
  ASSERT_TRUE(first_boot.running);
  auto daemon = start_daemon(json::array{instance(provider, "provider", app_container.name())});

  auto response = wait_response(provider, *daemon);
  ASSERT_TRUE(response);
  ASSERT_EQ(response->at("status"), json::value("ok")) << json::serialize(*response) << "\n" << daemon->output();

  // Stopped with SIGTERM, then booted again once the archive was sealed.
  const auto events = [&] { return read_or_empty(provider.data / "events"); };
  ASSERT_TRUE(poll_until(sync_deadline, [&] { return events() == "boot\nterm\nboot\n"; }))
      << events() << daemon->output();
  const auto second_boot = app_container.state();
  EXPECT_TRUE(second_boot.running);
  EXPECT_NE(second_boot.started_at, first_boot.started_at);

  // The archive holds the app's state as it was while stopped: the events log ends at "term".
  auto expected = files_under(provider.data);
  expected.at("events") = "boot\nterm\n";
  std::map<std::string, std::string> archived;
  for (auto& [path, bytes] : archive_files(std::string(response->at("cid").as_string()))) {
    ASSERT_TRUE(path.starts_with("app/data/")) << path;
    archived.emplace(path.substr(std::string_view("app/data/").size()), std::move(bytes));
  }
  EXPECT_EQ(archived, expected);
  EXPECT_EQ(expected.at("state.txt"), "generation 1\n");
  EXPECT_EQ(expected.at("nested/blob.bin").size(), 200000u);
}

// Provider and consumer apps in their containers, one carsyncd for both: the consumer's
// container is stopped for the apply and its app finds the snapshot when it boots again.
TEST_F(DockerSync, N162_ConsumerContainerIsStoppedForTheApplyAndSeesTheSnapshotAfterRestart) {
  const Side provider = make_side(tmp, "prov"), consumer = make_side(tmp, "cons");
  write_file(consumer.data / "local.txt", "the consumer's own file");  // overlay: kept
  AppContainer provider_container = app(provider, provider_app);
  AppContainer consumer_container = app(consumer, consumer_app);
  ASSERT_TRUE(poll_until(ready_deadline, [&] { return consumer.events() == "boot\n"; })) << consumer.events();
  const auto first_boot = consumer_container.state();
  EXPECT_EQ(files_under(consumer.log / "seen"), files_under(consumer.data));  // only local.txt yet

  auto daemon = start_daemon(json::array{instance(provider, "provider", provider_container.name()),
                                         instance(consumer, "consumer", consumer_container.name())});
  auto response = wait_response(provider, *daemon);
  ASSERT_TRUE(response);
  ASSERT_EQ(response->at("status"), json::value("ok")) << json::serialize(*response) << "\n" << daemon->output();

  std::optional<json::object> last;
  ASSERT_TRUE(poll_until(sync_deadline, [&] {
    last = read_object(consumer.control_dir() / "last_apply.json");
    return last && last->at("cid") == response->at("cid");
  })) << daemon->output();
  EXPECT_EQ(last->at("metadata"), json::value(json::object{{"writer", "container"}}));

  ASSERT_TRUE(poll_until(sync_deadline, [&] { return consumer.events() == "boot\nterm\nboot\n"; }))
      << consumer.events() << daemon->output();
  const auto second_boot = consumer_container.state();
  EXPECT_TRUE(second_boot.running);
  EXPECT_NE(second_boot.started_at, first_boot.started_at);

  // What the app saw at its second boot: the provider's snapshot (captured while the
  // provider app was stopped) over its own file.
  auto expected = files_under(provider.data);
  expected.at("events") = "boot\nterm\n";
  expected.emplace("local.txt", "the consumer's own file");
  EXPECT_EQ(files_under(consumer.log / "seen"), expected);
  EXPECT_EQ(files_under(consumer.data), expected);
}

// The consumer's container cannot be stopped (the engine has no such container, as after
// an operator removed it): nothing in the volume may change, and the CID is quarantined.
TEST_F(DockerSync, N174_ConsumerStopFailureLeavesTheVolumeUntouchedAndQuarantines) {
  const Side provider = make_side(tmp, "prov"), consumer = make_side(tmp, "cons");
  write_file(provider.data / "state.txt", "generation 1\n");
  write_file(provider.data / "local.txt", "the provider's version");
  write_file(consumer.data / "local.txt", "the consumer's version");
  fs::create_directories(consumer.data / "empty-dir");
  const auto before = snapshot_tree(consumer.data);
  const std::string absent = container_name("absent");

  auto daemon = start_daemon(
      json::array{instance(provider, "provider", std::nullopt), instance(consumer, "consumer", absent)});
  drop_request(provider);
  auto response = wait_response(provider, *daemon);
  ASSERT_TRUE(response);
  ASSERT_EQ(response->at("status"), json::value("ok")) << json::serialize(*response);
  ASSERT_TRUE(daemon->wait_for_output("not applied (stop_failed)", sync_deadline)) << daemon->output();

  const fs::path quarantine = state_dir(consumer) / "quarantine";
  std::vector<json::object> entries;
  for (const auto& e : fs::directory_iterator(quarantine)) entries.push_back(*read_object(e.path()));
  ASSERT_EQ(entries.size(), 1u) << daemon->output();
  EXPECT_EQ(entries[0].at("cid"), response->at("cid"));
  EXPECT_EQ(entries[0].at("stage"), json::value("runtime_stop"));
  EXPECT_NE(std::string(entries[0].at("error").as_string()).find(absent), std::string::npos)
      << json::serialize(entries[0]);

  EXPECT_EQ(snapshot_tree(consumer.data), before);
  EXPECT_FALSE(fs::exists(consumer.control_dir() / "last_apply.json"));
  std::error_code ec;
  EXPECT_TRUE(!fs::exists(state_dir(consumer).parent_path() / "received", ec) ||
              fs::is_empty(state_dir(consumer).parent_path() / "received"));
  EXPECT_TRUE(!fs::exists(state_dir(consumer) / "staging", ec) || fs::is_empty(state_dir(consumer) / "staging"));
}

// The provider's container cannot be stopped: the request fails at runtime_stop and
// nothing is read, uploaded or published.
TEST_F(DockerSync, M160_ProviderStopFailureReportsRuntimeStopAndPublishesNothing) {
  const Side provider = make_side(tmp, "prov");
  write_file(provider.data / "state.txt", "generation 1\n");
  auto daemon = start_daemon(json::array{instance(provider, "provider", container_name("absent"))});
  drop_request(provider);

  auto response = wait_response(provider, *daemon);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->at("status"), json::value("error"));
  EXPECT_EQ(response->at("stage"), json::value("runtime_stop"));
  EXPECT_EQ(response->at("error"), json::value("could not stop/remove container for offline provider capture"));
  auto invalid = read_object(provider.control_dir() / "request.json.invalid");
  ASSERT_TRUE(invalid);
  EXPECT_EQ(invalid->at("_error").at("stage"), json::value("runtime_stop"));
  // Discarded after response.json is written (§5.4).
  EXPECT_TRUE(poll_until(ready_deadline, [&] { return !fs::exists(provider.control_dir() / "request.json.processing"); }));

  auto hget = shell(shell_quote(CARSYNC_CLI_PATH) + " --data-dir " + shell_quote(data_dir().string()) +
                    " kv hget CHAINSTORE_SYNC " + shell_quote(key_) + " 2>/dev/null");
  EXPECT_NE(hget.exit_code, 0) << "a record was published: " << hget.out;
  std::error_code ec;
  const fs::path cas = data_dir() / "cas", sent = data_dir() / "instances" / provider.id / "sync_history/sent";
  std::size_t blobs = 0;
  if (fs::exists(cas, ec))
    for (const auto& e : fs::recursive_directory_iterator(cas)) blobs += e.is_regular_file();
  EXPECT_EQ(blobs, 0u) << "an archive was uploaded";
  EXPECT_TRUE(!fs::exists(sent, ec) || fs::is_empty(sent));
}

// SYNC.INITIAL_SYNC_TIMEOUT 0: a fresh consumer's container is held stopped until the first
// snapshot is applied, and then boots straight onto it.
TEST_F(DockerSync, ConsumerContainerIsHeldStoppedUntilTheFirstApply) {
  const Side provider = make_side(tmp, "prov"), consumer = make_side(tmp, "cons");
  write_file(provider.data / "state.txt", "generation 1\n");
  write_file(provider.data / "nested/config.json", R"({"epoch": 3})");
  AppContainer consumer_container = app(consumer, consumer_app);
  ASSERT_TRUE(poll_until(ready_deadline, [&] { return consumer.events() == "boot\n"; })) << consumer.events();

  auto daemon = start_daemon(
      json::array{instance(provider, "provider", std::nullopt),
                  instance(consumer, "consumer", consumer_container.name(), {{"INITIAL_SYNC_TIMEOUT", 0}})});
  ASSERT_TRUE(poll_until(ready_deadline, [&] { return !consumer_container.state().running; })) << daemon->output();
  EXPECT_EQ(consumer.events(), "boot\nterm\n");

  drop_request(provider);
  auto response = wait_response(provider, *daemon);
  ASSERT_TRUE(response);
  ASSERT_EQ(response->at("status"), json::value("ok")) << json::serialize(*response);
  ASSERT_TRUE(poll_until(sync_deadline, [&] { return consumer.events() == "boot\nterm\nboot\n"; }))
      << consumer.events() << daemon->output();
  EXPECT_TRUE(consumer_container.state().running);
  // Its first boot after the gate already saw the snapshot.
  EXPECT_EQ(files_under(consumer.log / "seen"), files_under(provider.data));
}

}  // namespace
}  // namespace carsync::test
