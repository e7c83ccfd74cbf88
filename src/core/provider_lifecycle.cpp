#include "core/provider_lifecycle.hpp"

#include "core/json_text.hpp"

namespace carsync::core {

namespace json = boost::json;
using Kind = ProviderAction::Kind;

std::string_view to_string(ProviderStage s) noexcept {
  switch (s) {
    case ProviderStage::validation: return "validation";
    case ProviderStage::archive_build: return "archive_build";
    case ProviderStage::r1fs_upload: return "r1fs_upload";
    case ProviderStage::chainstore_publish: return "chainstore_publish";
    case ProviderStage::runtime_stop: return "runtime_stop";
  }
  return "unknown";
}

std::string_view to_string(Kind k) noexcept {
  switch (k) {
    case Kind::stop_container: return "stop_container";
    case Kind::build_archive: return "build_archive";
    case Kind::start_container: return "start_container";
    case Kind::upload: return "upload";
    case Kind::remove_archive: return "remove_archive";
    case Kind::publish: return "publish";
    case Kind::delete_upload: return "delete_upload";
    case Kind::append_history: return "append_history";
    case Kind::write_response: return "write_response";
    case Kind::remove_invalid: return "remove_invalid";
    case Kind::report_failure: return "report_failure";
    case Kind::discard_processing: return "discard_processing";
    case Kind::retire_previous: return "retire_previous";
    case Kind::done: return "done";
  }
  return "unknown";
}

ProviderLifecycle::ProviderLifecycle(SyncRequest request, ProviderParams params)
    : request_(std::move(request)), params_(std::move(params)) {
  snapshot_.node_id = params_.node_id;
  snapshot_.format = params_.format;
}

ProviderLifecycle::ProviderLifecycle(RequestRejection rejection, ProviderParams params)
    : rejection_(std::move(rejection)), params_(std::move(params)) {}

ProviderAction ProviderLifecycle::act(State next, Kind kind) {
  state_ = next;
  ProviderAction a;
  a.kind = kind;
  return a;
}

// §5.4: .invalid and response.json share stage, error and failed_timestamp.
ProviderAction ProviderLifecycle::fail(ProviderStage stage, std::string text, double now) {
  failed_stage_ = stage;
  error_text_ = std::move(text);

  json::object err;
  err["stage"] = to_string(stage);
  err["error"] = error_text_;
  err["failed_timestamp"] = now;
  err["node_id"] = params_.node_id ? json::value(*params_.node_id) : json::value(nullptr);

  json::object invalid;
  json::array echoed;
  if (rejection_) {
    invalid["request"] = rejection_->request;
    if (rejection_->raw_body && rejection_->request.is_null()) err["raw_body"] = *rejection_->raw_body;
    echoed = rejection_->archive_paths;
  } else {
    invalid["request"] = request_.normalised();
    for (const auto& p : request_.archive_paths) echoed.emplace_back(p);
  }
  invalid["_error"] = std::move(err);

  json::object response;
  response["status"] = "error";
  response["stage"] = to_string(stage);
  response["error"] = error_text_;
  response["failed_timestamp"] = now;
  response["archive_paths"] = std::move(echoed);

  // An API publish has no control files: its caller gets the outcome directly.
  if (!params_.answer_by_files) return act(State::done, Kind::done);
  ProviderAction a = act(State::reporting, Kind::report_failure);
  a.document = std::move(invalid);
  a.response = std::move(response);
  return a;
}

ProviderAction ProviderLifecycle::after_build(double now) {
  if (build_error_) return fail(ProviderStage::archive_build, build_error_->message, now);
  return act(State::uploading, Kind::upload);
}

// Undo in order: the app gets its container back first, then local and remote leftovers go.
ProviderAction ProviderLifecycle::cancel() {
  cancelled_ = true;
  failed_stage_.reset();
  error_text_ = "cancelled";
  return cancel_next();
}

ProviderAction ProviderLifecycle::cancel_next() {
  if (container_stopped_ && state_ < State::cancel_starting) return act(State::cancel_starting, Kind::start_container);
  if (archive_built_ && state_ < State::cancel_removing_archive)
    return act(State::cancel_removing_archive, Kind::remove_archive);
  if (!snapshot_.cid.empty() && state_ < State::cancel_deleting_upload) {
    ProviderAction a = act(State::cancel_deleting_upload, Kind::delete_upload);
    a.cid = snapshot_.cid;
    return a;
  }
  return act(State::done, Kind::done);
}

// Retire only when the new entry exists, so the previous one is never the latest.
ProviderAction ProviderLifecycle::retire_or_done() {
  if (!history_ok_) return act(State::done, Kind::done);
  ProviderAction a = act(State::retiring, Kind::retire_previous);
  a.cid = snapshot_.cid;
  return a;
}

ProviderAction ProviderLifecycle::resume(const ProviderEvent& ev) {
  if (ev.cancelled && !cancelled_) {
    switch (state_) {
      case State::start:
      case State::building:
      case State::uploading:
      case State::removing_archive:
        if (state_ != State::start) archive_built_ = true;
        return cancel();
      case State::stopping:
        // Whether the stop happened is unknown: starting a running container changes nothing.
        container_stopped_ = true;
        return cancel();
      case State::starting_after_build:
        container_stopped_ = false;
        archive_built_ = true;
        return cancel();
      case State::publishing:
        // The record may be stored: its upload must stay. Nothing is answered; the request
        // runs again after restart and publishes a newer version.
        snapshot_.cid.clear();
        return cancel();
      default:
        break;  // acknowledged, or already reporting a failure: finish (short bookkeeping)
    }
  }
  switch (state_) {
    case State::cancel_starting:
      container_stopped_ = false;
      return cancel_next();
    case State::cancel_removing_archive:
      archive_built_ = false;
      return cancel_next();
    case State::cancel_deleting_upload:
      return cancel_next();
    case State::start:
      if (rejection_) return fail(ProviderStage::validation, rejection_->error.message, ev.now);
      // A record that cannot be canonicalised cannot be signed: refuse before the app stops.
      if (!params_.signing_keys.empty()) {
        if (auto c = canonical_json(request_.metadata); !c)
          return fail(ProviderStage::validation, "metadata cannot be signed: " + c.error().message, ev.now);
      }
      if (!request_.runtime.online() && params_.has_container)
        return act(State::stopping, Kind::stop_container);
      return act(State::building, Kind::build_archive);

    case State::stopping:
      // Not confirmed stopped: nothing may be read, and the container is not restarted here
      // (whoever owns the container's recovery decides).
      if (ev.error) return fail(ProviderStage::runtime_stop,
                                "could not stop/remove container for offline provider capture", ev.now);
      container_stopped_ = true;
      return act(State::building, Kind::build_archive);

    case State::building:
      archive_built_ = true;
      if (ev.error) build_error_ = ev.error;
      else {
        archive_size_ = ev.archive_size;
        snapshot_.archive_sha256 = ev.archive_sha256;
      }
      // The archive is sealed: give the app its container back before the upload.
      if (container_stopped_) return act(State::starting_after_build, Kind::start_container);
      return after_build(ev.now);

    case State::starting_after_build:
      container_stopped_ = false;
      return after_build(ev.now);

    case State::uploading: {
      if (ev.error) {
        failed_stage_ = ProviderStage::r1fs_upload;
        error_text_ = ev.error->message;
      } else if (ev.cid.empty()) {
        failed_stage_ = ProviderStage::r1fs_upload;
        error_text_ = "r1fs.add_file returned no CID";
      } else {
        snapshot_.cid = ev.cid;
        snapshot_.delta = ev.delta_record;
        delta_history_ = ev.delta_history;
      }
      return act(State::removing_archive, Kind::remove_archive);
    }

    case State::removing_archive: {
      archive_built_ = false;
      if (failed_stage_) return fail(*failed_stage_, error_text_, ev.now);
      snapshot_.version = static_cast<std::int64_t>(ev.now);
      snapshot_.timestamp = ev.now;
      snapshot_.archive_size_bytes = archive_size_;
      record_ = build_record(request_, snapshot_);
      if (!params_.signing_keys.empty()) {
        sequence_ = next_sequence(params_.last_sequence, ev.now);
        if (auto signed_ok = sign_record(record_, sync_hkey, params_.sync_key, sequence_, params_.signing_keys);
            !signed_ok) {
          // Nothing unsigned is ever published in its place: the upload goes, the request fails.
          sequence_ = 0;
          failed_stage_ = ProviderStage::chainstore_publish;
          error_text_ = "cannot sign the record: " + signed_ok.error().message;
          ProviderAction a = act(State::deleting_upload, Kind::delete_upload);
          a.cid = snapshot_.cid;
          return a;
        }
      }
      ProviderAction a = act(State::publishing, Kind::publish);
      a.document = record_;
      return a;
    }

    case State::publishing: {
      if (ev.error || !ev.ack) {
        failed_stage_ = ProviderStage::chainstore_publish;
        error_text_ = ev.error ? ev.error->message : "chainstore_hset returned false acknowledgement";
        ProviderAction a = act(State::deleting_upload, Kind::delete_upload);
        a.cid = snapshot_.cid;
        return a;
      }
      // The acknowledgement is the commit point: from here on the request succeeds.
      succeeded_ = true;
      json::object entry;
      entry["cid"] = snapshot_.cid;
      entry["version"] = snapshot_.version;
      entry["published_timestamp"] = snapshot_.timestamp;
      entry["request"] = request_.normalised();
      entry["manifest"] = record_.at("manifest");
      entry["archive_size_bytes"] = snapshot_.archive_size_bytes;
      entry["chainstore_ack"] = true;
      entry["node_id"] = record_.at("node_id");
      if (delta_history_) entry["delta"] = *delta_history_;
      if (sequence_ != 0) {
        std::vector<std::string> ids;
        for (const auto& k : params_.signing_keys) ids.push_back(k.public_key().id());
        put_signature_fields(entry, sequence_, ids);
      }
      ProviderAction a = act(State::appending_history, Kind::append_history);
      a.document = std::move(entry);
      return a;
    }

    case State::deleting_upload:
      return fail(*failed_stage_, error_text_, ev.now);

    case State::appending_history: {
      history_ok_ = !ev.error;
      if (ev.error) history_error_ = ev.error->message;
      json::object response;
      response["status"] = "ok";
      response["cid"] = snapshot_.cid;
      response["version"] = snapshot_.version;
      response["published_timestamp"] = snapshot_.timestamp;
      json::array paths;
      for (const auto& p : request_.archive_paths) paths.emplace_back(p);
      response["archive_paths"] = std::move(paths);
      response["archive_size_bytes"] = snapshot_.archive_size_bytes;
      response["chainstore_ack"] = true;
      response["metadata"] = request_.metadata;
      if (history_error_) response["history_error"] = *history_error_;
      if (!params_.answer_by_files) return retire_or_done();
      ProviderAction a = act(State::writing_response, Kind::write_response);
      a.document = std::move(response);
      return a;
    }

    case State::writing_response:
      return act(State::removing_invalid, Kind::remove_invalid);

    case State::removing_invalid:
      return act(State::discarding_after_success, Kind::discard_processing);

    case State::discarding_after_success:
      return retire_or_done();

    case State::retiring:
      return act(State::done, Kind::done);

    case State::reporting:
      return act(State::discarding_after_failure, Kind::discard_processing);

    case State::discarding_after_failure:
    case State::done:
      return act(State::done, Kind::done);
  }
  return act(State::done, Kind::done);
}

}  // namespace carsync::core
