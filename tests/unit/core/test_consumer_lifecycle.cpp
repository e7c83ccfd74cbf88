// Steps the consumer state machine through the consumer tick of spec §8 (checklist N).
#include "core/consumer_lifecycle.hpp"
#include "core/quarantine.hpp"
#include "core/record.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <vector>

namespace carsync::core {
namespace {

namespace json = boost::json;
using Kind = ConsumerAction::Kind;
using ::testing::HasSubstr;

const std::string digest = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

json::object manifest() {
  return {
      {"schema_version", 1},
      {"archive_paths", json::array{"/app/data/"}},
      {"archive_format", "tar.gz"},
      {"archive_size_bytes", 12345},
      {"encryption", "r1fs-default"},
      {"runtime", json::object{{"provider_capture", "offline"}, {"consumer_apply", "offline_restart"}}},
  };
}

json::object record(json::value m = manifest()) {
  return {{"cid", "QmNew"},
          {"version", 1714742401},
          {"timestamp", 1714742401.73},
          {"node_id", "node-a"},
          {"metadata", json::object{{"epoch", 1}}},
          {"runtime", json::object{{"provider_capture", "offline"}, {"consumer_apply", "offline_restart"}}},
          {"manifest", std::move(m)}};
}

struct Trace {
  std::vector<ConsumerAction> actions;
  std::vector<Kind> kinds() const {
    std::vector<Kind> k;
    for (const auto& a : actions) k.push_back(a.kind);
    return k;
  }
  long count(Kind k) const {
    return std::count_if(actions.begin(), actions.end(), [&](const auto& a) { return a.kind == k; });
  }
  std::ptrdiff_t index(Kind k) const {
    auto it = std::find_if(actions.begin(), actions.end(), [&](const auto& a) { return a.kind == k; });
    return it == actions.end() ? -1 : it - actions.begin();
  }
  const ConsumerAction& first(Kind k) const {
    static const ConsumerAction none;
    auto i = index(k);
    return i < 0 ? none : actions[static_cast<std::size_t>(i)];
  }
  // The documents of every write_state, in order.
  std::vector<json::object> states() const {
    std::vector<json::object> s;
    for (const auto& a : actions)
      if (a.kind == Kind::write_state) s.push_back(a.document);
    return s;
  }
};

ConsumerEvent failed(std::string text) {
  ConsumerEvent ev;
  ev.error = make_error(errc::io_failure, std::move(text));
  return ev;
}

ConsumerEvent happy(const ConsumerAction& a) {
  ConsumerEvent ev;
  if (a.kind == Kind::commit) ev.extracted_paths = {"/app/data", "/app/data/weights.bin"};
  return ev;
}

class ConsumerLifecycleTest : public ::testing::Test {
 protected:
  ConsumerParams params() {
    ConsumerParams p;
    p.has_container = true;
    p.mounts = mounts_;
    p.policy = &policy_;
    p.applied_cid = "QmOld";
    p.manifest_digest = digest;
    return p;
  }

  // Runs the machine to the end, answering each action with `answer`; the clock advances
  // one second per event.
  Trace drive(ConsumerLifecycle& m, const std::function<ConsumerEvent(const ConsumerAction&)>& answer = happy) {
    Trace run;
    ConsumerEvent first;
    first.now = now_;
    ConsumerAction a = m.resume(first);
    while (a.kind != Kind::done) {
      run.actions.push_back(a);
      EXPECT_LT(run.actions.size(), 32u) << "machine does not terminate";
      if (run.actions.size() >= 32) break;
      ConsumerEvent ev = answer(a);
      ev.now = (now_ += 1.0);
      a = m.resume(ev);
    }
    EXPECT_TRUE(m.finished());
    return run;
  }

  Trace drive(std::optional<json::value> rec, ConsumerParams p,
            const std::function<ConsumerEvent(const ConsumerAction&)>& answer = happy) {
    machine_.emplace(std::move(rec), std::move(p));
    return drive(*machine_, answer);
  }

  std::vector<VolumeMount> mounts_ = {{"/x/fixed_volumes/mounts/r1en_system", "/r1en_system"},
                                      {"/x/fixed_volumes/mounts/appdata", "/app/data"}};
  MountPolicy policy_;
  double now_ = 1714742460.0;
  std::optional<ConsumerLifecycle> machine_;
};

const std::vector<Kind> full_flow{Kind::write_state,    Kind::download,         Kind::scan,
                                  Kind::stop_container, Kind::write_state,      Kind::commit,
                                  Kind::write_state,    Kind::append_history, Kind::write_last_apply, Kind::start_container,
                                  Kind::discard_staging, Kind::retire_previous};

TEST_F(ConsumerLifecycleTest, N161_NoRecordDoesNothing) {
  Trace run = drive(std::nullopt, params());
  EXPECT_TRUE(run.actions.empty());
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::no_record);
}

TEST_F(ConsumerLifecycleTest, RecordWithoutTruthyCidOrNotObjectDoesNothing) {
  for (json::value rec : {json::value(nullptr), json::value("QmNew"), json::value(json::object{{"cid", ""}}),
                          json::value(json::object{{"version", 3}})}) {
    Trace run = drive(rec, params());
    EXPECT_TRUE(run.actions.empty()) << rec;
    EXPECT_EQ(machine_->outcome(), ConsumerOutcome::no_record) << rec;
  }
}

TEST_F(ConsumerLifecycleTest, N162_FullFlowStopsCommitsFinalisesThenStarts) {
  Trace run = drive(json::value(record()), params());
  EXPECT_EQ(run.kinds(), full_flow);
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::applied);
  EXPECT_TRUE(machine_->restart_safe());
  EXPECT_TRUE(machine_->history_written());
  EXPECT_FALSE(machine_->failed_stage());
  EXPECT_EQ(run.first(Kind::download).cid, "QmNew");
  EXPECT_EQ(run.first(Kind::retire_previous).cid, "QmNew");

  const auto states = run.states();
  ASSERT_EQ(states.size(), 3u);
  EXPECT_EQ(states[0], (json::object{{"state", "preparing"}, {"cid", "QmNew"}, {"version", 1714742401},
                                     {"timestamp", 1714742460.0}, {"applied_cid", "QmOld"}}));
  EXPECT_EQ(states[1].at("state"), "applying");
  EXPECT_EQ(states[2].at("state"), "applied");
  EXPECT_EQ(states[2].at("cid"), "QmNew");
  EXPECT_EQ(machine_->identity().cid, "QmNew");
}

TEST_F(ConsumerLifecycleTest, N162_FinalisationDocumentsMatchSpec) {
  double committed_at = 0;
  Trace run = drive(json::value(record()), params(), [&](const ConsumerAction& a) {
    if (a.kind == Kind::commit) committed_at = now_ + 1.0;  // the stamp this answer will carry
    return happy(a);
  });
  const json::object last_apply{
      {"cid", "QmNew"},
      {"version", 1714742401},
      {"source_timestamp", 1714742401.73},
      {"applied_timestamp", committed_at},
      {"node_id", "node-a"},
      {"metadata", json::object{{"epoch", 1}}},
  };
  EXPECT_EQ(run.first(Kind::write_last_apply).document, last_apply);

  json::object entry = last_apply;
  entry["manifest"] = manifest();
  entry["extracted_paths"] = json::array{"/app/data", "/app/data/weights.bin"};
  EXPECT_EQ(run.first(Kind::append_history).document, entry);
}

TEST_F(ConsumerLifecycleTest, FinalisationDefaultsFalsyMetadataAndMissingFieldsToNull) {
  json::object rec = record();
  rec["metadata"] = nullptr;
  rec.erase("node_id");
  rec.erase("timestamp");
  Trace run = drive(json::value(rec), params());
  const auto& doc = run.first(Kind::append_history).document;
  EXPECT_EQ(doc.at("metadata"), json::object{});
  EXPECT_TRUE(doc.at("node_id").is_null());
  EXPECT_TRUE(doc.at("source_timestamp").is_null());
}

TEST_F(ConsumerLifecycleTest, N163_RecordRequestingOfflineRestartStopsOnce) {
  Trace run = drive(json::value(record()), params());
  EXPECT_EQ(run.count(Kind::stop_container), 1);
  EXPECT_EQ(run.count(Kind::start_container), 1);
  EXPECT_EQ(machine_->apply_mode(), (ApplyModeResolution{"offline_restart", "offline_restart", std::nullopt}));
}

TEST_F(ConsumerLifecycleTest, N164_LocalOnlineNoRestartIsForcedOffline) {
  ConsumerParams p = params();
  p.apply_mode = "online_no_restart";
  Trace run = drive(json::value(record()), std::move(p));
  EXPECT_EQ(run.kinds(), full_flow);
  EXPECT_EQ(machine_->apply_mode(),
            (ApplyModeResolution{"online_no_restart", "offline_restart", "online_apply_disabled"}));
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::applied);
  EXPECT_EQ(run.count(Kind::write_last_apply), 1);
}

TEST_F(ConsumerLifecycleTest, N165_LocalOnlineRestartIsForcedOffline) {
  ConsumerParams p = params();
  p.apply_mode = "online_restart";
  Trace run = drive(json::value(record()), std::move(p));
  EXPECT_EQ(run.kinds(), full_flow);
  EXPECT_EQ(machine_->apply_mode(), (ApplyModeResolution{"online_restart", "offline_restart", "online_apply_disabled"}));
}

TEST_F(ConsumerLifecycleTest, N166_RecordAskingOnlineNoRestartCannotAvoidStop) {
  json::object m = manifest();
  m["runtime"].as_object()["consumer_apply"] = "online_no_restart";
  json::object rec = record(m);
  rec["runtime"].as_object()["consumer_apply"] = "online_no_restart";
  Trace run = drive(json::value(rec), params());
  EXPECT_EQ(run.count(Kind::stop_container), 1);
  EXPECT_LT(run.index(Kind::stop_container), run.index(Kind::commit));
  EXPECT_EQ(machine_->apply_mode().effective_mode, "offline_restart");
}

TEST_F(ConsumerLifecycleTest, N168_SameCidDoesNothing) {
  ConsumerParams p = params();
  p.applied_cid = "QmNew";
  Trace run = drive(json::value(record()), std::move(p));
  EXPECT_TRUE(run.actions.empty());
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::up_to_date);
}

TEST_F(ConsumerLifecycleTest, N169_NewCidWithLowerVersionIsApplied) {
  json::object rec = record();
  rec["version"] = 5;  // older than anything applied so far: identity is the CID
  Trace run = drive(json::value(rec), params());
  EXPECT_EQ(run.kinds(), full_flow);
  EXPECT_EQ(run.first(Kind::append_history).document.at("version"), 5);
  EXPECT_EQ(run.first(Kind::append_history).document.at("cid"), "QmNew");
}

TEST_F(ConsumerLifecycleTest, FirstApplyWithNothingAppliedBefore) {
  ConsumerParams p = params();
  p.applied_cid.reset();
  Trace run = drive(json::value(record()), std::move(p));
  EXPECT_EQ(run.kinds(), full_flow);
}

TEST_F(ConsumerLifecycleTest, N170_UnmappableManifestQuarantinesWithoutLifecycle) {
  json::object m = manifest();
  m["archive_paths"] = json::array{"/app/data/", "/app/other"};
  Trace run = drive(json::value(record(m)), params());
  EXPECT_EQ(run.kinds(), (std::vector<Kind>{Kind::quarantine, Kind::write_state}));
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::preflight_failed);
  EXPECT_EQ(machine_->failed_stage(), ConsumerStage::validation);

  const auto& q = run.first(Kind::quarantine);
  EXPECT_EQ(q.name, "QmNew__fedcba9876543210.json");
  EXPECT_EQ(q.document.at("stage"), "validation");
  EXPECT_EQ(q.document.at("manifest_digest"), json::value(digest));
  EXPECT_THAT(std::string(q.document.at("error").as_string()), HasSubstr("unmapped archive_paths"));
  EXPECT_THAT(std::string(q.document.at("error").as_string()), HasSubstr("/app/other"));

  const auto state = run.states().at(0);
  EXPECT_EQ(state.at("state"), "failed_preflight");
  EXPECT_EQ(state.at("stage"), "validation");
  EXPECT_EQ(state.at("error"), q.document.at("error"));
}

TEST_F(ConsumerLifecycleTest, ValidationReasonsAreJoinedWithSemicolons) {
  json::object m = manifest();
  m["archive_format"] = "zip";
  m["schema_version"] = 999;
  Trace run = drive(json::value(record(m)), params());
  const std::string error(run.first(Kind::quarantine).document.at("error").as_string());
  const auto sep = error.find("; ");
  ASSERT_NE(sep, std::string::npos);
  EXPECT_THAT(error.substr(0, sep), HasSubstr("999"));
  EXPECT_THAT(error.substr(sep + 2), HasSubstr("zip"));
  EXPECT_EQ(error, machine_->error_text());
}

TEST_F(ConsumerLifecycleTest, N171_DownloadFailureQuarantinedThenBackoffDoesNothing) {
  Trace run = drive(json::value(record()), params(),
                  [](const ConsumerAction& a) { return a.kind == Kind::download ? failed("no such cid") : happy(a); });
  EXPECT_EQ(run.kinds(), (std::vector<Kind>{Kind::write_state, Kind::download, Kind::quarantine, Kind::write_state}));
  EXPECT_EQ(run.count(Kind::stop_container), 0);
  EXPECT_EQ(machine_->failed_stage(), ConsumerStage::r1fs_download);
  const json::object quarantine = run.first(Kind::quarantine).document;
  EXPECT_EQ(quarantine.at("stage"), "r1fs_download");
  EXPECT_EQ(quarantine.at("error"), "no such cid");
  EXPECT_EQ(quarantine.at("failure_count"), 1);
  EXPECT_EQ(run.states().back().at("stage"), "r1fs_download");

  // The next tick, well within the 60 s backoff.
  ConsumerParams p = params();
  p.quarantine = quarantine;
  Trace again = drive(json::value(record()), p);
  EXPECT_TRUE(again.actions.empty());
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::backing_off);

  // After the backoff the record is retried; another failure counts on.
  now_ = quarantine.at("next_retry_after").as_double();
  Trace retry = drive(json::value(record()), p,
                    [](const ConsumerAction& a) { return a.kind == Kind::download ? failed("no such cid") : happy(a); });
  EXPECT_EQ(retry.count(Kind::download), 1);
  const auto& second = retry.first(Kind::quarantine).document;
  EXPECT_EQ(second.at("failure_count"), 2);
  EXPECT_EQ(second.at("first_seen"), quarantine.at("first_seen"));
  EXPECT_EQ(second.at("next_retry_after").as_double() - second.at("last_failed").as_double(), 120.0);
}

TEST_F(ConsumerLifecycleTest, ScanFailureQuarantinesExtractAndDiscardsStagingBeforeAnyStop) {
  Trace run = drive(json::value(record()), params(), [](const ConsumerAction& a) {
    return a.kind == Kind::scan ? failed("tar member outside manifest archive_paths") : happy(a);
  });
  EXPECT_EQ(run.kinds(), (std::vector<Kind>{Kind::write_state, Kind::download, Kind::scan, Kind::quarantine,
                                            Kind::write_state, Kind::discard_staging}));
  EXPECT_EQ(run.first(Kind::quarantine).document.at("stage"), "extract");
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::preflight_failed);
}

TEST_F(ConsumerLifecycleTest, QuarantineWriteFailureLeavesStateUntouched) {
  Trace run = drive(json::value(record()), params(), [](const ConsumerAction& a) {
    if (a.kind == Kind::download) return failed("no such cid");
    if (a.kind == Kind::quarantine) return failed("disk full");
    return happy(a);
  });
  EXPECT_EQ(run.kinds(), (std::vector<Kind>{Kind::write_state, Kind::download, Kind::quarantine}));
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::preflight_failed);
}

TEST_F(ConsumerLifecycleTest, N172_UncertainCommitHaltsWithoutStart) {
  Trace run = drive(json::value(record()), params(), [](const ConsumerAction& a) {
    if (a.kind != Kind::commit) return happy(a);
    ConsumerEvent ev = failed("restore mode of /app/data: Operation not permitted");
    ev.rollback_incomplete = true;
    ev.extracted_paths = {"/app/data"};
    return ev;
  });
  EXPECT_EQ(run.count(Kind::stop_container), 1);
  EXPECT_EQ(run.count(Kind::start_container), 0);
  EXPECT_EQ(run.count(Kind::quarantine), 0);
  EXPECT_EQ(run.count(Kind::append_history), 0);
  EXPECT_EQ(run.count(Kind::write_last_apply), 0);
  EXPECT_EQ(run.kinds().back(), Kind::discard_staging);
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::uncertain);
  EXPECT_FALSE(machine_->restart_safe());

  const auto& halt = run.first(Kind::halt).document;
  EXPECT_EQ(halt.at("state"), "uncertain");
  EXPECT_EQ(halt.at("halted"), true);
  EXPECT_EQ(halt.at("error"), "restore mode of /app/data: Operation not permitted");
  EXPECT_EQ(halt.at("extracted_paths"), json::array{"/app/data"});
}

TEST_F(ConsumerLifecycleTest, HaltedInstanceDoesNothing) {
  ConsumerParams p = params();
  p.halted = true;
  Trace run = drive(json::value(record()), std::move(p));
  EXPECT_TRUE(run.actions.empty());
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::halted);
}

TEST_F(ConsumerLifecycleTest, N173_NonObjectManifestQuarantinesWithoutLifecycle) {
  Trace run = drive(json::value(record("not a manifest")), params());
  EXPECT_EQ(run.kinds(), (std::vector<Kind>{Kind::quarantine, Kind::write_state}));
  EXPECT_EQ(run.first(Kind::quarantine).document.at("error"), "manifest must be a JSON object");
}

TEST_F(ConsumerLifecycleTest, N174_StopNotConfirmedQuarantinesWithoutStartOrFinalise) {
  Trace run = drive(json::value(record()), params(), [](const ConsumerAction& a) {
    return a.kind == Kind::stop_container ? failed("stop timed out") : happy(a);
  });
  EXPECT_EQ(run.kinds(), (std::vector<Kind>{Kind::write_state, Kind::download, Kind::scan, Kind::stop_container,
                                            Kind::quarantine, Kind::write_state, Kind::discard_staging}));
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::stop_failed);
  EXPECT_EQ(machine_->failed_stage(), ConsumerStage::runtime_stop);
  const auto& q = run.first(Kind::quarantine).document;
  EXPECT_EQ(q.at("stage"), "runtime_stop");
  EXPECT_THAT(std::string(q.at("error").as_string()), HasSubstr("stop timed out"));
  EXPECT_EQ(run.states().back().at("stage"), "runtime_stop");
}

TEST_F(ConsumerLifecycleTest, CommitFailureRolledBackIsQuarantinedAndRestarted) {
  Trace run = drive(json::value(record()), params(), [](const ConsumerAction& a) {
    if (a.kind != Kind::commit) return happy(a);
    ConsumerEvent ev = failed("cannot replace directory with file: /app/data/x");
    ev.extracted_paths = {"/app/data"};
    return ev;
  });
  EXPECT_EQ(run.kinds(),
            (std::vector<Kind>{Kind::write_state, Kind::download, Kind::scan, Kind::stop_container, Kind::write_state,
                               Kind::commit, Kind::write_state, Kind::quarantine, Kind::start_container,
                               Kind::discard_staging}));
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::commit_failed);
  EXPECT_TRUE(machine_->restart_safe());
  EXPECT_EQ(run.states().back(),
            (json::object{{"state", "failed_rolled_back"}, {"cid", "QmNew"}, {"version", 1714742401},
                          {"timestamp", run.states().back().at("timestamp")},
                          {"error", "cannot replace directory with file: /app/data/x"},
                          {"extracted_paths", json::array{"/app/data"}}, {"applied_cid", "QmOld"}}));
  EXPECT_EQ(run.first(Kind::quarantine).document.at("stage"), "commit");
}

TEST_F(ConsumerLifecycleTest, ApplyingStateWriteFailureQuarantinesAndRestartsWithoutCommit) {
  int state_writes = 0;
  Trace run = drive(json::value(record()), params(), [&](const ConsumerAction& a) {
    if (a.kind == Kind::write_state && ++state_writes == 2) return failed("read-only file system");
    return happy(a);
  });
  EXPECT_EQ(run.count(Kind::commit), 0);
  EXPECT_EQ(run.count(Kind::start_container), 1);
  EXPECT_EQ(run.first(Kind::quarantine).document.at("stage"), "commit");
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::commit_failed);
}

TEST_F(ConsumerLifecycleTest, PreparingStateWriteFailureIsOnlyLogged) {
  int state_writes = 0;
  Trace run = drive(json::value(record()), params(), [&](const ConsumerAction& a) {
    if (a.kind == Kind::write_state && ++state_writes == 1) return failed("disk full");
    return happy(a);
  });
  EXPECT_EQ(run.kinds(), full_flow);
}

TEST_F(ConsumerLifecycleTest, NoContainerAppliesWithoutStopOrStart) {
  ConsumerParams p = params();
  p.has_container = false;
  Trace run = drive(json::value(record()), std::move(p));
  EXPECT_EQ(run.count(Kind::stop_container), 0);
  EXPECT_EQ(run.count(Kind::start_container), 0);
  EXPECT_EQ(run.count(Kind::commit), 1);
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::applied);
}

TEST_F(ConsumerLifecycleTest, HistoryFailureSkipsRetirementButStillRestarts) {
  Trace run = drive(json::value(record()), params(), [](const ConsumerAction& a) {
    return a.kind == Kind::append_history ? failed("disk full") : happy(a);
  });
  EXPECT_EQ(run.count(Kind::retire_previous), 0);
  EXPECT_EQ(run.count(Kind::write_last_apply), 1);
  EXPECT_EQ(run.count(Kind::start_container), 1);
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::applied);
  EXPECT_TRUE(machine_->restart_safe());
  EXPECT_FALSE(machine_->history_written());
}

TEST_F(ConsumerLifecycleTest, LastApplyAndRetirementFailuresKeepOutcomeRestartSafe) {
  Trace run = drive(json::value(record()), params(), [](const ConsumerAction& a) {
    if (a.kind == Kind::write_last_apply || a.kind == Kind::retire_previous) return failed("boom");
    return happy(a);
  });
  EXPECT_EQ(run.kinds(), full_flow);
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::applied);
  EXPECT_TRUE(machine_->restart_safe());
}

// The CID the volumes held survives every state document of a later attempt until a new one
// is applied: a crash before the history entry must not rewind dedupe.
TEST_F(ConsumerLifecycleTest, EveryNonAppliedStateCarriesThePreviouslyAppliedCid) {
  Trace run = drive(json::value(record()), params(), [](const ConsumerAction& a) {
    if (a.kind != Kind::commit) return happy(a);
    ConsumerEvent ev = failed("restore failed");
    ev.rollback_incomplete = true;
    return ev;
  });
  auto states = run.states();
  ASSERT_EQ(states.size(), 2u);  // preparing, applying (the halt document follows)
  for (const auto& s : states) EXPECT_EQ(s.at("applied_cid"), "QmOld") << s.at("state");
  EXPECT_EQ(run.first(Kind::halt).document.at("applied_cid"), "QmOld");

  Trace ok = drive(json::value(record()), params());
  auto applied = ok.states().back();
  EXPECT_EQ(applied.at("state"), "applied");
  EXPECT_EQ(applied.at("cid"), "QmNew");
  EXPECT_FALSE(applied.contains("applied_cid"));
}

TEST_F(ConsumerLifecycleTest, NothingAppliedBeforeCarriesNoAppliedCid) {
  ConsumerParams p = params();
  p.applied_cid.reset();
  Trace run = drive(json::value(record()), std::move(p));
  EXPECT_FALSE(run.states().front().contains("applied_cid"));
}

// The volumes hold the new snapshot and the history entry records it: a failed applied-state
// write does not undo the apply; finalisation and the restart go on.
TEST_F(ConsumerLifecycleTest, AppliedStateWriteFailureKeepsTheApplyAndFinalises) {
  int state_writes = 0;
  Trace run = drive(json::value(record()), params(), [&](const ConsumerAction& a) {
    if (a.kind == Kind::write_state && ++state_writes == 3) return failed("disk full");
    return happy(a);
  });
  EXPECT_EQ(run.kinds(), full_flow);
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::applied);
  EXPECT_FALSE(machine_->applied_state_written());
  EXPECT_TRUE(machine_->history_written());
}

// Cancellation, table-driven: cancelled while performing `at`, what must follow.
struct CancelCase {
  const char* name;
  Kind at;
  int occurrence;  // which occurrence of `at` (write_state happens several times)
  std::vector<Kind> after;
  ConsumerOutcome outcome;
};

TEST_F(ConsumerLifecycleTest, CancellationBeforeCommitAbandonsAndRestoresTheContainer) {
  const std::vector<CancelCase> cases = {
      {"preparing state", Kind::write_state, 1, {}, ConsumerOutcome::cancelled},
      {"download", Kind::download, 1, {}, ConsumerOutcome::cancelled},
      {"scan", Kind::scan, 1, {Kind::discard_staging}, ConsumerOutcome::cancelled},
      {"stop in flight", Kind::stop_container, 1, {Kind::start_container, Kind::discard_staging},
       ConsumerOutcome::cancelled},
      {"applying state", Kind::write_state, 2, {Kind::start_container, Kind::discard_staging},
       ConsumerOutcome::cancelled},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    int seen = 0;
    bool cancelled_once = false;
    std::vector<Kind> after;
    Trace run = drive(json::value(record()), params(), [&](const ConsumerAction& a) {
      if (cancelled_once) after.push_back(a.kind);
      ConsumerEvent ev = happy(a);
      if (!cancelled_once && a.kind == c.at && ++seen == c.occurrence) {
        ev.cancelled = true;
        cancelled_once = true;
      }
      return ev;
    });
    EXPECT_EQ(after, c.after);
    EXPECT_EQ(run.count(Kind::commit), 0);
    EXPECT_EQ(run.count(Kind::quarantine), 0);
    EXPECT_EQ(machine_->outcome(), c.outcome);
    EXPECT_TRUE(machine_->restart_safe());
  }
}

// The commit is never interrupted; once it ran, finalisation completes so the app restarts on
// a recorded snapshot with last_apply.json written.
TEST_F(ConsumerLifecycleTest, CancellationDuringOrAfterCommitFinishesTheApply) {
  for (Kind at : {Kind::commit, Kind::append_history, Kind::write_last_apply}) {
    SCOPED_TRACE(std::string(to_string(at)));
    Trace run = drive(json::value(record()), params(), [&](const ConsumerAction& a) {
      ConsumerEvent ev = happy(a);
      if (a.kind == at) ev.cancelled = true;
      return ev;
    });
    EXPECT_EQ(run.kinds(), full_flow);
    EXPECT_EQ(machine_->outcome(), ConsumerOutcome::applied);
  }
}

TEST_F(ConsumerLifecycleTest, CancelledBeforeTheFirstStepDoesNothing) {
  ConsumerLifecycle m(json::value(record()), params());
  ConsumerEvent first;
  first.cancelled = true;
  EXPECT_EQ(m.resume(first).kind, Kind::done);
  EXPECT_EQ(m.outcome(), ConsumerOutcome::cancelled);
}

TEST_F(ConsumerLifecycleTest, ExpiredQuarantineContinuesCountAndFirstSeen) {
  ConsumerParams p = params();
  p.quarantine = json::object{{"failure_count", 3}, {"first_seen", 100.0}, {"next_retry_after", now_ - 1.0}};
  Trace run = drive(json::value(record()), std::move(p),
                  [](const ConsumerAction& a) { return a.kind == Kind::scan ? failed("corrupt gzip") : happy(a); });
  const auto& q = run.first(Kind::quarantine).document;
  EXPECT_EQ(q.at("failure_count"), 4);
  EXPECT_EQ(q.at("first_seen"), 100.0);
  EXPECT_EQ(q.at("next_retry_after").as_double(), q.at("last_failed").as_double() + 480.0);
}

TEST_F(ConsumerLifecycleTest, ActiveQuarantineIsCheckedAfterDedupe) {
  ConsumerParams p = params();
  p.applied_cid = "QmNew";
  p.quarantine = json::object{{"next_retry_after", now_ + 100.0}};
  drive(json::value(record()), std::move(p));
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::up_to_date);
}


// "trust": the machine verifies before the download, records the accepted sequence after
// the scan and before the stop, and refuses (enforce) or reports (warn) a bad signature.
class TrustedConsumerTest : public ConsumerLifecycleTest {
 protected:
  TrustedConsumerTest() : key_(SecretKey::generate()), trusted_{key_.public_key()} {}

  json::object signed_record(std::int64_t sequence) {
    json::object r = record();
    r["archive_sha256"] = std::string(64, 'e');
    EXPECT_TRUE(sign_record(r, sync_hkey, "k", sequence, std::span(&key_, 1)));
    return r;
  }
  ConsumerParams trusting(TrustPolicy policy = TrustPolicy::enforce) {
    ConsumerParams p = params();
    p.sync_key = "k";
    p.trusted_keys = trusted_;
    p.trust_policy = policy;
    return p;
  }

  SecretKey key_;
  std::vector<PublicKey> trusted_;
};

TEST_F(TrustedConsumerTest, EveryStateDocumentFromPreparingOnCarriesTheAcceptedSequence) {
  auto run = drive(json::value(signed_record(5)), trusting());
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::applied);
  const auto states = run.states();
  ASSERT_EQ(states.size(), 3u);  // preparing, applying, applied
  for (const auto& doc : states) {
    ASSERT_TRUE(doc.contains("trust")) << json::serialize(doc);
    EXPECT_EQ(doc.at("trust").at("keys").at(key_.public_key().id()).at("sequence"), json::value(5));
    EXPECT_EQ(doc.at("trust").at("keys").at(key_.public_key().id()).at("cid"), json::value("QmNew"));
  }
  // The history entry carries what rebuilds them.
  EXPECT_EQ(run.first(Kind::append_history).document.at("signed_sequence"), json::value(5));
}

TEST_F(TrustedConsumerTest, AFailureAfterAcceptanceKeepsItAndOtherKeysAreCarried) {
  ConsumerParams p = trusting();
  p.trust_state.keys["0011223344556677"] = {7, "QmOther"};  // a retired key: kept as it was
  auto run = drive(json::value(signed_record(5)), std::move(p), [](const ConsumerAction& a) {
    return a.kind == Kind::download ? failed("store down") : happy(a);
  });
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::preflight_failed);
  const auto states = run.states();
  ASSERT_FALSE(states.empty());
  const auto& last = states.back();
  EXPECT_EQ(last.at("state"), json::value("failed_preflight"));
  EXPECT_EQ(last.at("trust").at("keys").at(key_.public_key().id()).at("sequence"), json::value(5));
  EXPECT_EQ(last.at("trust").at("keys").at("0011223344556677").at("sequence"), json::value(7));
}

TEST_F(TrustedConsumerTest, EnforceRefusesBeforeAnythingIsDownloaded) {
  auto run = drive(json::value(record()), trusting());  // unsigned
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::preflight_failed);
  EXPECT_EQ(machine_->failed_stage(), ConsumerStage::signature);
  EXPECT_EQ(run.count(Kind::download), 0);
  EXPECT_EQ(run.count(Kind::stop_container), 0);
  EXPECT_EQ(run.first(Kind::quarantine).document.at("stage"), json::value("signature"));
  for (const auto& doc : run.states()) EXPECT_FALSE(doc.contains("trust"));
  ASSERT_TRUE(machine_->signature_verdict());
  EXPECT_EQ(machine_->signature_verdict()->error, signature_errc::unsigned_record);
}

TEST_F(TrustedConsumerTest, WarnAppliesWithoutRecordingAnything) {
  auto run = drive(json::value(record()), trusting(TrustPolicy::warn));
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::applied);
  for (const auto& doc : run.states()) EXPECT_FALSE(doc.contains("trust"));
  EXPECT_EQ(machine_->signature_verdict()->error, signature_errc::unsigned_record);
  EXPECT_FALSE(run.first(Kind::append_history).document.contains("signed_sequence"));
}

TEST_F(TrustedConsumerTest, CancellationAfterAcceptanceGivesTheContainerBack) {
  machine_.emplace(json::value(signed_record(5)), trusting());
  ConsumerEvent ev;
  ev.now = now_;
  auto a = machine_->resume(ev);
  while (a.kind != Kind::scan && a.kind != Kind::done) a = machine_->resume(happy(a));
  ASSERT_EQ(a.kind, Kind::scan);
  ConsumerEvent cancelled;
  cancelled.cancelled = true;
  a = machine_->resume(cancelled);
  while (a.kind != Kind::done) {
    EXPECT_NE(a.kind, Kind::stop_container);
    EXPECT_NE(a.kind, Kind::commit);
    a = machine_->resume(happy(a));
  }
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::cancelled);
}

TEST_F(TrustedConsumerTest, WithoutTrustedKeysNothingIsChecked) {
  auto run = drive(json::value(record()), params());
  EXPECT_EQ(machine_->outcome(), ConsumerOutcome::applied);
  EXPECT_FALSE(machine_->signature_verdict());
  for (const auto& doc : run.states()) EXPECT_FALSE(doc.contains("trust"));
}

}  // namespace
}  // namespace carsync::core

namespace carsync::core {
namespace {

TEST_F(ConsumerLifecycleTest, TheDownloadsTransferGoesIntoTheReceivedEntry) {
  const json::object transfer{{"mode", "delta"}, {"fetched_bytes", 1200}, {"archive_bytes", 90000}};
  Trace run = drive(json::value(record()), params(), [&](const ConsumerAction& a) {
    ConsumerEvent ev = happy(a);
    if (a.kind == Kind::download) ev.transfer = transfer;
    return ev;
  });
  EXPECT_EQ(run.first(Kind::append_history).document.at("transfer"), transfer);
  // last_apply.json stays the reference's shape.
  EXPECT_FALSE(run.first(Kind::write_last_apply).document.contains("transfer"));
}

}  // namespace
}  // namespace carsync::core
