// A node supervisor embedding carsync: one carsync::Node on the supervisor's own io_context,
// two app instances added at run time (a provider and a consumer on the same SYNC key, on
// the embedded "local" backend, with plain-directory system volumes), one publish, and the
// consumer's apply observed through status events. Then both instances are removed and the
// node stops.
//
// Exit status 0 when the consumer's volume received the provider's file, 1 (with the reason
// on stderr) on any failure or timeout. Work files go to a fresh temp dir, removed on success
// and kept (path printed) on failure. Uses only the public API (include/carsync/).
//
// Threads: the io_context runs on a thread of its own, as a supervisor's event loop would;
// main() drives the steps and waits for their completions, which carsync delivers on that
// loop thread.
#include <carsync/config.hpp>
#include <carsync/node.hpp>
#include <carsync/status.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto step_timeout = 30s;  // adding, removing, stopping
constexpr auto sync_timeout = 60s;  // publish -> applied on the consumer

// Every failure ends the run with this message.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Waits for a carsync completion (called once, on the loop thread) and returns its result.
template <class T>
class Awaited {
 public:
  std::function<void(T)> callback() {
    return [p = promise_](T r) { p->set_value(std::move(r)); };
  }
  T get(std::string_view what, Clock::duration timeout) {
    auto f = promise_->get_future();
    if (f.wait_for(timeout) != std::future_status::ready)
      throw Failure("timed out waiting for " + std::string(what));
    return f.get();
  }

 private:
  std::shared_ptr<std::promise<T>> promise_ = std::make_shared<std::promise<T>>();
};

template <class T>
T check(carsync::Result<T> r, std::string_view what) {
  if (!r) throw Failure(std::string(what) + ": " + r.error().message);
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

// The latest status of every instance, fed by Node::subscribe on the loop thread.
class StatusBoard {
 public:
  void update(const carsync::StatusEvent& e) {
    std::lock_guard lock(mutex_);
    if (e.removed)
      latest_.erase(e.instance.id);
    else
      latest_[e.instance.id] = e.instance;
    changed_.notify_all();
  }
  // Blocks until `done` holds for the current statuses, or throws after `timeout`.
  void wait(std::string_view what, Clock::duration timeout,
            const std::function<bool(const std::map<std::string, carsync::InstanceStatus>&)>& done) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return done(latest_); }))
      throw Failure("timed out waiting for " + std::string(what) + "; last statuses:\n" + describe());
  }

 private:
  std::string describe() const {
    std::ostringstream out;
    for (const auto& [id, s] : latest_)
      out << "  " << id << ": phase " << carsync::to_string(s.phase)
          << (s.last_error ? ", last error " + *s.last_error : std::string())
          << (s.config_error ? ", config error " + *s.config_error : std::string()) << '\n';
    return out.str();
  }
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, carsync::InstanceStatus> latest_;
};

bool in_phase(const std::map<std::string, carsync::InstanceStatus>& all, const std::string& id,
              carsync::Phase phase) {
  auto it = all.find(id);
  return it != all.end() && it->second.phase == phase;
}

// One app instance as the supervisor would describe it: its system volume and one data
// volume bound at /app/data, both plain directories under <edge>/<id>/mounts.
carsync::InstanceConfig instance(const fs::path& edge, const std::string& id, carsync::Role role,
                                 const std::string& key) {
  const fs::path mounts = edge / id / "mounts";
  fs::create_directories(mounts / "r1en_system");
  fs::create_directories(mounts / "data");
  carsync::InstanceConfig c;
  c.id = id;
  c.container = std::nullopt;  // no container runtime: nothing to stop or start
  c.system_volume = mounts / "r1en_system";
  c.volumes.push_back({.host_root = (mounts / "data").string(), .bind = "/app/data", .mode = "rw"});
  c.sync.enabled = true;
  c.sync.key = key;
  c.sync.role = role;
  return c;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Failure("cannot read " + p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void run(boost::asio::io_context& ioc, const fs::path& work) {
  const fs::path edge = work / "edge";
  const std::string key = "embed-example-" + std::to_string(::getpid()) + "-" + std::to_string(std::time(nullptr));

  carsync::NodeConfig config;
  config.data_dir = work / "state";
  config.node_id = "embed-example";
  config.backend.kind = "local";
  // Volumes must lie below an allowed root (spec §6.2 rule 3); ours live in a temp dir.
  config.volume_roots = std::vector<std::string>{(edge / "*" / "mounts").string()};
  config.limits.shutdown_grace = 5s;

  StatusBoard board;
  carsync::Node node(std::move(config), ioc.get_executor());
  auto subscription = node.subscribe([&](const carsync::StatusEvent& e) { board.update(e); });
  node.start();

  // Membership at run time, as a supervisor adds apps when it deploys them.
  for (auto [id, role] : {std::pair{"provider", carsync::Role::provider}, std::pair{"consumer", carsync::Role::consumer}}) {
    Awaited<carsync::Result<void>> added;
    check(node.add_instance(instance(edge, id, role, key), added.callback()), std::string("add ") + id);
    check(added.get(std::string("add ") + id, step_timeout), std::string("add ") + id);
  }
  board.wait("both instances to be idle", step_timeout, [](const auto& all) {
    return in_phase(all, "provider", carsync::Phase::idle) && in_phase(all, "consumer", carsync::Phase::idle);
  });

  // The provider app's state, then a publish of it (what request.json would hold).
  const std::string content = "state written by the provider at " + std::to_string(std::time(nullptr)) + "\n";
  std::ofstream(edge / "provider" / "mounts" / "data" / "state.txt", std::ios::binary) << content;
  Awaited<carsync::Result<carsync::SyncPoint>> published;
  check(node.publish("provider", R"({"archive_paths": ["/app/data"]})", published.callback()), "publish");
  const carsync::SyncPoint point = check(published.get("publish", sync_timeout), "publish");
  std::cout << "published cid " << point.cid << " (" << point.size << " bytes)\n";

  board.wait("the consumer to apply " + point.cid, sync_timeout, [&](const auto& all) {
    auto it = all.find("consumer");
    return it != all.end() && it->second.last_apply && it->second.last_apply->cid == point.cid;
  });
  const fs::path arrived = edge / "consumer" / "mounts" / "data" / "state.txt";
  if (!fs::exists(arrived)) throw Failure("the consumer applied " + point.cid + " but " + arrived.string() + " is missing");
  if (read_file(arrived) != content) throw Failure(arrived.string() + " differs from the provider's file");
  std::cout << "consumer applied " << point.cid << ": " << arrived << " matches\n";

  for (const char* id : {"consumer", "provider"}) {
    Awaited<carsync::Result<void>> removed;
    check(node.remove_instance(id, {}, removed.callback()), std::string("remove ") + id);
    check(removed.get(std::string("remove ") + id, step_timeout), std::string("remove ") + id);
  }
  if (!node.status().instances.empty()) throw Failure("instances left after removing both");

  subscription.reset();
  node.stop();
  if (!node.wait_for(std::chrono::duration_cast<std::chrono::milliseconds>(step_timeout)))
    throw Failure("the node did not stop in time");
}

}  // namespace

int main() {
  char pattern[] = "/tmp/carsync-embed.XXXXXX";
  if (!::mkdtemp(pattern)) {
    std::cerr << "embed: cannot create a temp dir\n";
    return 1;
  }
  const fs::path work = pattern;

  // The supervisor's event loop; the work guard keeps it running while nothing is queued.
  boost::asio::io_context ioc;
  auto guard = boost::asio::make_work_guard(ioc);
  std::promise<void> loop_done;
  std::thread loop([&] {
    ioc.run();
    loop_done.set_value();
  });

  int status = 0;
  try {
    run(ioc, work);  // the Node is destroyed (stopped) inside, while the loop still runs
  } catch (const std::exception& e) {  // Failure, carsync::ConfigError, filesystem errors
    std::cerr << "embed: " << e.what() << "\n";
    status = 1;
  }
  // A stopped node leaves nothing behind on the caller's loop: run() returns by itself.
  guard.reset();
  if (loop_done.get_future().wait_for(step_timeout) != std::future_status::ready) {
    std::cerr << "embed: work was left on the io_context after the node stopped\n";
    ioc.stop();
    status = 1;
  }
  loop.join();

  if (status == 0) {
    fs::remove_all(work);
    std::cout << "embed: ok\n";
  } else {
    std::cerr << "embed: work files kept in " << work << "\n";
  }
  return status;
}
