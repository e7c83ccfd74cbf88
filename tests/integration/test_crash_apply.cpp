// Crash safety of consumer applies at daemon level (spec §8.5, §10.2; §12 item 13): carsyncd
// is SIGKILLed at random moments while it applies a snapshot in mirror mode. Right after
// `carsync recover` the consumer volume must be exactly the old or the new snapshot (paths,
// types, modes, contents; no temp or backup files), and a restarted carsyncd must converge
// on the new one. CARSYNC_CRASH_ITERATIONS sets the number of kills, CARSYNC_CRASH_SEED
// replays a run, CARSYNC_CRASH_LOG=FILE keeps the daemons' log.
#include "support/temp_dir.hpp"
#include "support/tree_snapshot.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace carsync::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;
using namespace std::chrono_literals;

constexpr const char* kInstance = "consumer-app";
constexpr const char* kKey = "crash";

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The last lines of a log, for failure messages.
std::string tail(const fs::path& log, std::size_t lines = 40) {
  auto text = read_text(log);
  std::size_t pos = text.size();
  for (std::size_t n = 0; pos > 0 && n <= lines; --pos)
    if (text[pos - 1] == '\n') ++n;
  return text.substr(pos);
}

std::vector<char*> c_argv(std::vector<std::string>& args) {
  std::vector<char*> out;
  for (auto& a : args) out.push_back(a.data());
  out.push_back(nullptr);
  return out;
}

struct Output {
  int exit_code = -1;
  std::string text;  // stdout and stderr
};

// Runs a program to completion, capturing at most 1 MiB of its output.
Output run(std::vector<std::string> args) {
  auto argv = c_argv(args);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  Output out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (out.text.size() < (1u << 20)) out.text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// One carsyncd process; whatever happens in the test, it does not outlive this object.
class Daemon {
 public:
  Daemon(const fs::path& config, const fs::path& log) : log_(log) {
    std::vector<std::string> args{CARSYNCD_PATH, "--config", config.string()};
    auto argv = c_argv(args);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open " + log.string());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fd);
    if (pid_ < 0) throw std::runtime_error("fork failed");
  }
  ~Daemon() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    reap();
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Throws when the daemon exited by itself: nothing in this test should make it stop.
  void expect_running() {
    int status = 0;
    if (pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("carsyncd exited unexpectedly (status " + std::to_string(status) + "):\n" +
                               tail(log_));
    }
  }

  void kill() {
    expect_running();
    ::kill(pid_, SIGKILL);
    reap();
  }

  // A clean shutdown: SIGTERM, then the exit code; -1 (and SIGKILL) if it takes too long.
  int terminate(Clock::duration limit) {
    expect_running();
    ::kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + limit;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) != pid_) {
      if (Clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        reap();
        return -1;
      }
      std::this_thread::sleep_for(1ms);
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  int reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  fs::path log_;
  pid_t pid_ = -1;
};

// A JSON file written by atomic rename, read once so that its fields belong together;
// empty while absent or not an object.
json::object read_json(const fs::path& file) {
  boost::system::error_code ec;
  auto v = json::parse(read_text(file), ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.as_object());
}

bool has(const json::object& o, const char* field, std::string_view value) {
  const auto* f = o.if_contains(field);
  return f && f->is_string() && f->as_string() == value;
}

// ---------------------------------------------------------------------------------------
// The two snapshots.

// Deterministic contents, distinct per path and generation.
std::string contents(const std::string& rel, int generation, std::size_t size) {
  std::seed_seq seq(rel.begin(), rel.end());
  std::mt19937_64 rng(seq);
  rng.discard(static_cast<unsigned long long>(generation) * 7);
  std::string out(size, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

void put_file(const fs::path& root, const std::string& rel, int generation, std::size_t size, unsigned mode) {
  write_file(root / rel, contents(rel, generation, size));
  fs::permissions(root / rel, static_cast<fs::perms>(mode), fs::perm_options::replace);
}

// OLD: 30 directories of 50 files, a few nested directories and three 1 MiB files, with
// assorted modes. NEW: half of the files rewritten, some modes changed, files and whole
// directories removed (mirror), files and directories added, the root's mode changed.
void write_snapshot_tree(const fs::path& root, bool is_new) {
  static constexpr unsigned file_modes[] = {0644, 0600, 0664, 0755, 0666, 0640, 0700};
  static constexpr unsigned dir_modes[] = {0755, 0775, 0700, 0750, 0777};
  std::map<std::string, unsigned> dirs;  // set last: a 0500 parent must not stop the writes
  fs::create_directories(root);
  dirs[""] = is_new ? 0775 : 0755;

  for (int d = 0; d < 30; ++d) {
    if (is_new && d >= 28) continue;  // removed with everything below
    char dir[8];
    std::snprintf(dir, sizeof dir, "d%02d", d);
    fs::create_directories(root / dir);
    dirs[dir] = dir_modes[(d + (is_new && d % 4 == 1 ? 1 : 0)) % 5];
    for (int f = 0; f < 50; ++f) {
      const int k = d + f;
      if (is_new && k % 13 == 5) continue;
      char name[32];
      std::snprintf(name, sizeof name, "%s/f%03d.dat", dir, f);
      const bool rewritten = is_new && k % 2 == 0;
      const bool remoded = is_new && k % 7 == 3;
      put_file(root, name, rewritten ? 1 : 0, 64 + (static_cast<std::size_t>(k) * 37 % 2000) + (rewritten ? 11 : 0),
               file_modes[(k + (remoded ? 3 : 0)) % 7]);
    }
    if (d < 5 && !(is_new && d == 4)) {
      const std::string sub = std::string(dir) + "/sub/deeper";
      fs::create_directories(root / sub);
      dirs[std::string(dir) + "/sub"] = 0755;
      dirs[sub] = 0750;
      for (int f = 0; f < 5; ++f) put_file(root, sub + "/n" + std::to_string(f), is_new ? 1 : 0, 200 + f, 0644);
    }
    if (is_new && d < 10)
      for (int f = 0; f < 20; ++f) {
        char name[32];
        std::snprintf(name, sizeof name, "%s/g%03d.dat", dir, f);
        put_file(root, name, 1, 100 + f * 13, file_modes[f % 7]);
      }
  }
  if (is_new)
    for (int n = 0; n < 5; ++n) {
      const std::string dir = "new" + std::to_string(n), inner = dir + "/inner";
      fs::create_directories(root / inner);
      dirs[dir] = dir_modes[n];
      dirs[inner] = 0755;
      for (int f = 0; f < 20; ++f) put_file(root, dir + "/h" + std::to_string(f), 1, 300 + f, 0644);
      for (int f = 0; f < 5; ++f) put_file(root, inner + "/i" + std::to_string(f), 1, 50 + f, 0664);
    }

  constexpr std::size_t mib = 1 << 20;
  put_file(root, "big0.bin", is_new ? 1 : 0, mib, 0644);
  if (!is_new) put_file(root, "big1.bin", 0, mib, 0600);
  put_file(root, "big2.bin", 0, mib, 0664);
  if (is_new) put_file(root, "big3.bin", 1, mib, 0644);

  for (const auto& [rel, mode] : dirs)
    fs::permissions(rel.empty() ? root : root / rel, static_cast<fs::perms>(mode), fs::perm_options::replace);
}

// The consumer's mode normalisation (§8.5): special bits stripped, owner access granted.
TreeSnapshot as_applied(TreeSnapshot tree) {
  for (auto& [_, node] : tree) node.mode = (node.mode & 0777) | (node.type == 'd' ? 0755 : 0644);
  return tree;
}

// Up to `limit` paths where `actual` differs from snapshot A or B.
std::string describe_mismatch(const TreeSnapshot& actual, const TreeSnapshot& a, const TreeSnapshot& b,
                              std::size_t limit = 10) {
  std::set<std::string> paths;
  for (const auto* t : {&actual, &a, &b})
    for (const auto& [p, _] : *t) paths.insert(p);
  auto show = [](const TreeSnapshot& t, const std::string& p) {
    auto it = t.find(p);
    if (it == t.end()) return std::string("absent");
    std::ostringstream os;
    PrintTo(it->second, &os);
    return os.str();
  };
  std::ostringstream out;
  std::size_t shown = 0, differing = 0;
  for (const auto& p : paths) {
    const auto now = show(actual, p), in_a = show(a, p), in_b = show(b, p);
    if (now == in_a && now == in_b) continue;
    ++differing;
    if (shown++ < limit) out << "  " << p << ": volume " << now << " | A " << in_a << " | B " << in_b << '\n';
  }
  return std::to_string(differing) + " paths differ from A or B, e.g.\n" + out.str();
}

// ---------------------------------------------------------------------------------------
// The node: one consumer instance in mirror mode on the embedded backend, no container.

struct Node {
  TempDir tmp;
  fs::path config = tmp / "node.json";
  fs::path log = tmp / "carsyncd.log";
  fs::path consumer = tmp / "edge/consumer/fixed_volumes/mounts";
  fs::path volume = consumer / "data";
  fs::path last_apply = consumer / "r1en_system/volume-sync/last_apply.json";
  fs::path state_dir = tmp / "state/instances" / kInstance / "sync_history/state";
  fs::path current_apply = state_dir / "current_apply.json";
  long version = 1000;

  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node() {
    // The daemons' log outlives the temp dir when asked for, to see where time went.
    if (const char* keep = std::getenv("CARSYNC_CRASH_LOG"); keep && *keep) {
      std::error_code ec;
      fs::copy_file(log, keep, fs::copy_options::overwrite_existing, ec);
    }
  }

  Node() {
    fs::create_directories(volume);
    fs::create_directories(consumer / "r1en_system");
    write_file(config, R"({
  "data_dir": ")" + (tmp / "state").string() + R"(",
  "control_socket": ")" + (tmp / "carsyncd.sock").string() + R"(",
  "backend": {"kind": "local"},
  "volume_roots": [")" + (tmp / "edge/*/fixed_volumes/mounts").string() + R"("],
  "instances": [
    {"id": ")" + kInstance + R"(", "container": null,
     "system_volume": ")" + (consumer / "r1en_system").string() + R"(",
     "volumes": {")" + volume.string() + R"(": {"bind": "/app/data", "mode": "rw"}},
     "SYNC": {"ENABLED": true, "KEY": ")" + kKey + R"(", "TYPE": "consumer", "APPLY_SEMANTICS": "mirror"}}
  ]
})");
  }

  Output cli(std::vector<std::string> args) {
    args.insert(args.begin(), {CARSYNC_CLI_PATH, "--config", config.string()});
    return run(std::move(args));
  }

  // Builds the snapshot's archive the way a provider names its members (app/data/...)
  // and stores it; returns the CID.
  std::string store_snapshot(const fs::path& tree_parent, const std::string& name) {
    const auto archive = tmp / (name + ".tar.gz");
    auto tar = run({"tar", "-C", tree_parent.string(), "-czf", archive.string(), "app/data"});
    if (tar.exit_code != 0) throw std::runtime_error("tar failed: " + tar.text);
    auto put = cli({"cas", "put", archive.string()});
    if (put.exit_code != 0) throw std::runtime_error("cas put failed: " + put.text);
    return put.text.substr(0, put.text.find('\n'));
  }

  // A record as a provider publishes it, with a fresh version each time.
  void publish(const std::string& cid) {
    ++version;
    json::object record{
        {"cid", cid},
        {"version", version},
        {"timestamp", static_cast<double>(version)},
        {"node_id", "crash-provider"},
        {"metadata", json::object{{"publish", version}}},
        {"manifest", json::object{{"schema_version", 1},
                                  {"archive_paths", json::array{"/app/data"}},
                                  {"archive_format", "tar.gz"},
                                  {"encryption", "r1fs-default"}}},
    };
    auto r = cli({"kv", "hset", "CHAINSTORE_SYNC", kKey, json::serialize(record)});
    if (r.exit_code != 0) throw std::runtime_error("kv hset failed: " + r.text);
  }

  bool applied(const std::string& cid) const {
    const auto state = read_json(current_apply);
    return has(state, "state", "applied") && has(state, "cid", cid);
  }
  bool notified(const std::string& cid) const { return has(read_json(last_apply), "cid", cid); }

  // Polls until `done` holds; at `deadline` throws with `what`, the state files and the log.
  void wait_until(const std::function<bool()>& done, Clock::time_point deadline, const std::string& what,
                  Daemon& daemon) const {
    while (!done()) {
      daemon.expect_running();
      if (Clock::now() > deadline)
        throw std::runtime_error("timed out waiting for " + what + "\ncurrent_apply.json: " + read_text(current_apply) +
                                 "\nlast_apply.json: " + read_text(last_apply) + "\n" + tail(log));
      std::this_thread::sleep_for(1ms);
    }
  }

  // The durable state says `cid` is applied and the app has been told so.
  void wait_applied(const std::string& cid, Clock::time_point deadline, Daemon& daemon) const {
    wait_until([&] { return applied(cid) && notified(cid); }, deadline, "the apply of " + cid, daemon);
  }
};

// The phases of one apply as seen from outside, in order. The journal is written when the
// commit begins, replaced (a new inode) at the commit point and removed once the commit is
// complete (io/staged_apply.hpp); last_apply.json follows.
enum Phase { published, prepared, committed, completed, notified, phase_count };
constexpr const char* phase_names[] = {"publish", "prepare", "commit point", "commit end", "notification"};

std::optional<ino_t> inode_of(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;
  return st.st_ino;
}

// Follows one apply of `cid` by polling the journal and the state files.
class ApplyWatch {
 public:
  ApplyWatch(const Node& node, std::string cid)
      : node_(node), cid_(std::move(cid)), journal_(node.state_dir / "apply_journal.json"), start_(Clock::now()) {}

  void wait_for(Phase phase, Clock::time_point deadline, Daemon& daemon) {
    node_.wait_until(
        [&] {
          observe();
          return reached_ >= phase;
        },
        deadline, std::string("the ") + phase_names[phase] + " of " + cid_, daemon);
  }

  // Seconds after the publish when `phase` was first seen.
  double at(Phase phase) const { return at_[phase]; }

 private:
  void observe() {
    const auto ino = inode_of(journal_);
    if (reached_ == published && ino) {
      first_inode_ = *ino;
      reach(prepared);
    }
    if (reached_ == prepared && ino && *ino != first_inode_) reach(committed);
    // Phases shorter than a poll are reached together with the next one.
    if (reached_ >= prepared && reached_ < completed && !ino) reach(completed);
    if (reached_ < completed && node_.applied(cid_)) reach(completed);
    if (reached_ == completed && node_.notified(cid_)) reach(notified);
  }
  void reach(Phase phase) {
    const double now = Seconds(Clock::now() - start_).count();
    while (reached_ < phase) at_[reached_ = static_cast<Phase>(reached_ + 1)] = now;
  }

  const Node& node_;
  std::string cid_;
  fs::path journal_;
  Clock::time_point start_;
  Phase reached_ = published;
  ino_t first_inode_ = 0;
  std::array<double, phase_count> at_{};
};

// Where to kill: a random delay after a phase began, so that the kill lands in the phase
// whatever the machine's load does to the time before it.
struct KillPlan {
  Phase anchor;
  double delay;
};

// Phase durations measured by the calibration apply; kills spread over before the commit
// (download, staging), the reversible part, the roll-forward part and finalisation.
KillPlan plan_kill(const ApplyWatch& w, std::mt19937_64& rng) {
  auto uniform = [&](double a, double b) { return std::uniform_real_distribution<double>(a, std::max(a, b))(rng); };
  auto length = [&](Phase p) { return std::max(0.002, w.at(static_cast<Phase>(p + 1)) - w.at(p)); };
  const double where = uniform(0, 1);
  if (where < 0.15) return {published, uniform(0, length(published))};
  if (where < 0.50) return {prepared, uniform(0, 1.2 * length(prepared))};
  if (where < 0.80) return {committed, uniform(0, 1.1 * length(committed))};
  return {completed, uniform(0, 2 * length(completed))};
}

unsigned long env_number(const char* name, unsigned long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoul(v) : fallback;
}

// Each iteration applies the other snapshot than the volume holds, alternating A -> B and
// B -> A, so both directions are crashed (each adds, rewrites, re-modes and, being a mirror,
// removes files and directories) and every iteration costs only one full apply.
TEST(CrashApply, KilledDaemonLeavesExactlyOldOrNewSnapshot) {
  const auto iterations = env_number("CARSYNC_CRASH_ITERATIONS", 50);
  const auto seed = env_number("CARSYNC_CRASH_SEED", std::random_device{}());
  std::cout << "[crash] seed " << seed << " (CARSYNC_CRASH_SEED replays it), " << iterations << " iterations\n";
  const auto test_start = Clock::now();

  Node node;
  write_snapshot_tree(node.tmp / "a/app/data", false);
  write_snapshot_tree(node.tmp / "b/app/data", true);
  const std::array<TreeSnapshot, 2> trees{as_applied(snapshot_tree(node.tmp / "a/app/data")),
                                          as_applied(snapshot_tree(node.tmp / "b/app/data"))};
  ASSERT_NE(trees[0], trees[1]);
  const std::array<std::string, 2> cids{node.store_snapshot(node.tmp / "a", "a"),
                                        node.store_snapshot(node.tmp / "b", "b")};
  const char* names[] = {"A", "B"};
  std::cout << "[crash] A: " << trees[0].size() << " entries, B: " << trees[1].size() << " entries\n";
  auto expect_volume = [&](int which) {
    const auto now = snapshot_tree(node.volume);
    EXPECT_EQ(now, trees[which]) << names[which] << " expected: " << describe_mismatch(now, trees[0], trees[1]);
  };

  auto daemon = std::make_unique<Daemon>(node.config, node.log);
  node.publish(cids[0]);
  node.wait_applied(cids[0], Clock::now() + 300s, *daemon);
  expect_volume(0);

  // Calibration: one uninterrupted apply per direction, A->B then B->A.
  std::array<std::optional<ApplyWatch>, 2> calibration;  // by the snapshot applied
  for (int to : {1, 0}) {
    node.publish(cids[to]);
    calibration[to].emplace(node, cids[to]).wait_for(notified, Clock::now() + 300s, *daemon);
    expect_volume(to);
    const auto& w = *calibration[to];
    std::printf("[crash] apply %s->%s: commit %.3f s after the publish, commit point at %.3f s, commit end at "
                "%.3f s, last_apply.json at %.3f s\n",
                names[1 - to], names[to], w.at(prepared), w.at(committed), w.at(completed), w.at(notified));
  }
  ASSERT_FALSE(HasFailure());
  const auto iteration_budget = std::chrono::duration_cast<Clock::duration>(
      Seconds(60 + 10 * std::max(calibration[0]->at(notified), calibration[1]->at(notified))));

  std::mt19937_64 rng(seed);
  std::map<std::string, int> recovery_counts, volume_counts;
  int stale_notifications = 0;
  double slowest = 0;
  int held = 0;  // the snapshot in the volume
  for (unsigned long i = 1; i <= iterations; ++i) {
    const int from = held, to = 1 - held;
    const auto start = Clock::now();
    const auto deadline = start + iteration_budget;
    const auto kill = plan_kill(*calibration[to], rng);
    SCOPED_TRACE("iteration " + std::to_string(i) + ", seed " + std::to_string(seed) + ", " + names[from] + "->" +
                 names[to] + ", kill " + std::to_string(kill.delay) + " s after the " + phase_names[kill.anchor]);

    node.publish(cids[to]);
    ApplyWatch(node, cids[to]).wait_for(kill.anchor, deadline, *daemon);
    std::this_thread::sleep_for(Seconds(kill.delay));  // the random kill moment: the only deliberate sleep
    daemon->kill();
    daemon.reset();

    // The state recovery leaves, before anything can apply again.
    const auto recovered = node.cli({"recover"});
    ASSERT_EQ(recovered.exit_code, 0) << recovered.text;
    const std::string prefix = std::string(kInstance) + ": ";
    ASSERT_EQ(recovered.text.rfind(prefix, 0), 0u) << recovered.text;
    const auto action = recovered.text.substr(prefix.size(), recovered.text.find('\n') - prefix.size());
    ++recovery_counts[action];
    EXPECT_FALSE(fs::exists(node.state_dir / "apply_journal.json"));
    const auto after = snapshot_tree(node.volume);
    const char* outcome = after == trees[from] ? "old" : after == trees[to] ? "new" : nullptr;
    ASSERT_NE(outcome, nullptr) << "recovery (" << action << ") left a volume that is neither "
                                << describe_mismatch(after, trees[0], trees[1]);
    ++volume_counts[outcome];
    if (action == "rolled back") {
      EXPECT_STREQ(outcome, "old");
    } else if (action == "rolled forward") {
      EXPECT_STREQ(outcome, "new");
    }

    // Killed between the durable `applied` state and last_apply.json (§10.2, last row): no
    // re-apply follows, so the notification stays stale.
    const bool stale = node.applied(cids[to]) && !node.notified(cids[to]);
    if (stale) ++stale_notifications;

    const auto restarted = Clock::now();
    daemon = std::make_unique<Daemon>(node.config, node.log);
    node.wait_until([&] { return node.applied(cids[to]) && (stale || node.notified(cids[to])); }, deadline,
                    std::string("convergence on ") + names[to] + " after recovery: " + recovered.text, *daemon);
    const auto converged = snapshot_tree(node.volume);
    ASSERT_EQ(converged, trees[to]) << describe_mismatch(converged, trees[0], trees[1]);
    held = to;

    const double took = Seconds(Clock::now() - start).count();
    slowest = std::max(slowest, took);
    std::printf("[crash] %3lu: %s->%s kill %.3f s after the %-12s recovery: %-14s volume: %s (%.2f s, converged in "
                "%.2f s)\n",
                i, names[from], names[to], kill.delay, phase_names[kill.anchor], action.c_str(), outcome, took,
                Seconds(Clock::now() - restarted).count());
    std::fflush(stdout);
  }
  // The last restart may have converged at once (recovery had already rolled forward): the
  // daemon is asked to stop only once it answers, so SIGTERM finds its handler installed.
  node.wait_until([&] { return node.cli({"status"}).exit_code == 0; }, Clock::now() + 60s, "daemon answering",
                  *daemon);
  EXPECT_EQ(daemon->terminate(60s), 0) << tail(node.log);

  std::printf("[crash] after recovery: old %d, new %d; recovery actions:", volume_counts["old"],
              volume_counts["new"]);
  for (const auto& [action, n] : recovery_counts) std::printf(" %s %d,", action.c_str(), n);
  std::printf(" stale last_apply.json %d; slowest iteration %.2f s, total %.1f s\n", stale_notifications, slowest,
              Seconds(Clock::now() - test_start).count());
}

// Two crash windows in a row, the sequence the random kills above can hit: carsyncd died
// after recording B as applied but before B's received-history entry (§10.2, last row),
// then the next attempt (A) died while preparing, which replaced the `applied` state with
// `preparing`. The volume holds B, so a restarted carsyncd must apply A, not take A for
// applied because the latest history entry names it (§8.8 fallback).
TEST(CrashApply, InterruptedFinalisationThenInterruptedPrepareStillConverges) {
  Node node;
  for (const std::string name : {"a", "b"}) write_file(node.tmp / name / "app/data/state.txt", "snapshot " + name);
  const auto a = node.store_snapshot(node.tmp / "a", "a");
  const auto b = node.store_snapshot(node.tmp / "b", "b");
  {
    Daemon daemon(node.config, node.log);
    for (const auto& cid : {a, b}) {
      node.publish(cid);
      node.wait_applied(cid, Clock::now() + 60s, daemon);
    }
    ASSERT_EQ(daemon.terminate(60s), 0) << tail(node.log);
  }

  // The two crashes, reproduced on disk while carsyncd is down: B's history entry never
  // written, then the attempt at A killed while preparing (its state carries the CID the
  // volume held, as carsync writes it).
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(node.state_dir.parent_path() / "received"))
    if (has(read_json(entry.path()), "cid", b)) removed += fs::remove(entry.path());
  ASSERT_EQ(removed, 1);
  node.publish(a);
  write_file(node.current_apply,
             json::serialize(json::object{{"state", "preparing"}, {"cid", a}, {"version", node.version},
                                          {"applied_cid", b}}));
  ASSERT_EQ(read_file(node.volume / "state.txt"), "snapshot b");

  Daemon daemon(node.config, node.log);
  node.wait_applied(a, Clock::now() + 30s, daemon);
  EXPECT_EQ(read_file(node.volume / "state.txt"), "snapshot a");
}

}  // namespace
}  // namespace carsync::test
