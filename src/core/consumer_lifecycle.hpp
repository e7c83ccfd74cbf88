#pragma once
// One consumer tick for one fetched record (spec §8.1, §8.4-§8.7), as a pure state machine:
// the driver (runtime) performs each action and resumes the machine with the outcome,
// stamping every event with now(). The driver does the look-ups first — fetch, dedupe
// (apply_state.hpp), the record's quarantine slot (quarantine.hpp), the halt flag — and the
// initial-sync gate is the runtime's business, not this machine's.
//
// carsync departs from the reference where §12 lists a weakness:
//  * a container stop that is not confirmed, and a failed commit, are quarantined with the
//    same backoff as a preflight failure (items 10 and 17), so a bad record cannot make the
//    consumer re-download or stop/start on every tick;
//  * an `uncertain` commit halts durably: the container stays stopped, across restarts,
//    until an operator clears the halt (item 11);
//  * finalisation (history, last_apply.json, retirement) only logs its errors and never
//    makes a successful apply not restart-safe (item 12);
//  * the previous download is retired and staging deleted after the restart, to shorten
//    the time the app is down.
//
// Decisions the drivers used to make live here too:
//  * every non-applied state document carries "applied_cid" (the CID the volumes held before
//    this attempt), so a crash between an apply and its history entry, followed by another
//    interrupted attempt, can never rewind dedupe;
//  * after a successful commit the applied state is written as its own step; if that write
//    fails the apply stands (the volumes hold the new snapshot and the history entry records
//    it for dedupe): finalisation continues and the failure is reported;
//  * with trusted keys ("trust"), the record's signature is verified before anything is
//    downloaded, and the sequence it was signed at is accepted at once: every state document
//    from `preparing` on carries it ("trust", durable with the state, no write of its own). A
//    record older than one accepted is refused from then on, while the accepted one itself
//    is applied again after a crash (same sequence, same CID). Only a genuine record is ever
//    accepted, so accepting before its bytes are checked refuses nothing a provider still
//    stands by;
//  * cancellation (shutdown past its grace, removal) is an input: before the commit the
//    attempt is abandoned — staging discarded, the container carsync stopped started again,
//    nothing quarantined; the commit itself is never interrupted, and after it the short
//    finalisation runs to the end so the app restarts on a recorded snapshot.
#include "carsync/config.hpp"
#include "core/apply_mode.hpp"
#include "core/apply_state.hpp"
#include "core/error.hpp"
#include "core/path_rules.hpp"
#include "core/record_signature.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::core {

// Stages named in quarantine files and in failed_preflight state documents.
enum class ConsumerStage { validation, signature, r1fs_download, extract, runtime_stop, commit };
std::string_view to_string(ConsumerStage s) noexcept;

struct ConsumerAction {
  enum class Kind {
    write_state,       // current_apply.json = document; failure only logged (see above)
    quarantine,        // state/quarantine/<name> = document
    download,          // get_file(cid); an empty local path is an error
    scan,              // §8.4 steps 4-6 over the download; the driver keeps plan + staging
    stop_container,    // runtime stop only (volumes stay mounted); must be confirmed
    commit,            // see below
    append_history,    // received history entry = document
    write_last_apply,  // <control dir>/last_apply.json = document; failure only logged
    start_container,   // outcome only logged
    discard_staging,   // delete the staging directory, if any; outcome only logged
    retire_previous,   // §9.3 over received/ (unpin_remote=false, cleanup_local=true)
    halt,              // current_apply.json = document (uncertain, halted); keep the container stopped
    done,
  };
  Kind kind = Kind::done;
  boost::json::object document;
  std::string name;  // quarantine: file name inside the quarantine directory
  std::string cid;   // download, retire_previous (the current CID)
};
std::string_view to_string(ConsumerAction::Kind k) noexcept;

// commit: the driver applies the plan under its rollback journal and, before releasing the
// journal, writes applied_state(machine.identity(), now(), extracted) to current_apply.json;
// if that write fails it rolls back like any other commit error. It reports:
//   error unset -> applied, with extracted_paths;
//   error set   -> failed; rollback_incomplete when undoing it failed (`uncertain`).
// The failure state documents are written by the machine.
//
// The outcome of the last action. Actions whose failure is only logged may carry an error;
// it is ignored except that a failed append_history skips retirement and a failed
// quarantine skips the failed_preflight state write.
struct ConsumerEvent {
  double now = 0;
  std::optional<Error> error;
  bool cancelled = false;                      // the step was interrupted by cancellation
  bool rollback_incomplete = false;            // commit
  std::vector<std::string> extracted_paths;    // commit
  // download: how the archive was fetched, for the received history entry:
  // {"mode": "delta"|"full", "fetched_bytes": N, "archive_bytes": M} (README "Delta transfer").
  std::optional<boost::json::object> transfer;
};

struct ConsumerParams {
  std::string apply_mode = "offline_restart";  // SyncConfig::consumer_apply_mode
  bool has_container = false;                  // false: nothing to stop or start
  std::span<const VolumeMount> mounts;         // this consumer's volumes (§6.2)
  const MountPolicy* policy = nullptr;         // nullptr: the default policy
  std::optional<std::string> applied_cid;      // dedupe_cid(current_apply, latest received)
  std::optional<boost::json::value> quarantine;  // the record's quarantine file, parsed
  std::string manifest_digest;                 // SHA-256 hex of quarantine_digest_input(record)
  bool halted = false;                         // is_halted(current_apply)
  // "trust" (core/record_signature.hpp): with keys, a record is verified before anything is
  // downloaded; under `enforce` one that fails is refused (stage signature), under `warn`
  // applied (the driver logs signature_verdict()). No keys: records are not checked.
  std::string sync_key;
  std::span<const PublicKey> trusted_keys;
  TrustPolicy trust_policy = TrustPolicy::enforce;
  TrustState trust_state;                      // current_apply.json's "trust", or rebuilt from history
};

enum class ConsumerOutcome {
  pending,           // not finished
  no_record,         // nothing fetched, not an object, or no truthy cid
  halted,            // a previous uncertain apply holds the instance
  up_to_date,        // the record's CID is the one applied
  backing_off,       // its quarantine has not expired
  preflight_failed,  // validation / download / extract: quarantined, container untouched
  stop_failed,       // stop not confirmed: quarantined, nothing touched, no restart
  commit_failed,     // rolled back completely: quarantined, container restarted
  uncertain,         // rollback incomplete: halted, container left stopped
  cancelled,         // abandoned before the commit: container as it was, nothing quarantined
  applied,
};
std::string_view to_string(ConsumerOutcome o) noexcept;

class ConsumerLifecycle {
 public:
  // `record`: what the fetch returned (nullopt when nothing).
  ConsumerLifecycle(std::optional<boost::json::value> record, ConsumerParams params);

  // The first call takes an event with only `now` set.
  ConsumerAction resume(const ConsumerEvent& ev);

  bool finished() const noexcept { return outcome_ != ConsumerOutcome::pending; }
  ConsumerOutcome outcome() const noexcept { return outcome_; }
  // False only after an incomplete rollback: the sync step must not start the container.
  bool restart_safe() const noexcept { return outcome_ != ConsumerOutcome::uncertain; }
  std::optional<ConsumerStage> failed_stage() const noexcept { return failed_stage_; }
  const std::string& error_text() const noexcept { return error_text_; }
  const ApplyModeResolution& apply_mode() const noexcept { return apply_mode_; }
  const boost::json::value& record() const noexcept { return record_; }
  const ApplyIdentity& identity() const noexcept { return identity_; }
  const std::vector<std::string>& extracted_paths() const noexcept { return extracted_; }
  bool history_written() const noexcept { return history_ok_; }
  // After an apply: whether current_apply.json recorded it (dedupe then rests on history).
  bool applied_state_written() const noexcept { return applied_state_ok_; }
  // With trusted keys, once the record was checked: the verdict (error set: refused under
  // enforce, applied unverified under warn).
  const std::optional<SignatureVerdict>& signature_verdict() const noexcept { return verdict_; }

 private:
  // What is left to do on the chosen path; decisions are taken when an outcome arrives.
  enum class Step {
    write_preparing, download, scan, stop, write_applying, commit, write_applied,
    append_history, write_last_apply, start, discard_staging, retire,
    quarantine, write_failed_preflight, write_rolled_back, halt,
  };

  void decide_start(double now);
  void fail(ConsumerOutcome outcome, ConsumerStage stage, std::string text);
  void on_commit(const ConsumerEvent& ev);
  void on_cancel();
  boost::json::object carry_applied(boost::json::object state) const;
  boost::json::object carry_trust(boost::json::object state) const;
  ConsumerAction next(double now);
  std::optional<ConsumerAction> build(Step s, double now);
  boost::json::object history_entry() const;
  boost::json::object last_apply() const;

  boost::json::value record_;
  ConsumerParams params_;
  ApplyIdentity identity_;
  std::string cid_;  // the record's cid when it is a string
  ApplyModeResolution apply_mode_;
  std::optional<SignatureVerdict> verdict_;
  TrustState trust_;  // what every state document carries: params' state, plus the record once accepted

  bool started_ = false;
  std::optional<Step> current_;
  std::deque<Step> plan_;
  ConsumerOutcome outcome_ = ConsumerOutcome::pending;
  ConsumerOutcome final_outcome_ = ConsumerOutcome::pending;  // reported once the plan is done

  bool stopped_ = false;        // the container is stopped by us and must be restarted
  bool scanned_ = false;        // a staging directory may exist
  bool quarantined_ = false;
  bool history_ok_ = false;
  bool applied_state_ok_ = false;
  bool committed_ = false;      // the commit step ran: cancellation no longer applies
  double applied_timestamp_ = 0;
  std::vector<std::string> extracted_;
  std::optional<boost::json::object> transfer_;
  std::optional<ConsumerStage> failed_stage_;
  std::string error_text_;
};

}  // namespace carsync::core
