#include "core/consumer_lifecycle.hpp"

#include "core/json_text.hpp"
#include "core/quarantine.hpp"
#include "core/record.hpp"

namespace carsync::core {

namespace json = boost::json;
using Kind = ConsumerAction::Kind;

namespace {

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

json::value member_or_null(const json::value& o, std::string_view key) {
  const json::value* v = o.is_object() ? o.get_object().if_contains(key) : nullptr;
  return v ? *v : json::value(nullptr);
}

// record.<key>, with a falsy value replaced by {} (§8.6).
json::value object_or_empty(const json::value& record, std::string_view key) {
  json::value v = member_or_null(record, key);
  return truthy(v) ? v : json::object{};
}

ConsumerAction action(Kind kind) {
  ConsumerAction a;
  a.kind = kind;
  return a;
}

}  // namespace

std::string_view to_string(ConsumerStage s) noexcept {
  switch (s) {
    case ConsumerStage::validation: return "validation";
    case ConsumerStage::signature: return "signature";
    case ConsumerStage::r1fs_download: return "r1fs_download";
    case ConsumerStage::extract: return "extract";
    case ConsumerStage::runtime_stop: return "runtime_stop";
    case ConsumerStage::commit: return "commit";
  }
  return "unknown";
}

std::string_view to_string(Kind k) noexcept {
  switch (k) {
    case Kind::write_state: return "write_state";
    case Kind::quarantine: return "quarantine";
    case Kind::download: return "download";
    case Kind::scan: return "scan";
    case Kind::stop_container: return "stop_container";
    case Kind::commit: return "commit";
    case Kind::append_history: return "append_history";
    case Kind::write_last_apply: return "write_last_apply";
    case Kind::start_container: return "start_container";
    case Kind::discard_staging: return "discard_staging";
    case Kind::retire_previous: return "retire_previous";
    case Kind::halt: return "halt";
    case Kind::done: return "done";
  }
  return "unknown";
}

std::string_view to_string(ConsumerOutcome o) noexcept {
  switch (o) {
    case ConsumerOutcome::pending: return "pending";
    case ConsumerOutcome::no_record: return "no_record";
    case ConsumerOutcome::halted: return "halted";
    case ConsumerOutcome::up_to_date: return "up_to_date";
    case ConsumerOutcome::backing_off: return "backing_off";
    case ConsumerOutcome::preflight_failed: return "preflight_failed";
    case ConsumerOutcome::stop_failed: return "stop_failed";
    case ConsumerOutcome::commit_failed: return "commit_failed";
    case ConsumerOutcome::uncertain: return "uncertain";
    case ConsumerOutcome::cancelled: return "cancelled";
    case ConsumerOutcome::applied: return "applied";
  }
  return "unknown";
}

ConsumerLifecycle::ConsumerLifecycle(std::optional<json::value> record, ConsumerParams params)
    : record_(record ? std::move(*record) : json::value(nullptr)),
      params_(std::move(params)),
      identity_(identity_of(record_)),
      apply_mode_(resolve_apply_mode(params_.apply_mode)),
      trust_(params_.trust_state) {
  if (identity_.cid.is_string()) cid_ = identity_.cid.get_string();
}

// §8.1 steps 2-5: everything decided before anything is written.
void ConsumerLifecycle::decide_start(double now) {
  if (params_.halted) {
    final_outcome_ = ConsumerOutcome::halted;
    return;
  }
  if (!record_.is_object() || !truthy(identity_.cid)) {
    final_outcome_ = ConsumerOutcome::no_record;
    return;
  }
  // By CID, never by version: a different CID is applied even when its version is lower.
  if (!cid_.empty() && params_.applied_cid == cid_) {
    final_outcome_ = ConsumerOutcome::up_to_date;
    return;
  }
  if (params_.quarantine && quarantine_active(*params_.quarantine, now)) {
    final_outcome_ = ConsumerOutcome::backing_off;
    return;
  }
  static const MountPolicy default_policy;
  const auto reasons = validate_record(record_, params_.mounts, params_.policy ? *params_.policy : default_policy);
  if (!reasons.empty()) return fail(ConsumerOutcome::preflight_failed, ConsumerStage::validation, join(reasons, "; "));

  // Before anything is downloaded. Under warn a failure is only reported (the driver logs
  // it) and nothing is accepted.
  if (!params_.trusted_keys.empty()) {
    verdict_ = verify_record(record_, sync_hkey, params_.sync_key, params_.trusted_keys, params_.trust_state);
    if (verdict_->error && params_.trust_policy == TrustPolicy::enforce)
      return fail(ConsumerOutcome::preflight_failed, ConsumerStage::signature, verdict_->reason);
    if (!verdict_->error) trust_ = accept(std::move(trust_), *verdict_, cid_);
  }

  // Every mode resolves to offline_restart: the container is stopped whenever there is one.
  plan_ = {Step::write_preparing, Step::download, Step::scan};
  if (params_.has_container) plan_.push_back(Step::stop);
  plan_.insert(plan_.end(), {Step::write_applying, Step::commit});
}

void ConsumerLifecycle::fail(ConsumerOutcome outcome, ConsumerStage stage, std::string text) {
  final_outcome_ = outcome;
  failed_stage_ = stage;
  error_text_ = std::move(text);
  plan_ = {Step::quarantine};
  // Nothing in the volumes was touched: the durable state says why this attempt stopped.
  if (stage != ConsumerStage::commit) plan_.push_back(Step::write_failed_preflight);
  plan_.insert(plan_.end(), {Step::start, Step::discard_staging});
}

void ConsumerLifecycle::on_commit(const ConsumerEvent& ev) {
  extracted_ = ev.extracted_paths;
  if (!ev.error) {
    final_outcome_ = ConsumerOutcome::applied;
    applied_timestamp_ = ev.now;
    // Finalise while the container is still stopped, so last_apply.json exists when the
    // app starts.
    plan_ = {Step::write_applied, Step::append_history, Step::write_last_apply, Step::start, Step::discard_staging,
             Step::retire};
    return;
  }
  error_text_ = ev.error->message;
  failed_stage_ = ConsumerStage::commit;
  if (ev.rollback_incomplete) {
    final_outcome_ = ConsumerOutcome::uncertain;
    plan_ = {Step::halt, Step::discard_staging};
    return;
  }
  // A deterministic commit failure would otherwise stop and start the app every tick.
  fail(ConsumerOutcome::commit_failed, ConsumerStage::commit, error_text_);
  plan_.push_front(Step::write_rolled_back);
}

// Before the commit nothing in the volumes changed: give the container back and drop the
// staging. The durable state keeps saying "preparing"/"applying" with the applied CID carried,
// which dedupes correctly after a restart.
void ConsumerLifecycle::on_cancel() {
  final_outcome_ = ConsumerOutcome::cancelled;
  failed_stage_.reset();
  error_text_ = "cancelled";
  plan_ = {Step::start, Step::discard_staging};
}

json::object ConsumerLifecycle::carry_applied(json::object state) const {
  if (params_.applied_cid) state["applied_cid"] = *params_.applied_cid;
  return carry_trust(std::move(state));
}

// Absent when nothing was ever accepted: documents stay as they were without "trust".
json::object ConsumerLifecycle::carry_trust(json::object state) const {
  if (!trust_.keys.empty()) state["trust"] = trust_.to_json();
  return state;
}

ConsumerAction ConsumerLifecycle::resume(const ConsumerEvent& ev) {
  if (!started_) {
    started_ = true;
    decide_start(ev.now);
    if (ev.cancelled && !plan_.empty()) on_cancel();
    return next(ev.now);
  }
  if (!current_) return next(ev.now);

  if (ev.cancelled && !committed_ && final_outcome_ == ConsumerOutcome::pending) {
    // A stop interrupted midway may have happened: starting a running container is harmless.
    if (*current_ == Step::stop) stopped_ = true;
    on_cancel();
    return next(ev.now);
  }

  switch (*current_) {
    case Step::download:
      transfer_ = ev.transfer;
      if (ev.error) fail(ConsumerOutcome::preflight_failed, ConsumerStage::r1fs_download, ev.error->message);
      break;
    case Step::scan:
      if (ev.error) fail(ConsumerOutcome::preflight_failed, ConsumerStage::extract, ev.error->message);
      break;
    case Step::stop:
      // Not confirmed stopped: nothing may be written, and the container is not restarted
      // here (whoever owns its recovery decides).
      if (ev.error)
        fail(ConsumerOutcome::stop_failed, ConsumerStage::runtime_stop,
             "could not stop container for offline apply: " + ev.error->message);
      else
        stopped_ = true;
      break;
    case Step::write_applying:
      if (ev.error)
        fail(ConsumerOutcome::commit_failed, ConsumerStage::commit,
             "could not write durable apply state: " + ev.error->message);
      break;
    case Step::commit:
      on_commit(ev);
      break;
    case Step::write_applied:
      applied_state_ok_ = !ev.error;
      break;
    case Step::quarantine:
      quarantined_ = !ev.error;
      break;
    case Step::append_history:
      history_ok_ = !ev.error;
      break;
    case Step::start:
      stopped_ = false;
      break;
    default:
      break;  // failures only logged by the driver
  }
  return next(ev.now);
}

ConsumerAction ConsumerLifecycle::next(double now) {
  while (!plan_.empty()) {
    const Step s = plan_.front();
    plan_.pop_front();
    if (auto a = build(s, now)) {
      current_ = s;
      return std::move(*a);
    }
  }
  current_.reset();
  outcome_ = final_outcome_;
  return action(Kind::done);
}

// The action for one step, or nullopt when the step does not apply any more.
std::optional<ConsumerAction> ConsumerLifecycle::build(Step s, double now) {
  ConsumerAction a;
  switch (s) {
    case Step::write_preparing:
      a = action(Kind::write_state);
      a.document = carry_applied(apply_state_document(ApplyState::preparing, identity_, now));
      return a;
    case Step::download:
      a = action(Kind::download);
      a.cid = cid_;
      return a;
    case Step::scan:
      scanned_ = true;
      return action(Kind::scan);
    case Step::stop:
      return action(Kind::stop_container);
    case Step::write_applying:
      a = action(Kind::write_state);
      a.document = carry_applied(apply_state_document(ApplyState::applying, identity_, now));
      return a;
    case Step::commit:
      committed_ = true;  // from here on a cancellation no longer abandons the attempt
      return action(Kind::commit);
    case Step::write_applied:
      a = action(Kind::write_state);
      a.document = carry_trust(applied_state(identity_, applied_timestamp_, extracted_));
      return a;
    case Step::append_history:
      a = action(Kind::append_history);
      a.document = history_entry();
      return a;
    case Step::write_last_apply:
      a = action(Kind::write_last_apply);
      a.document = last_apply();
      return a;
    case Step::start:
      if (!stopped_) return std::nullopt;
      return action(Kind::start_container);
    case Step::discard_staging:
      if (!scanned_) return std::nullopt;
      return action(Kind::discard_staging);
    case Step::retire:
      // Only once the new entry exists, so the previous one is never the latest.
      if (!history_ok_) return std::nullopt;
      a = action(Kind::retire_previous);
      a.cid = cid_;
      return a;
    case Step::quarantine: {
      a = action(Kind::quarantine);
      QuarantineFailure f{identity_.cid, identity_.version, params_.manifest_digest,
                          std::string(to_string(*failed_stage_)), error_text_, now};
      a.document = next_quarantine_record(params_.quarantine ? &*params_.quarantine : nullptr, f);
      a.name = quarantine_file_name(identity_.cid, params_.manifest_digest);
      return a;
    }
    case Step::write_failed_preflight:
      // A quarantine that could not be written leaves the state as it was (§8.7).
      if (!quarantined_) return std::nullopt;
      a = action(Kind::write_state);
      a.document = carry_applied(failed_preflight_state(identity_, now, to_string(*failed_stage_), error_text_));
      return a;
    case Step::write_rolled_back:
      a = action(Kind::write_state);
      a.document = carry_applied(rolled_back_state(identity_, now, error_text_, extracted_));
      return a;
    case Step::halt:
      a = action(Kind::halt);
      a.document = carry_applied(uncertain_state(identity_, now, error_text_, extracted_));
      return a;
  }
  return std::nullopt;
}

// §8.6 step 1; history_written_at_ns and deletion are added by the history store.
json::object ConsumerLifecycle::history_entry() const {
  json::object e = last_apply();
  e["manifest"] = object_or_empty(record_, "manifest");
  put_extracted_paths(e, extracted_);
  if (transfer_) e["transfer"] = *transfer_;
  // What rebuilds the accepted sequences should current_apply.json be lost
  // (trust_state_from_history).
  if (verdict_ && !verdict_->error) put_signature_fields(e, verdict_->sequence, verdict_->key_ids);
  return e;
}

// §8.6 step 2.
json::object ConsumerLifecycle::last_apply() const {
  return {
      {"cid", identity_.cid},
      {"version", identity_.version},
      {"source_timestamp", member_or_null(record_, "timestamp")},
      {"applied_timestamp", applied_timestamp_},
      {"node_id", member_or_null(record_, "node_id")},
      {"metadata", object_or_empty(record_, "metadata")},
  };
}

}  // namespace carsync::core
