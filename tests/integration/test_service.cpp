// carsyncd under systemd, without systemd: the test owns the NOTIFY_SOCKET datagram socket
// systemd would listen on and checks what the daemon tells it (READY, watchdog keep-alives,
// RELOADING/READY around SIGHUP, STOPPING on SIGTERM), and reads its --log-format json lines.
#include "io/unique_fd.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/time_scale.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace carsync::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// systemd's end of sd_notify: one datagram per notification, kept in arrival order.
class NotifySocket {
 public:
  explicit NotifySocket(fs::path path) : path_(std::move(path)) {
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd_) throw std::runtime_error("socket failed");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("bind " + path_.string() + ": " + std::strerror(errno));
  }
  const fs::path& path() const { return path_; }

  // Receives until `count` datagrams equal to `state` have arrived in all, or the deadline.
  bool wait_for(std::string_view state, std::size_t count, Clock::duration limit) {
    const auto deadline = Clock::now() + scaled(limit);
    while (occurrences(state) < count) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return false;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
      if (n > 0) received_.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return true;
  }
  std::size_t occurrences(std::string_view state) const {
    return static_cast<std::size_t>(std::count(received_.begin(), received_.end(), state));
  }
  // The index of the first datagram at or after `from` whose first line is `line`.
  std::optional<std::size_t> find(std::string_view first_line, std::size_t from = 0) const {
    for (std::size_t i = from; i < received_.size(); ++i)
      if (std::string_view(received_[i]).substr(0, received_[i].find('\n')) == first_line) return i;
    return std::nullopt;
  }
  const std::vector<std::string>& received() const { return received_; }
  std::string dump() const {
    std::string s;
    for (const auto& r : received_) s += "  [" + r + "]\n";
    return s;
  }

 private:
  fs::path path_;
  io::unique_fd fd_;
  std::vector<std::string> received_;
};

class Service : public ::testing::Test {
 protected:
  fs::path write_config() {
    const auto root = tmp / "hosts" / "a";
    fs::create_directories(root / "sys");
    fs::create_directories(root / "data");
    json::object inst{{"id", "a"},
                      {"system_volume", (root / "sys").string()},
                      {"volumes", json::object{{(root / "data").string(), json::object{{"bind", "/app/data"}}}}},
                      {"SYNC", json::object{{"ENABLED", true}, {"KEY", "k"}, {"TYPE", "provider"}}}};
    write_file(tmp / "node.json", json::serialize(json::object{
                                      {"data_dir", (tmp / "state").string()},
                                      {"node_id", "service-node"},
                                      {"control_socket", (tmp / "carsyncd.sock").string()},
                                      {"volume_roots", json::array{(tmp / "hosts/*").string()}},
                                      {"instances", json::array{inst}},
                                  }));
    return tmp / "node.json";
  }

  // carsyncd with systemd's variables; WATCHDOG_PID is the daemon's own pid (exec keeps it).
  // An empty watchdog_pid: the daemon's own.
  std::unique_ptr<ChildProcess> daemon_under_systemd(const NotifySocket& sock, const std::string& watchdog_usec,
                                                     const std::string& watchdog_pid) {
    return std::make_unique<ChildProcess>(std::vector<std::string>{
        "/bin/sh", "-c",
        "export NOTIFY_SOCKET=\"$1\" WATCHDOG_USEC=\"$2\" WATCHDOG_PID=\"${3:-$$}\"; shift 3; exec \"$0\" \"$@\"",
        CARSYNCD_PATH, sock.path().string(), watchdog_usec, watchdog_pid, "--config", write_config().string()});
  }

  TempDir tmp;
};

TEST_F(Service, NotifiesReadyWatchdogReloadAndStopOverNotifySocket) {
  NotifySocket sock(tmp / "notify.sock");
  auto d = daemon_under_systemd(sock, "200000", "");
  ASSERT_TRUE(sock.wait_for("READY=1", 1, 20s)) << sock.dump() << d->output();
  // WATCHDOG_USEC=200 ms: a keep-alive every 100 ms from the event loop.
  ASSERT_TRUE(sock.wait_for("WATCHDOG=1", 3, 10s)) << sock.dump() << d->output();
  const auto status = std::find_if(sock.received().begin(), sock.received().end(),
                                   [](const std::string& s) { return s.starts_with("STATUS="); });
  ASSERT_NE(status, sock.received().end()) << sock.dump();
  EXPECT_EQ(*status, "STATUS=1 instance, 0 syncing, 0 failing");

  d->signal(SIGHUP);
  ASSERT_TRUE(sock.wait_for("READY=1", 2, 20s)) << sock.dump() << d->output();
  const auto reloading = sock.find("RELOADING=1");
  ASSERT_TRUE(reloading) << sock.dump();
  EXPECT_TRUE(sock.received()[*reloading].find("\nMONOTONIC_USEC=") != std::string::npos) << sock.dump();
  const auto ready_again = sock.find("READY=1", *reloading);
  EXPECT_TRUE(ready_again) << "READY=1 must follow RELOADING=1:\n" << sock.dump();
  ASSERT_TRUE(d->wait_for_output("reload: 0 instances added", 10s)) << d->output();

  // The loop keeps its keep-alives after the reload.
  const auto before = sock.occurrences("WATCHDOG=1");
  ASSERT_TRUE(sock.wait_for("WATCHDOG=1", before + 2, 10s)) << sock.dump();

  d->signal(SIGTERM);
  ASSERT_TRUE(sock.wait_for("STOPPING=1", 1, 20s)) << sock.dump() << d->output();
  auto exited = d->wait_exit(30s);
  ASSERT_TRUE(exited.has_value()) << d->output();
  EXPECT_TRUE(WIFEXITED(*exited));
  EXPECT_EQ(WEXITSTATUS(*exited), 0) << d->output();
}

TEST_F(Service, NoKeepAlivesWhenTheWatchdogIsForAnotherProcess) {
  NotifySocket sock(tmp / "notify.sock");
  // WATCHDOG_PID names pid 1: the variables were meant for another process. A 2 ms watchdog
  // (a keep-alive every millisecond were it ours) over a run through a reload and a stop.
  auto d = daemon_under_systemd(sock, "2000", "1");
  ASSERT_TRUE(sock.wait_for("READY=1", 1, 20s)) << sock.dump() << d->output();
  d->signal(SIGHUP);
  ASSERT_TRUE(sock.wait_for("READY=1", 2, 20s)) << sock.dump() << d->output();
  ASSERT_TRUE(d->wait_for_output("reload: 0 instances added", 10s)) << d->output();
  d->signal(SIGTERM);
  ASSERT_TRUE(sock.wait_for("STOPPING=1", 1, 20s)) << sock.dump();
  ASSERT_TRUE(d->wait_exit(30s).has_value());
  EXPECT_EQ(sock.occurrences("WATCHDOG=1"), 0u) << sock.dump();
}

TEST_F(Service, JsonLogFormatWritesOneUtcObjectPerLineWithTheInstance) {
  ChildProcess d({CARSYNCD_PATH, "--config", write_config().string(), "--log-format", "json"});
  ASSERT_TRUE(d.wait_for_output("carsyncd ready", 20s)) << d.output();
  ASSERT_TRUE(d.terminate(20s).has_value());
  std::istringstream lines(d.output());
  std::size_t count = 0;
  bool saw_instance_line = false;
  for (std::string line; std::getline(lines, line);) {
    ++count;
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    ASSERT_FALSE(ec) << "not a JSON line: " << line;
    const auto& o = v.as_object();
    const std::string ts(o.at("ts").as_string());
    EXPECT_EQ(ts.size(), 24u) << ts;
    EXPECT_TRUE(ts.ends_with("Z")) << ts;
    EXPECT_TRUE(o.contains("level") && o.contains("message")) << line;
    if (o.contains("instance") && o.at("instance") == "a" &&
        std::string_view(o.at("message").as_string()).starts_with("sync enabled: role=provider"))
      saw_instance_line = true;
  }
  EXPECT_GT(count, 2u);
  EXPECT_TRUE(saw_instance_line) << d.output();
}

}  // namespace
}  // namespace carsync::test
