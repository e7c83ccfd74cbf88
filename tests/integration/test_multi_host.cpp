// Three hosts and one edge node: a provider and two consumers, each a carsyncd with its own
// data directory, all talking to one devnode over HTTP (backend "r1"). Nothing is shared
// but the devnode: the consumers learn of each record by polling it, download the archive
// from it, and must end up with volumes identical to each other and to the provider's.
//
// Where the kernel lets us (root, `ip netns`), every process runs in its own network
// namespace: the devnode's namespace is joined to each host's by a veth pair with a
// private /30 (10.231.N.1 devnode side, 10.231.N.2 host side) and no other route, so the
// hosts reach the devnode only over their link. Otherwise everything runs on loopback, and
// the test says so (CARSYNC_TEST_NO_NETNS=1 forces that).
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/tree_snapshot.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace carsync::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr auto start_deadline = std::chrono::seconds(30);
constexpr auto apply_deadline = std::chrono::seconds(60);
constexpr std::string_view sync_key = "7d1e9c4b-2a6f-4b3e-9c8d-1f0a5e6b7c21";
constexpr int host_count = 3;  // provider, consumer 1, consumer 2

// Where each process runs and how the hosts reach the devnode.
class Topology {
 public:
  virtual ~Topology() = default;
  virtual std::string describe() const = 0;
  // argv prefix that runs a command on host `i` (-1: the devnode's host).
  virtual std::vector<std::string> on_host(int i) const = 0;
  virtual std::vector<std::string> devnode_listen_args() const = 0;
  // The devnode's service URLs as host `i` sees them, given its ready line.
  virtual std::optional<DevnodeUrls> urls_for(int i, const std::string& devnode_log) const = 0;
};

class Loopback final : public Topology {
 public:
  explicit Loopback(std::string why) : why_(std::move(why)) {}
  std::string describe() const override { return "all hosts on loopback (" + why_ + ")"; }
  std::vector<std::string> on_host(int) const override { return {}; }
  std::vector<std::string> devnode_listen_args() const override {
    return {"--listen", "127.0.0.1", "--cstore-port", "0", "--r1fs-port", "0"};
  }
  std::optional<DevnodeUrls> urls_for(int, const std::string& log) const override { return parse_devnode_ready(log); }

 private:
  std::string why_;
};

// One namespace per process; deleted (taking its veth ends along) on destruction. The
// processes inside must be gone by then, or the namespace lingers until they exit.
class Namespaces final : public Topology {
 public:
  static constexpr int cstore_port = 31234, r1fs_port = 31235;  // private to the devnode's namespace

  // nullptr, with the reason in why_not, when namespaces cannot be set up here.
  static std::unique_ptr<Namespaces> create(std::string& why_not) {
    if (::geteuid() != 0) {
      why_not = "not root";
      return nullptr;
    }
    if (const char* off = std::getenv("CARSYNC_TEST_NO_NETNS"); off && *off && std::string_view(off) != "0") {
      why_not = "CARSYNC_TEST_NO_NETNS is set";
      return nullptr;
    }
    auto ns = std::unique_ptr<Namespaces>(new Namespaces);
    const std::string tag = "cs" + std::to_string(::getpid());
    auto ip = [&](std::vector<std::string> args) {
      args.insert(args.begin(), "ip");
      if (run_quiet(args) == 0) return true;
      why_not = "`";
      for (const auto& a : args) why_not += a + (&a == &args.back() ? "" : " ");
      why_not += "` failed";
      return false;
    };
    auto add_ns = [&](const std::string& name) {
      if (!ip({"netns", "add", name})) return false;
      ns->names_.push_back(name);
      return ip({"-n", name, "link", "set", "lo", "up"});
    };
    ns->dev_ = tag + "dev";
    if (!add_ns(ns->dev_)) return nullptr;
    for (int i = 0; i < host_count; ++i) {
      const std::string host = tag + "h" + std::to_string(i);
      const std::string dev_end = tag + "vd" + std::to_string(i), host_end = tag + "vh" + std::to_string(i);
      const std::string subnet = "10.231." + std::to_string(i + 1) + ".";
      if (!add_ns(host) ||
          !ip({"link", "add", dev_end, "netns", ns->dev_, "type", "veth", "peer", "name", host_end, "netns", host}) ||
          !ip({"-n", ns->dev_, "addr", "add", subnet + "1/30", "dev", dev_end}) ||
          !ip({"-n", host, "addr", "add", subnet + "2/30", "dev", host_end}) ||
          !ip({"-n", ns->dev_, "link", "set", dev_end, "up"}) || !ip({"-n", host, "link", "set", host_end, "up"}))
        return nullptr;
      ns->hosts_.push_back(host);
    }
    return ns;
  }

  ~Namespaces() override {
    for (const auto& name : names_) run_quiet({"ip", "netns", "del", name});
  }

  std::string describe() const override {
    return "one network namespace per process, each host joined to the devnode's by its own veth /30";
  }
  std::vector<std::string> on_host(int i) const override {
    return {"ip", "netns", "exec", i < 0 ? dev_ : hosts_.at(static_cast<std::size_t>(i))};
  }
  std::vector<std::string> devnode_listen_args() const override {
    // Every address of the devnode's own namespace: its loopback and its veth ends.
    return {"--listen", "0.0.0.0", "--cstore-port", std::to_string(cstore_port), "--r1fs-port",
            std::to_string(r1fs_port)};
  }
  std::optional<DevnodeUrls> urls_for(int i, const std::string&) const override {
    const std::string host = "http://10.231." + std::to_string(i + 1) + ".1:";
    return DevnodeUrls{host + std::to_string(cstore_port), host + std::to_string(r1fs_port)};
  }

 private:
  Namespaces() = default;
  std::string dev_;
  std::vector<std::string> hosts_;
  std::vector<std::string> names_;  // every namespace created, for teardown
};

struct Host {
  std::string id;
  fs::path data_dir, system_volume, data_volume;
  fs::path control_dir() const { return system_volume / "volume-sync"; }
};

Host make_host(const TempDir& tmp, const std::string& id) {
  const fs::path root = tmp / id / "edge/fixed_volumes/mounts";
  Host h{id, tmp / id / "carsync", root / "r1en_system", root / "appdata"};
  fs::create_directories(h.system_volume);
  fs::create_directories(h.data_volume);
  return h;
}

void write_config(const fs::path& file, const Host& host, std::string_view role, const DevnodeUrls& urls) {
  json::object instance{
      {"id", host.id},
      {"container", nullptr},
      {"system_volume", host.system_volume.string()},
      {"volumes", json::object{{host.data_volume.string(), json::object{{"bind", "/app/data"}}}}},
      {"SYNC", json::object{{"ENABLED", true}, {"KEY", sync_key}, {"TYPE", role}, {"POLL_INTERVAL", 1}}},
  };
  write_file(file, json::serialize(json::object{
                       {"data_dir", host.data_dir.string()},
                       {"control_socket", (host.data_dir / "carsyncd.sock").string()},
                       {"node_id", "host-" + host.id},
                       {"backend", json::object{{"kind", "r1"}, {"cstore_url", urls.cstore}, {"r1fs_url", urls.r1fs}}},
                       {"limits", json::object{{"rescan_interval_s", 3600},
                                               {"store_timeout_s", 10},
                                               {"step_timeout_s", 30},
                                               {"shutdown_grace_s", 5}}},
                       {"instances", json::array{std::move(instance)}},
                   }));
}

// The consumer normalises permissions (§8.5: owner rw and directory traversal granted,
// special bits stripped); everything else must be identical.
TreeSnapshot normalised(TreeSnapshot tree) {
  for (auto& [path, node] : tree) node.mode = (node.mode & 0777) | (node.type == 'd' ? 0755 : 0644);
  return tree;
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class MultiHost : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why_not;
    topology = Namespaces::create(why_not);
    if (!topology) topology = std::make_unique<Loopback>("network namespaces unavailable: " + why_not);
    std::printf("[ topology ] %s\n", topology->describe().c_str());
  }

  void TearDown() override {
    // Processes before namespaces: a namespace with a process inside outlives its deletion.
    for (auto& d : daemons) stop(d, "carsyncd");
    stop(devnode, "devnode");
    topology.reset();
  }

  void stop(std::unique_ptr<ChildProcess>& child, const char* what) {
    if (!child) return;
    const auto status = child->terminate(std::chrono::seconds(15));
    EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << what << " did not exit cleanly on SIGTERM\n"
        << child->output();
    child.reset();
  }

  // Drops a request and waits for the publish and for both consumers' applies; returns
  // the published CID (empty, with the test failed, otherwise).
  std::string publish_and_wait(int epoch) {
    const Host& provider = hosts[0];
    std::error_code ec;
    fs::remove(provider.control_dir() / "response.json", ec);
    const auto started = Clock::now();
    const auto deadline = started + apply_deadline;
    drop_request(provider.control_dir(),
                 R"({"archive_paths": ["/app/data"], "metadata": {"epoch": )" + std::to_string(epoch) + "}}");

    std::optional<json::object> response;
    const bool published = poll_until(
        deadline, [&] { return (response = read_json_object(provider.control_dir() / "response.json")).has_value(); });
    EXPECT_TRUE(published) << "no response.json\n" << daemons[0]->output() << devnode->output();
    if (!published) return {};
    const auto published_at = Clock::now();
    EXPECT_EQ(response->at("status"), json::value("ok")) << json::serialize(*response) << daemons[0]->output();
    if (!response->contains("cid")) return {};
    const json::value cid = response->at("cid");

    for (int i = 1; i < host_count; ++i) {
      std::optional<json::object> last;
      const bool applied = poll_until(deadline, [&] {
        last = read_json_object(hosts[i].control_dir() / "last_apply.json");
        return last && last->at("cid") == cid;
      });
      EXPECT_TRUE(applied) << hosts[i].id << ": no last_apply.json for " << json::serialize(cid) << "\n"
                           << daemons[i]->output();
      if (!applied) return {};
      EXPECT_EQ(last->at("metadata"), json::value(json::object{{"epoch", epoch}}));
    }
    std::printf("[ measure  ] epoch %d: request -> response.json %.3f s, publish -> both applied %.3f s\n", epoch,
                std::chrono::duration<double>(published_at - started).count(),
                std::chrono::duration<double>(Clock::now() - published_at).count());
    return std::string(cid.as_string());
  }

  void expect_volumes_match() {
    const auto expected = normalised(snapshot_tree(hosts[0].data_volume));
    const auto first = snapshot_tree(hosts[1].data_volume);
    EXPECT_EQ(normalised(first), expected);
    EXPECT_EQ(snapshot_tree(hosts[2].data_volume), first);  // the consumers agree exactly
  }

  TempDir tmp;
  std::unique_ptr<Topology> topology;
  std::array<Host, host_count> hosts{make_host(tmp, "provider"), make_host(tmp, "consumer1"),
                                     make_host(tmp, "consumer2")};
  std::unique_ptr<ChildProcess> devnode;
  std::vector<std::unique_ptr<ChildProcess>> daemons;
};

TEST_F(MultiHost, TwoConsumersOnTheirOwnHostsApplyWhatTheProviderPublishes) {
  const Host& provider = hosts[0];
  write_file(provider.data_volume / "weights.bin", pattern_bytes(700'001, 11));
  write_file(provider.data_volume / "nested/config.json", R"({"generation": 1})");
  fs::permissions(provider.data_volume / "nested/config.json", fs::perms(0600));
  write_file(provider.data_volume / "nested/empty.txt", "");
  fs::create_directories(provider.data_volume / "empty-dir");

  devnode = std::make_unique<ChildProcess>(concat(
      topology->on_host(-1),
      concat({CARSYNC_DEVNODE_PATH, "--data-dir", (tmp / "devnode").string()}, topology->devnode_listen_args())));
  ASSERT_TRUE(devnode->wait_for_output("devnode ready", start_deadline)) << devnode->output();

  for (int i = 0; i < host_count; ++i) {
    auto urls = topology->urls_for(i, devnode->output());
    ASSERT_TRUE(urls) << devnode->output();
    const auto config = tmp / (hosts[i].id + ".json");
    write_config(config, hosts[i], i == 0 ? "provider" : "consumer", *urls);
    daemons.push_back(std::make_unique<ChildProcess>(
        concat(topology->on_host(i), {CARSYNCD_PATH, "--config", config.string()})));
  }
  for (auto& d : daemons) ASSERT_TRUE(d->wait_for_output("carsyncd ready", start_deadline)) << d->output();

  const auto first = publish_and_wait(1);
  ASSERT_FALSE(first.empty());
  expect_volumes_match();

  // A second snapshot: a changed file, a new file in a new directory, a grown one.
  write_file(provider.data_volume / "weights.bin", pattern_bytes(123'457, 12));
  write_file(provider.data_volume / "nested/deeper/new.txt", "added in generation 2");
  write_file(provider.data_volume / "nested/empty.txt", "no longer empty");
  const auto second = publish_and_wait(2);
  ASSERT_FALSE(second.empty());
  EXPECT_NE(second, first);
  expect_volumes_match();

  // Each consumer downloaded each snapshot itself, into its own data directory.
  for (int i = 1; i < host_count; ++i) {
    EXPECT_NE(daemons[i]->output().find("downloaded cid=" + second), std::string::npos) << daemons[i]->output();
    EXPECT_TRUE(fs::exists(hosts[i].data_dir / "downloads")) << hosts[i].id;
  }
}

}  // namespace
}  // namespace carsync::test
