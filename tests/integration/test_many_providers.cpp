// The real daemon with 50 provider instances: every app drops its request at the same
// moment; every instance must answer, publish its own record under its own SYNC.KEY, and
// store an archive whose members and bytes match its volume. Checked through the operator
// CLI and GNU tar, the way an operator would look.
#include "support/child_process.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"
#include "support/time_scale.hpp"
#include "unit/io/archive_reader.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace carsync::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

constexpr int instance_count = 50;
constexpr auto poll_step = std::chrono::milliseconds(20);

// One provider instance's layout and the bytes it publishes.
struct Instance {
  std::string id;
  std::string key;
  fs::path system_volume;
  fs::path data_volume;
  std::string state_bytes;
  std::string config_text;

  fs::path control_dir() const { return system_volume / "volume-sync"; }
};

// Distinct per instance, every byte value present, sizes not a multiple of any block size.
std::string state_bytes_for(int i) {
  std::string s;
  std::uint32_t x = 2166136261u ^ static_cast<std::uint32_t>(i);
  const std::size_t size = 3000 + static_cast<std::size_t>(i) * 977;
  for (std::size_t k = 0; k < size; ++k) {
    x = x * 1664525u + 1013904223u;
    s.push_back(static_cast<char>(x >> 24));
  }
  return s;
}

std::vector<Instance> make_instances(const TempDir& tmp) {
  std::vector<Instance> out;
  for (int i = 0; i < instance_count; ++i) {
    char id[16], key[64];
    std::snprintf(id, sizeof id, "p%02d", i);
    std::snprintf(key, sizeof key, "5e2b1c7a-0000-4000-8000-%012d", i);
    const fs::path root = tmp / "edge" / id / "fixed_volumes/mounts";
    Instance inst{id, key, root / "r1en_system", root / "appdata", state_bytes_for(i),
                  std::string(R"({"instance": ")") + id + R"(", "generation": 1})"};
    fs::create_directories(inst.system_volume);
    write_file(inst.data_volume / "state.bin", inst.state_bytes);
    write_file(inst.data_volume / "nested/config.json", inst.config_text);
    out.push_back(std::move(inst));
  }
  return out;
}

json::object node_config(const TempDir& tmp, const std::vector<Instance>& instances) {
  json::array list;
  for (const auto& inst : instances) {
    list.push_back(json::object{
        {"id", inst.id},
        {"container", nullptr},
        {"system_volume", inst.system_volume.string()},
        {"volumes", json::object{{inst.data_volume.string(), json::object{{"bind", "/app/data"}}}}},
        {"SYNC", json::object{{"ENABLED", true}, {"KEY", inst.key}, {"TYPE", "provider"}}},
    });
  }
  return json::object{
      {"data_dir", (tmp / "data").string()},
      {"control_socket", (tmp / "carsyncd.sock").string()},
      {"node_id", "itest-node"},
      {"backend", json::object{{"kind", "local"}}},
      // No safety rescan during the test: every request must be picked up by its event.
      {"limits", json::object{{"rescan_interval_s", 3600}}},
      {"instances", std::move(list)},
  };
}

// As an app would: write elsewhere in the directory, then rename into place.
void drop_request(const Instance& inst) {
  const auto tmp_name = inst.control_dir() / ".request.json.app-tmp";
  write_file(tmp_name, R"({"archive_paths": ["/app/data/"], "metadata": {"instance": ")" + inst.id + R"("}})");
  fs::rename(tmp_name, inst.control_dir() / "request.json");
}

std::string trimmed(std::string name) {
  while (name.ends_with('/')) name.pop_back();
  return name;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

TEST(ManyProviders, FiftyInstancesPublishConcurrently) {
  TempDir tmp;
  const auto instances = make_instances(tmp);
  const fs::path data_dir = tmp / "data";
  write_file(tmp / "node.json", json::serialize(node_config(tmp, instances)));

  ChildProcess daemon({CARSYNCD_PATH, "--config", (tmp / "node.json").string()});
  ASSERT_TRUE(daemon.wait_for_output("carsyncd ready", std::chrono::seconds(30))) << daemon.output();
  for (const auto& inst : instances) ASSERT_TRUE(fs::is_directory(inst.control_dir())) << inst.id;

  const auto writes_started = Clock::now();
  for (const auto& inst : instances) drop_request(inst);

  // Wait for every response.json (20 ms steps, 60 s at most).
  const auto deadline = writes_started + scaled(std::chrono::seconds(60));
  std::set<std::string> answered;
  auto last_response = writes_started;
  while (answered.size() < instances.size() && Clock::now() < deadline) {
    for (const auto& inst : instances)
      if (!answered.count(inst.id) && fs::exists(inst.control_dir() / "response.json")) {
        answered.insert(inst.id);
        last_response = Clock::now();
      }
    if (answered.size() < instances.size()) std::this_thread::sleep_for(poll_step);
  }
  ASSERT_EQ(answered.size(), instances.size()) << daemon.output();
  std::printf("[ measure  ] %d requests -> last response.json after %.3f s (20 ms polling)\n", instance_count,
              std::chrono::duration<double>(last_response - writes_started).count());

  std::set<std::string> cids;
  for (const auto& inst : instances) {
    SCOPED_TRACE(inst.id);
    const auto response = json::parse(read_file(inst.control_dir() / "response.json")).as_object();
    ASSERT_EQ(response.at("status"), json::value("ok")) << json::serialize(response);
    EXPECT_FALSE(fs::exists(inst.control_dir() / "request.json.processing"));
    EXPECT_FALSE(fs::exists(inst.control_dir() / "request.json.invalid"));
    const std::string cid(response.at("cid").as_string());
    cids.insert(cid);

    // The record under this instance's own key, through the operator CLI.
    auto hget = shell(shell_quote(CARSYNC_CLI_PATH) + " --data-dir " + shell_quote(data_dir.string()) +
                      " kv hget CHAINSTORE_SYNC " + shell_quote(inst.key));
    ASSERT_EQ(hget.exit_code, 0) << hget.out;
    const auto record = json::parse(hget.out).as_object();
    EXPECT_EQ(record.at("cid"), json::value(cid));
    EXPECT_EQ(record.at("node_id"), json::value("itest-node"));
    EXPECT_EQ(record.at("metadata"), json::value(json::object{{"instance", inst.id}}));
    EXPECT_EQ(record.at("manifest").at("archive_paths"), json::value(json::array{"/app/data/"}));
    EXPECT_EQ(record.at("manifest").at("archive_size_bytes"), response.at("archive_size_bytes"));

    const fs::path archive = tmp / ("fetched_" + inst.id + ".tar.gz");
    auto get = shell(shell_quote(CARSYNC_CLI_PATH) + " --data-dir " + shell_quote(data_dir.string()) +
                     " cas get " + shell_quote(cid) + " -o " + shell_quote(archive.string()));
    ASSERT_EQ(get.exit_code, 0) << get.out;
    EXPECT_EQ(fs::file_size(archive), response.at("archive_size_bytes").to_number<std::uint64_t>());

    const std::map<std::string, std::string> expected_files = {
        {"app/data/state.bin", inst.state_bytes},
        {"app/data/nested/config.json", inst.config_text},
    };
    const std::set<std::string> expected_names = {"app/data", "app/data/nested", "app/data/state.bin",
                                                  "app/data/nested/config.json"};

    // libarchive's view.
    auto back = read_archive(archive);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(back->filter, "gzip");
    std::set<std::string> names;
    for (const auto& m : back->members) {
      names.insert(trimmed(m.name));
      if (auto it = expected_files.find(trimmed(m.name)); it != expected_files.end()) {
        EXPECT_TRUE(m.content == it->second) << m.name << ": content differs";
      }
    }
    EXPECT_EQ(names, expected_names);
    EXPECT_EQ(back->members.size(), expected_names.size());

    // GNU tar's view.
    auto listing = shell("tar -tzf " + shell_quote(archive.string()));
    ASSERT_EQ(listing.exit_code, 0);
    std::set<std::string> tar_names;
    for (const auto& line : lines(listing.out)) tar_names.insert(trimmed(line));
    EXPECT_EQ(tar_names, expected_names);

    const fs::path out_dir = tmp / "extracted" / inst.id;
    fs::create_directories(out_dir);
    auto extract = shell("tar -xzf " + shell_quote(archive.string()) + " -C " + shell_quote(out_dir.string()));
    ASSERT_EQ(extract.exit_code, 0);
    for (const auto& [name, bytes] : expected_files)
      EXPECT_TRUE(read_file(out_dir / name) == bytes) << name << ": extracted bytes differ";

    // Bookkeeping: one sent-history entry, no archive left in scratch.
    const fs::path instance_dir = data_dir / "instances" / inst.id;
    std::size_t history_entries = 0;
    for (const auto& e : fs::directory_iterator(instance_dir / "sync_history/sent"))
      history_entries += e.path().extension() == ".json";
    EXPECT_EQ(history_entries, 1u);
    EXPECT_TRUE(fs::is_empty(instance_dir / "scratch"));
  }
  EXPECT_EQ(cids.size(), instances.size());  // different volumes, different snapshots

  const auto status = daemon.terminate(std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value()) << "carsyncd did not exit within 30 s of SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status << "\n" << daemon.output();
}

}  // namespace
}  // namespace carsync::test
