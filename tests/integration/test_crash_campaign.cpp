// The crash campaign (issue 8 item 2; spec §10): one carsyncd serves a provider and a
// consumer on one sync key; every cycle the provider app asks for a new snapshot (generation
// i of its data volume), and carsyncd is SIGKILLed at a random instant inside one lifecycle
// step, the steps taken in turn: provider claim, container stop, archive (container stopped),
// container start, upload, publish, bookkeeping (history, response, .processing discarded),
// retirement; consumer download (with its `preparing` state), scan+stage (one streaming pass
// in carsync), container stop, commit, finalise (state, history, last_apply.json, restart,
// staging dropped), retirement.
//
// Aiming: carsyncd runs with CARSYNC_TEST_CRASH_POINTS=1, so it writes "crash-point <instance>
// <side> <step>" before every step (src/runtime/crash_point.hpp), and pauses
// CARSYNC_TEST_CRASH_PAUSE_US there so that even sub-millisecond steps can be hit. The harness
// waits for the target step's line, sleeps a random time within the step's measured length
// and kills. Every kill is classified by the last lines the process wrote before it died,
// not by the target, and the counts per stage are printed at the end.
//
// After every kill: `carsync recover` (daemon down) must leave the consumer volume exactly
// at the old or the new generation with no journal; then carsyncd restarts and, once both
// instances are quiet, every invariant below is checked:
//  - the consumer volume holds exactly the newest published generation (nothing else, no
//    temp or backup file: the whole tree is compared);
//  - the request ended in exactly one final response.json (status ok, this generation's
//    metadata, the published CID) and request.json / .processing / .invalid are gone;
//  - the request was published once, or twice when the kill landed past the chainstore
//    acknowledgement (spec §10.2 "second publish"): a second publish is visible in the
//    provider's sent history as two entries carrying the same request metadata, and is
//    counted below; it is refused anywhere else;
//  - containers stopped by carsync are running again (Docker form);
//  - no scratch archive, staging directory, apply journal, CAS temp file or control-file
//    temp survives;
//  - history, durable state and the store agree: the KV record, the provider's newest sent
//    entry, the consumer's current_apply.json (applied), its newest received entry and
//    last_apply.json name the same CID, whose blob is in the store;
//  - every sent entry but the newest is retired (its blob deleted) unless it shares the
//    newest's CID, and no blob other than the current CID survives two consecutive checks:
//    nothing stays orphaned longer than one retirement cycle.
//
// Forms: CrashCampaign.NoContainer (instances without containers; the container steps do
// not exist there) and CrashCampaign.Docker (busybox containers on the engine named by
// CARSYNC_TEST_DOCKER_SOCKET; skipped, saying so, without it). CARSYNC_CRASH_KILLS sets the
// kills of each form (defaults: 300 without containers, 40 with Docker), CARSYNC_CRASH_SEED
// replays a run; scripts/crash-campaign is the bench form (3,000 kills).
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/tree_snapshot.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
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
using namespace std::chrono_literals;
using Seconds = std::chrono::duration<double>;

constexpr const char* kProvider = "prov";
constexpr const char* kConsumer = "cons";
constexpr const char* kKey = "campaign";
// The pause at the aimed step (CARSYNC_TEST_CRASH_PAUSE_US, CARSYNC_TEST_CRASH_PAUSE_AT): long
// enough that the harness, woken by the line, kills inside the step even on a loaded machine.
constexpr long kPauseUs = 30000;

unsigned long env_number(const char* name, unsigned long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoul(v) : fallback;
}

std::string hex(std::string_view s) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::optional<json::object> read_object(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return std::nullopt;
  boost::system::error_code jec;
  auto v = json::parse(read_file(file), jec);
  if (jec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

std::string str(const json::object& o, const char* field) {
  const auto* v = o.if_contains(field);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// The generation a request/response/record carries in its metadata (-1: none).
long gen_of(const json::object& o) {
  const json::value* m = o.if_contains("metadata");
  if (!m) {
    const auto* req = o.if_contains("request");  // sent history: the normalised request
    if (req && req->is_object()) m = req->as_object().if_contains("metadata");
  }
  if (!m || !m->is_object()) return -1;
  const auto* g = m->as_object().if_contains("gen");
  return g && g->is_int64() ? g->as_int64() : -1;
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

std::string join(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : ", ") + x;
  return "{" + out + "}";
}

// History entries in write order (spec §9.2), oldest first.
std::vector<json::object> history(const fs::path& dir) {
  std::vector<std::pair<std::int64_t, json::object>> entries;
  for (const auto& name : names_in(dir)) {
    if (!name.ends_with(".json")) continue;
    auto o = read_object(dir / name);
    if (!o) continue;
    const auto* ns = o->if_contains("history_written_at_ns");
    entries.emplace_back(ns && ns->is_int64() ? ns->as_int64() : 0, std::move(*o));
  }
  std::stable_sort(entries.begin(), entries.end(), [](auto& a, auto& b) { return a.first < b.first; });
  std::vector<json::object> out;
  for (auto& e : entries) out.push_back(std::move(e.second));
  return out;
}

bool retired(const json::object& entry) {
  const auto* d = entry.if_contains("deletion");
  if (!d || !d->is_object()) return false;
  const auto* at = d->as_object().if_contains("deleted_at");
  return at && !at->is_null();
}

// --- The data: generation g of the provider's volume ---------------------------------------

// ~240 files in 12 directories and one 256 KiB file; each generation rewrites a third of the
// files, drops a tenth of the names and adds others, so a mirror apply adds, rewrites and
// removes.
void write_generation(const fs::path& root, long gen) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root)) fs::remove_all(e.path(), ec);
  for (int k = 0; k < 260; ++k) {
    if ((k + gen) % 10 == 0) continue;
    const long version = k % 3 == gen % 3 ? gen : 0;
    char rel[48];
    std::snprintf(rel, sizeof rel, "d%02d/f%03d-%ld.dat", k % 12, k, k % 7 == 0 ? gen % 4 : 0L);
    fs::create_directories((root / rel).parent_path());
    write_file(root / rel, pattern_bytes(200 + static_cast<std::size_t>(k) * 13, static_cast<std::uint32_t>(k * 7919 + version)));
  }
  write_file(root / "big.bin", pattern_bytes(256 * 1024, static_cast<std::uint32_t>(gen)));
  write_file(root / "generation.txt", std::to_string(gen) + "\n");
}

// The tree a consumer volume must hold for `gen` (the root's own entry is left out: it is
// the volume's, not the snapshot's).
TreeSnapshot expected_tree(const fs::path& scratch, long gen) {
  const auto dir = scratch / ("expected-" + std::to_string(gen));
  fs::create_directories(dir);
  write_generation(dir, gen);
  auto tree = snapshot_tree(dir);
  tree.erase(".");
  fs::remove_all(dir);
  return tree;
}

TreeSnapshot volume_tree(const fs::path& root) {
  auto tree = snapshot_tree(root);
  tree.erase(".");
  return tree;
}

std::string describe_difference(const TreeSnapshot& actual, const TreeSnapshot& expected) {
  std::ostringstream out;
  int shown = 0, differing = 0;
  std::set<std::string> paths;
  for (const auto& [p, _] : actual) paths.insert(p);
  for (const auto& [p, _] : expected) paths.insert(p);
  for (const auto& p : paths) {
    auto a = actual.find(p), e = expected.find(p);
    if (a != actual.end() && e != expected.end() && a->second == e->second) continue;
    ++differing;
    if (shown++ < 8)
      out << "  " << p << ": " << (a == actual.end() ? "absent" : "present") << " in the volume, "
          << (e == expected.end() ? "absent" : "present") << " in the expected tree"
          << (a != actual.end() && e != expected.end() ? " (differs)" : "") << "\n";
  }
  return std::to_string(differing) + " paths differ:\n" + out.str();
}

// --- Stages ------------------------------------------------------------------------------

// The campaign's stage of a crash-point step; `previous` tells the consumer's write_state
// apart (before the download: preparing; after the stop: applying; after the commit: applied).
std::string stage_of(const std::string& side, const std::string& step, const std::string& previous) {
  if (side == "provider") {
    if (step == "claim") return "provider claim";
    if (step == "stop_container") return "provider container stop";
    if (step == "build_archive") return "provider archive (container stopped)";
    if (step == "start_container") return "provider container start";
    if (step == "upload" || step == "remove_archive") return "provider upload";
    if (step == "publish") return "provider publish";
    if (step == "append_history" || step == "write_response" || step == "remove_invalid" ||
        step == "discard_processing")
      return "provider bookkeeping";
    if (step == "retire_previous") return "provider retirement";
    if (step == "done") return "idle";
    return "provider " + step;
  }
  if (step == "download") return "consumer download";
  if (step == "write_state") {
    // Without a container the `applying` state follows the scan directly.
    if (previous == "stop_container" || previous == "scan") return "consumer container stopped (state applying)";
    if (previous == "commit") return "consumer finalise";
    return "consumer download";  // the `preparing` state before it
  }
  if (step == "scan") return "consumer scan+stage";
  if (step == "stop_container") return "consumer container stop";
  if (step == "commit") return "consumer commit";
  if (step == "append_history" || step == "write_last_apply" || step == "start_container" ||
      step == "discard_staging")
    return "consumer finalise";
  if (step == "retire_previous") return "consumer retirement";
  if (step == "done") return "idle";
  return "consumer " + step;
}

struct Point {
  std::string instance, side, step;
};

// Every crash-point line in `log` from `offset` on.
std::vector<Point> points_in(const std::string& log, std::size_t offset) {
  std::vector<Point> out;
  static constexpr std::string_view tag = "crash-point ";
  for (auto pos = log.find(tag, offset); pos != std::string::npos; pos = log.find(tag, pos + 1)) {
    const auto end = log.find('\n', pos);
    if (end == std::string::npos) break;
    std::istringstream in(log.substr(pos + tag.size(), end - pos - tag.size()));
    Point p;
    in >> p.instance >> p.side >> p.step;
    out.push_back(std::move(p));
  }
  return out;
}

// Where a kill landed: the step each side was in (its last line; "done" or none = quiet).
struct Landing {
  std::string stage;             // the campaign stage (the busy side's; "idle" if none was busy)
  std::string provider_step, consumer_step, consumer_prev;
  bool past_ack = false;         // the provider's publish step had begun: a second publish is allowed
};

Landing classify(const std::vector<Point>& points, const std::string& aimed_side = "") {
  Landing l;
  std::string provider_prev, consumer_prev, last_side;
  for (const auto& p : points) {
    auto& step = p.side == "provider" ? l.provider_step : l.consumer_step;
    auto& prev = p.side == "provider" ? provider_prev : consumer_prev;
    prev = step;
    step = p.step;
    last_side = p.side;
    if (p.side == "provider" && p.step == "publish") l.past_ack = true;
    if (p.side == "provider" && p.step == "claim") l.past_ack = false;  // a new attempt
  }
  auto busy = [](const std::string& s) { return !s.empty() && s != "done"; };
  // Both sides can be busy (the consumer downloads while the provider retires): the side
  // that wrote last is the one the kill interrupted most recently.
  const bool provider_busy = busy(l.provider_step), consumer_busy = busy(l.consumer_step);
  l.consumer_prev = consumer_prev;
  // Both sides can be busy at once (the consumer downloads while the provider finishes):
  // the kill landed in both; it is counted for the aimed side.
  if (!aimed_side.empty() && consumer_busy && (aimed_side == "consumer" || !provider_busy))
    l.stage = stage_of("consumer", l.consumer_step, consumer_prev);
  else if (!aimed_side.empty() && provider_busy)
    l.stage = stage_of("provider", l.provider_step, provider_prev);
  else if (provider_busy && (!consumer_busy || last_side == "provider"))
    l.stage = stage_of("provider", l.provider_step, provider_prev);
  else if (consumer_busy)
    l.stage = stage_of("consumer", l.consumer_step, consumer_prev);
  else
    l.stage = "idle";
  return l;
}

struct Target {
  const char* side;
  const char* step;
  bool needs_container;
  int nth = 1;  // the nth line of this step in the cycle (the consumer writes its state three times)
};

const std::vector<Target>& targets() {
  static const std::vector<Target> all{
      {"provider", "claim", false},           {"provider", "stop_container", true},
      {"provider", "build_archive", false},   {"provider", "start_container", true},
      {"provider", "upload", false},          {"provider", "publish", false},
      {"provider", "append_history", false},  {"provider", "write_response", false},
      {"provider", "discard_processing", false}, {"provider", "retire_previous", false},
      {"consumer", "write_state", false, 1},  {"consumer", "download", false},
      {"consumer", "scan", false},            {"consumer", "stop_container", true},
      {"consumer", "write_state", false, 2},  {"consumer", "commit", false},
      {"consumer", "write_state", false, 3},  {"consumer", "append_history", false},
      {"consumer", "write_last_apply", false}, {"consumer", "start_container", true},
      {"consumer", "retire_previous", false},
  };
  return all;
}

// --- The node ----------------------------------------------------------------------------

struct Side {
  std::string id;
  fs::path root, system_volume, data;
  fs::path control_dir() const { return system_volume / "volume-sync"; }
};

class Campaign {
 public:
  Campaign(std::optional<std::string> docker_socket) : docker_(std::move(docker_socket)) {
    ::setenv("CARSYNC_TEST_CRASH_POINTS", "1", 1);
    ::setenv("CARSYNC_TEST_CRASH_PAUSE_US", std::to_string(kPauseUs).c_str(), 1);
    for (auto* side : {&provider_, &consumer_}) {
      side->root = tmp_ / "edge" / side->id / "fixed_volumes/mounts";
      side->system_volume = side->root / "r1en_system";
      side->data = side->root / "data";
      fs::create_directories(side->system_volume);
      fs::create_directories(side->data);
    }
    if (docker_) {
      tag_ = "crash-" + std::to_string(::getpid());
      for (auto* side : {&provider_, &consumer_}) create_container(*side);
    }
    // Records are signed and verified: every kill from the consumer's `preparing` state on
    // also tests that an accepted sequence never makes its own record a replay, and that a
    // provider killed mid-request signs its next record with a newer sequence.
    const auto key_file = tmp_ / "keys" / "provider.key";
    fs::create_directories(key_file.parent_path());
    auto made = shell_run({CARSYNC_CLI_PATH, "keys", "generate", "--out", key_file.string()});
    if (made.first != 0) throw std::runtime_error("carsync keys generate: " + made.second);
    const std::string public_key = made.second.substr(0, made.second.find('\n'));
    json::array instances;
    for (auto* side : {&provider_, &consumer_}) {
      json::object sync{{"ENABLED", true}, {"KEY", kKey}, {"TYPE", side == &provider_ ? "provider" : "consumer"}};
      if (side == &consumer_) sync["APPLY_SEMANTICS"] = "mirror";
      // Every generation with its delta index and pack (the volume is ~330 KB of tar), and
      // packs leaving the record's window at once: kills land between the uploads, in the
      // reassembly and in the retirement of indexes and packs too.
      if (side == &provider_) {
        sync["DELTA_MIN_BYTES"] = 0;
        sync["DELTA_VERSIONS"] = 2;
      }
      instances.push_back(json::object{
          {"id", side->id},
          {"container", docker_ ? json::value(container(*side)) : json::value(nullptr)},
          {"system_volume", side->system_volume.string()},
          {"volumes", json::object{{side->data.string(), json::object{{"bind", "/app/data"}, {"mode", "rw"}}}}},
          {"SYNC", std::move(sync)},
      });
      if (side == &provider_) instances.back().as_object()["signing"] = json::object{{"key_file", key_file.string()}};
      else instances.back().as_object()["trust"] = json::object{{"keys", json::array{json::value(public_key)}}};
    }
    json::object config{
        {"data_dir", data_dir().string()},
        {"node_id", "crash-node"},
        {"backend", json::object{{"kind", "local"}}},
        {"control_socket", (tmp_ / "carsync.sock").string()},
        {"volume_roots", json::array{(tmp_ / "edge/*/fixed_volumes/mounts").string()}},
        {"instances", std::move(instances)},
    };
    if (docker_) config["docker_socket"] = "unix://" + *docker_;
    write_file(config_file(), json::serialize(config));
  }

  ~Campaign() {
    daemon_.reset();
    if (docker_)
      for (auto* side : {&provider_, &consumer_}) run_quiet({"docker", "-H", "unix://" + *docker_, "rm", "-f", container(*side)});
  }

  void run(unsigned long kills, unsigned long seed) {
    std::mt19937_64 rng(seed);
    std::vector<Target> aims;
    for (const auto& t : targets())
      if (docker_ || !t.needs_container) aims.push_back(t);
    std::printf("[campaign] %s, seed %lu (CARSYNC_CRASH_SEED replays it), %lu kills over %zu target steps\n",
                docker_ ? "Docker containers" : "no containers", seed, kills, aims.size());
    const auto started = Clock::now();

    ::setenv("CARSYNC_TEST_CRASH_PAUSE_AT", (std::string(aims[0].side) + " " + aims[0].step).c_str(), 1);
    start_daemon();
    // Calibration: one cycle without a kill measures each step's length (line to line).
    std::map<std::string, double> step_length;
    {
      const auto offset = daemon_->output().size();
      request(++gen_);
      std::vector<std::pair<std::string, Clock::time_point>> seen;
      std::size_t parsed = 0;
      const auto deadline = Clock::now() + 120s;
      while (!converged() && Clock::now() < deadline) {
        const auto log = daemon_->output();
        auto points = points_in(log, offset);
        for (; parsed < points.size(); ++parsed)
          seen.emplace_back(points[parsed].side + " " + points[parsed].step, Clock::now());
        std::this_thread::sleep_for(200us);
      }
      ASSERT_TRUE(converged()) << "the calibration cycle did not converge\n" << daemon_->output();
      wait_quiet(offset);
      for (std::size_t k = 0; k + 1 < seen.size(); ++k) {
        auto& len = step_length[seen[k].first];
        len = std::max(len, Seconds(seen[k + 1].second - seen[k].second).count());
      }
      check_invariants("calibration", Landing{});
      held_ = gen_;
      std::printf("[campaign] calibration cycle: %zu steps;", seen.size());
      for (const auto& [step, len] : step_length) std::printf(" %s %.1f ms,", step.c_str(), len * 1e3);
      std::printf("\n");
    }
    if (::testing::Test::HasFatalFailure()) return;

    std::map<std::string, int> per_stage, per_target;
    std::map<std::string, int> recovery_volume;
    int second_publishes = 0;
    for (unsigned long i = 1; i <= kills && !::testing::Test::HasFatalFailure(); ++i) {
      const Target& aim = aims[(i - 1) % aims.size()];
      const std::string target = std::string(aim.side) + " " + aim.step;
      const long gen = ++gen_;
      SCOPED_TRACE("kill " + std::to_string(i) + ", seed " + std::to_string(seed) + ", generation " +
                   std::to_string(gen) + ", aimed at " + target);
      const auto offset = daemon_->output().size();
      request(gen);

      // The kill: a random instant within the target step (its pause and measured length).
      const std::string line = std::string("crash-point ") + (aim.side == std::string("provider") ? kProvider : kConsumer) +
                               " " + aim.side + " " + aim.step + "\n";
      const bool reached = wait_nth(line, aim.nth, offset, 60s);
      // The calibration ran with the pause at the first target: its length is not the step's.
      const double length = target == std::string(aims[0].side) + " " + aims[0].step ? 0.002 : step_length[target];
      const double window = kPauseUs * 1e-6 + length;
      const double delay = std::uniform_real_distribution<double>(0, reached ? window : 0)(rng);
      if (reached) std::this_thread::sleep_for(Seconds(delay));
      daemon_->signal(SIGKILL);
      ASSERT_TRUE(daemon_->wait_exit(10s).has_value());
      const auto log = daemon_->output();
      daemon_.reset();  // its output is complete: everything written before the kill
      const Landing landing = classify(points_in(log, offset), aim.side);
      ++per_stage[landing.stage];
      ++per_target[target + (reached ? "" : " (not reached)")];

      // Recovery with the daemon down: old or new, no journal.
      auto recovered = shell_run({CARSYNC_CLI_PATH, "--config", config_file().string(), "recover"});
      ASSERT_EQ(recovered.first, 0) << recovered.second;
      EXPECT_FALSE(fs::exists(state_dir(consumer_) / "apply_journal.json"));
      const auto after = volume_tree(consumer_.data);
      const bool old_held = after == expected(held_), new_held = after == expected(gen);
      ASSERT_TRUE(old_held || new_held) << "after the kill in " << landing.stage << " and `carsync recover` ("
                                        << recovered.second << ") the consumer volume is neither generation "
                                        << held_ << " nor " << gen << ": "
                                        << describe_difference(after, expected(gen));
      ++recovery_volume[new_held ? "new" : "old"];

      // The next cycle's aim pauses only its own step.
      const Target& next = aims[i % aims.size()];
      ::setenv("CARSYNC_TEST_CRASH_PAUSE_AT", (std::string(next.side) + " " + next.step).c_str(), 1);
      // Restart; converge; every invariant. A kill after the consumer's durable `applied`
      // state and before its history entry / last_apply.json leaves those stale for good
      // (spec §10.2, last row: dedupe by state, no re-apply): tolerated there only, and counted.
      stale_finalise_allowed_ = landing.consumer_step == "append_history" || landing.consumer_step == "write_last_apply" ||
                                (landing.consumer_step == "write_state" && landing.consumer_prev == "commit");
      const auto restart_offset = start_daemon();
      const auto deadline = Clock::now() + (docker_ ? 120s : 60s);
      while (!converged() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
      ASSERT_TRUE(converged()) << "no convergence on generation " << gen << " after a kill in " << landing.stage
                               << "\n" << diagnostics() << daemon_->output();
      wait_quiet(restart_offset);
      second_publishes += check_invariants(landing.stage, landing);
      held_ = gen;
      std::printf("[campaign] %4lu gen %ld aimed %-34s landed %-46s (provider %s, consumer %s) recovered %s\n", i,
                  gen, target.c_str(), landing.stage.c_str(), landing.provider_step.empty() ? "-" : landing.provider_step.c_str(),
                  landing.consumer_step.empty() ? "-" : landing.consumer_step.c_str(), new_held ? "new" : "old");
      std::fflush(stdout);
    }
    if (daemon_) {
      EXPECT_EQ(daemon_->terminate(60s), std::optional<int>(0)) << daemon_->output();
    }
    daemon_.reset();

    std::printf("[campaign] kills per landed stage (%s):\n", docker_ ? "Docker" : "no containers");
    int total = 0;
    for (const auto& [stage, n] : per_stage) {
      std::printf("[campaign]   %-48s %5d\n", stage.c_str(), n);
      total += n;
    }
    std::printf("[campaign]   %-48s %5d\n", "total", total);
    std::printf("[campaign] volume right after recovery: old %d, new %d; second publishes after a kill past the "
                "ack: %d; stale consumer finalisations (applied, history/last_apply.json not written): %d; %.1f s\n",
                recovery_volume["old"], recovery_volume["new"], second_publishes, stale_finalisations_,
                Seconds(Clock::now() - started).count());
    for (const auto& [target, n] : per_target)
      if (target.ends_with("(not reached)")) std::printf("[campaign] target %s: %d\n", target.c_str(), n);
    // Every stage the form has must have been hit.
    if (total >= static_cast<int>(aims.size()) * 5)
      for (const auto& aim : aims) {
        const auto stage = stage_of(aim.side, aim.step, aim.nth == 2 ? "stop_container" : aim.nth == 3 ? "commit" : "");
        EXPECT_GT(per_stage[stage], 0) << "no kill landed in " << stage;
      }
  }

 private:
  fs::path data_dir() const { return tmp_ / "state"; }
  fs::path config_file() const { return tmp_ / "node.json"; }
  fs::path instance_dir(const Side& s) const { return data_dir() / "instances" / s.id; }
  fs::path state_dir(const Side& s) const { return instance_dir(s) / "sync_history/state"; }
  fs::path record_file() const { return data_dir() / "kv" / hex("CHAINSTORE_SYNC") / (hex(kKey) + ".json"); }
  std::string container(const Side& s) const { return tag_ + "-" + s.id; }

  const TreeSnapshot& expected(long gen) {
    auto it = expected_.find(gen);
    if (it == expected_.end()) {
      if (expected_.size() > 4) expected_.erase(expected_.begin());
      it = expected_.emplace(gen, expected_tree(tmp_.path(), gen)).first;
    }
    return it->second;
  }

  static std::pair<int, std::string> shell_run(std::vector<std::string> argv) {
    ChildProcess p(std::move(argv));
    auto status = p.wait_exit(60s);
    const int code = status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
    return {code, p.output()};
  }

  void create_container(const Side& side) {
    run_quiet({"docker", "-H", "unix://" + *docker_, "rm", "-f", container(side)});
    auto r = shell_run({"docker", "-H", "unix://" + *docker_, "run", "-d", "--name", container(side), "--network",
                        "none", "-v", side.system_volume.string() + ":/r1en_system", "-v",
                        side.data.string() + ":/app/data", "carsync-busybox:latest", "sh", "-c",
                        "trap 'exit 0' TERM; sleep 3600 & wait"});
    if (r.first != 0) throw std::runtime_error("docker run failed: " + r.second);
  }

  bool running(const Side& side) {
    auto r = shell_run({"docker", "-H", "unix://" + *docker_, "inspect", "-f", "{{.State.Running}}", container(side)});
    return r.first == 0 && r.second.starts_with("true");
  }

  // Starts carsyncd; the offset of its output where the campaign's lines begin.
  std::size_t start_daemon() {
    daemon_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{CARSYNCD_PATH, "--config", config_file().string()});
    if (!daemon_->wait_for_output("carsyncd ready", 60s))
      throw std::runtime_error("carsyncd did not start:\n" + daemon_->output());
    return 0;
  }

  // The app's side of a cycle: the new generation in its volume, then its request.
  void request(long gen) {
    write_generation(provider_.data, gen);
    drop_request(provider_.control_dir(),
                 R"({"archive_paths": ["/app/data"], "metadata": {"gen": )" + std::to_string(gen) + "}}");
  }

  // True once the `nth` `line` after `offset` is in the output (false at the deadline).
  bool wait_nth(const std::string& line, int nth, std::size_t offset, Clock::duration limit) {
    const auto deadline = Clock::now() + limit;
    for (;;) {
      const auto log = daemon_->output();
      int seen = 0;
      for (auto pos = log.find(line, offset); pos != std::string::npos; pos = log.find(line, pos + 1))
        if (++seen == nth) return true;
      if (Clock::now() >= deadline) return false;
      // Not a sleep-and-hope: this polls the daemon's output (a pipe drained by a thread).
      std::this_thread::sleep_for(50us);
    }
  }

  // Both sides have finished this generation (files only; see wait_quiet for the runs).
  bool converged() {
    const auto record = read_object(record_file());
    if (!record || gen_of(*record) != gen_) return false;
    const auto cid = str(*record, "cid");
    const auto response = read_object(provider_.control_dir() / "response.json");
    if (!response || gen_of(*response) != gen_ || str(*response, "cid") != cid) return false;
    const auto ctl = provider_.control_dir();
    if (fs::exists(ctl / "request.json") || fs::exists(ctl / "request.json.processing")) return false;
    const auto state = read_object(state_dir(consumer_) / "current_apply.json");
    if (!state || str(*state, "state") != "applied" || str(*state, "cid") != cid) return false;
    const auto last = read_object(consumer_.control_dir() / "last_apply.json");
    if (!stale_finalise_allowed_ && (!last || str(*last, "cid") != cid)) return false;
    if (docker_ && (!running(provider_) || !running(consumer_))) return false;
    return true;
  }

  // Until the last crash-point line of each instance since `offset` is "done" (or there is
  // none): nothing is left in flight, retirement included.
  void wait_quiet(std::size_t offset) {
    const auto deadline = Clock::now() + 60s;
    for (;;) {
      const auto l = classify(points_in(daemon_->output(), offset));
      if (l.stage == "idle") return;
      if (Clock::now() >= deadline) {
        ADD_FAILURE() << "carsyncd still busy in " << l.stage << "\n" << daemon_->output();
        return;
      }
      std::this_thread::sleep_for(1ms);
    }
  }

  std::string diagnostics() {
    std::ostringstream out;
    for (const auto& f : {record_file(), provider_.control_dir() / "response.json",
                          state_dir(consumer_) / "current_apply.json", consumer_.control_dir() / "last_apply.json"})
      out << f.filename().string() << ": " << (fs::exists(f) ? read_file(f) : std::string("absent")) << "\n";
    out << "provider control dir: " << join(names_in(provider_.control_dir())) << "\n";
    return out.str();
  }

  // Every invariant of a quiet node; returns 1 when this generation was published twice.
  int check_invariants(const std::string& landed, const Landing& landing) {
    SCOPED_TRACE("landed in " + landed);
    const auto record = *read_object(record_file());
    const auto cid = str(record, "cid");

    // The volume: exactly the newest generation.
    const auto now = volume_tree(consumer_.data);
    EXPECT_EQ(now, expected(gen_)) << describe_difference(now, expected(gen_));

    // One final response; the request consumed.
    EXPECT_EQ(names_in(provider_.control_dir()), (std::set<std::string>{"response.json"}));
    EXPECT_EQ(names_in(consumer_.control_dir()), (std::set<std::string>{"last_apply.json"}));
    const auto last = read_object(consumer_.control_dir() / "last_apply.json");
    const bool finalised = last && str(*last, "cid") == cid;
    if (!finalised) ++stale_finalisations_;
    EXPECT_TRUE(finalised || stale_finalise_allowed_) << "last_apply.json does not name " << cid;
    const auto response = *read_object(provider_.control_dir() / "response.json");
    EXPECT_EQ(str(response, "status"), "ok");

    // Published once, or twice after a kill past the acknowledgement, as history shows.
    const auto sent = history(instance_dir(provider_) / "sync_history/sent");
    int publishes = 0;
    for (const auto& e : sent) publishes += gen_of(e) == gen_;
    EXPECT_GE(publishes, 1);
    EXPECT_LE(publishes, landing.past_ack ? 2 : 1) << "generation " << gen_ << " published " << publishes
                                                   << " times (kill in " << landed << ")";

    // Containers given back.
    if (docker_) {
      // Whatever the kill interrupted: the stop is recorded before it happens, and start-up
      // recovery restarts a container carsync stopped (it once stayed down after a kill
      // between the consumer's commit and its start, until the next snapshot).
      EXPECT_TRUE(running(provider_));
      EXPECT_TRUE(running(consumer_)) << "the consumer's container is not running after a kill in " << landed;
    }

    // No leftovers.
    for (const auto* side : {&provider_, &consumer_}) {
      EXPECT_EQ(names_in(instance_dir(*side) / "scratch"), std::set<std::string>{}) << side->id;
      EXPECT_EQ(names_in(state_dir(*side) / "staging"), std::set<std::string>{}) << side->id;
      EXPECT_FALSE(fs::exists(state_dir(*side) / "apply_journal.json")) << side->id;
      for (const auto& name : names_in(state_dir(*side))) {
        EXPECT_TRUE(name.ends_with(".json") || name == "staging" || name == "quarantine" || name == "delta")
            << side->id << " state dir holds " << name;
      }
    }
    // The delta state: the consumer's base, the provider's newest index (and the one of a
    // version that a kill cut before its publish); nothing half-written.
    for (const auto& name : names_in(state_dir(consumer_) / "delta"))
      EXPECT_TRUE(name == "base.archive" || name == "base.index") << "consumer delta dir holds " << name;
    for (const auto& name : names_in(state_dir(provider_) / "delta"))
      EXPECT_TRUE(name.starts_with("index-")) << "provider delta dir holds " << name;
    // The embedded store's temp of a put cut by a kill during the upload is swept when the
    // restarted daemon opens the store (it names its writer's pid; that process is gone).
    EXPECT_EQ(names_in(data_dir() / "cas/tmp"), std::set<std::string>{}) << "after a kill in " << landed;

    // History, state and store agree.
    EXPECT_FALSE(sent.empty());
    if (!sent.empty()) {
      EXPECT_EQ(str(sent.back(), "cid"), cid);
    }
    const auto received = history(instance_dir(consumer_) / "sync_history/received");
    EXPECT_FALSE(received.empty());
    if (!received.empty() && finalised) {
      EXPECT_EQ(str(received.back(), "cid"), cid);
    }
    EXPECT_EQ(str(*read_object(state_dir(consumer_) / "current_apply.json"), "cid"), cid);
    const auto blobs = names_in(data_dir() / "cas/blobs");
    EXPECT_TRUE(blobs.count(cid)) << "the published blob is not in the store";

    // Retirement: every earlier sent entry retired unless it holds the current CID, and no
    // blob but the current one outlives a second check.
    // A retirement pass a kill cut (or never reached) may leave earlier entries for the next one.
    // So may everything earlier when the kill came after .processing was discarded (no rerun)
    // and before or during the retirement pass: the next publish's pass retires them all.
    const bool retirement_cut = landing.provider_step == "retire_previous" || landing.provider_step == "discard_processing";
    std::set<std::string> in_history;
    std::set<std::string> waiting;  // what a cut retirement pass leaves for the next pass
    for (std::size_t k = 0; k < sent.size(); ++k) {
      const auto& e = sent[k];
      in_history.insert(str(e, "cid"));
      // Delta indexes and packs are named by the entry that uploaded them; those the
      // newest record no longer names go in the next complete retirement pass.
      if (const auto* d = e.if_contains("delta"); d && d->is_object())
        for (const char* part : {"index", "pack"})
          if (const auto* o = d->as_object().if_contains(part); o && o->is_object()) {
            const auto c = str(o->as_object(), "cid");
            in_history.insert(c);
            const auto* deleted = o->as_object().if_contains("deleted_at");
            if (retirement_cut && (!deleted || deleted->is_null())) waiting.insert(c);
          }
    }
    for (std::size_t k = 0; k + 1 < sent.size(); ++k) {
      if (str(sent[k], "cid") == cid || retired(sent[k])) continue;
      if (retirement_cut) {
        waiting.insert(str(sent[k], "cid"));
        continue;
      }
      ADD_FAILURE() << "sent entry of generation " << gen_of(sent[k]) << " (cid " << str(sent[k], "cid")
                    << ") never retired; newest is generation " << gen_;
    }
    // Every blob but the current one is in history (a run killed between its upload and its
    // sent-history entry leaves upload_in_flight.json, which start-up turns into an entry;
    // killed inside the upload, the record names the archive, from which the embedded store
    // finds the blob), and none outlives a second check unless a cut retirement pass left it.
    for (const auto& b : blobs) {
      if (b == cid || in_history.count(b)) continue;
      ADD_FAILURE() << "blob " << b << " is referenced by no history entry after a kill in " << landed;
    }
    // The delta objects the current record names stay as long as it names them.
    std::set<std::string> named;
    if (!sent.empty())
      if (const auto* d = sent.back().if_contains("delta"); d && d->is_object()) {
        for (const char* part : {"index", "pack"})
          if (const auto* o = d->as_object().if_contains(part); o && o->is_object()) named.insert(str(o->as_object(), "cid"));
        if (const auto* packs = d->as_object().if_contains("record_packs"); packs && packs->is_array())
          for (const auto& p : packs->as_array())
            if (p.is_string()) named.insert(std::string(p.as_string()));
      }
    for (const auto& b : blobs)
      if (b != cid && !named.count(b) && !waiting.count(b) && previous_blobs_.count(b))
        ADD_FAILURE() << "blob " << b << " orphaned for more than one retirement cycle (generation " << gen_ << ")";
    previous_blobs_ = blobs;
    return publishes > 1 ? 1 : 0;
  }

  TempDir tmp_;
  std::optional<std::string> docker_;
  std::string tag_;
  Side provider_{kProvider, {}, {}, {}}, consumer_{kConsumer, {}, {}, {}};
  std::unique_ptr<ChildProcess> daemon_;
  long gen_ = 0, held_ = 0;
  std::map<long, TreeSnapshot> expected_;
  std::set<std::string> previous_blobs_;

  bool stale_finalise_allowed_ = false;
  int stale_finalisations_ = 0;
};

TEST(CrashCampaign, NoContainer) {
  Campaign campaign(std::nullopt);
  campaign.run(env_number("CARSYNC_CRASH_KILLS", 300), env_number("CARSYNC_CRASH_SEED", std::random_device{}()));
}

TEST(CrashCampaign, Docker) {
  const char* socket = std::getenv("CARSYNC_TEST_DOCKER_SOCKET");
  if (!socket || !*socket) GTEST_SKIP() << "CARSYNC_TEST_DOCKER_SOCKET is not set (tests/fixtures/dockerd.sh start)";
  Campaign campaign{std::string(socket)};
  campaign.run(env_number("CARSYNC_CRASH_DOCKER_KILLS", 40), env_number("CARSYNC_CRASH_SEED", std::random_device{}()));
}

}  // namespace
}  // namespace carsync::test
