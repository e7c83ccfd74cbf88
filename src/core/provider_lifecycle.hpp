#pragma once
// One provider request from claim to done (spec §5.4, §7), as a pure state machine:
// the driver (runtime/provider_run) performs each action and resumes the machine with
// the outcome. No I/O, no clock: the driver stamps every event with now().
//
// carsync's order differs from the reference in one place (§12 item 3): the container is
// started again as soon as the archive is sealed, before the upload.
//
// Cancellation (shutdown past its grace, removal of the instance) is an input: an event with
// `cancelled` set. Before the publish is acknowledged the machine undoes what it did — starts
// the container it stopped, removes the archive, deletes an upload nobody references — and
// answers nothing, so the claimed request.json.processing is recovered and run again at the
// next start (§10.1): a request is never lost. Once acknowledged, the bookkeeping finishes
// (it is short), so a request is never answered twice.
#include "core/error.hpp"
#include "core/record.hpp"
#include "core/record_signature.hpp"
#include "core/request.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace carsync::core {

enum class ProviderStage { validation, archive_build, r1fs_upload, chainstore_publish, runtime_stop };
std::string_view to_string(ProviderStage s) noexcept;

struct ProviderAction {
  enum class Kind {
    stop_container,      // confirm the container is stopped before reading volumes
    build_archive,       // offline sources or online capture, per request().runtime
    start_container,     // outcome only logged
    upload,              // add_file(archive) -> cid
    remove_archive,      // the local archive is no longer needed (success or failure)
    publish,             // hset(CHAINSTORE_SYNC, key, record)
    delete_upload,       // best effort, unpin_remote=true, cleanup_local=false
    append_history,      // sent history entry = document
    write_response,      // response.json = document
    remove_invalid,      // request.json.invalid, errors ignored
    report_failure,      // request.json.invalid = document, then response.json = response
    discard_processing,  // request.json.processing
    retire_previous,     // §9.3 over sent/, unpin_remote=true, cleanup_local=false
    done,
  };
  Kind kind = Kind::done;
  boost::json::object document;
  boost::json::object response;
  std::string cid;
};
std::string_view to_string(ProviderAction::Kind k) noexcept;

// The outcome of the last action. Actions whose failure the protocol only logs
// (start_container, remove_*, write_response, report_failure, discard_processing,
// retire_previous, delete_upload) may carry an error; it is ignored.
struct ProviderEvent {
  double now = 0;
  std::optional<Error> error;
  bool cancelled = false;          // the step was interrupted by cancellation (any action)
  std::uint64_t archive_size = 0;  // build_archive
  std::optional<std::string> archive_sha256;  // build_archive: lowercase hex, for the record
  std::string cid;                 // upload
  // upload, delta transfer (core/delta_record.hpp): the record's "delta" field and the sent
  // history entry's (the index and pack of this version); unset: the record has no delta.
  std::optional<boost::json::object> delta_record;
  std::optional<boost::json::object> delta_history;
  bool ack = false;                // publish
};

struct ProviderParams {
  std::string sync_key;
  std::optional<std::string> node_id;
  ArchiveFormat format = ArchiveFormat::tar_gz;
  bool has_container = false;  // false: there is nothing to stop or start
  // false for a publish through the API (Node::publish): there is no request.json to claim,
  // answer or discard, so the control directory is not touched.
  bool answer_by_files = true;
  // "signing": every record is signed with each key (core/record_signature.hpp) at the
  // sequence next_sequence(last_sequence, now). No keys: records are published unsigned.
  std::span<const SecretKey> signing_keys;
  std::int64_t last_sequence = 0;  // the last this provider signed (sent history; 0: none)
};

class ProviderLifecycle {
 public:
  // A request that passed claim-time validation.
  ProviderLifecycle(SyncRequest request, ProviderParams params);
  // A request rejected at claim time: the machine only reports and discards.
  ProviderLifecycle(RequestRejection rejection, ProviderParams params);

  // The first call takes an event with only `now` set.
  ProviderAction resume(const ProviderEvent& ev);

  bool finished() const noexcept { return state_ == State::done; }
  bool succeeded() const noexcept { return succeeded_; }
  // Ended by cancellation before the acknowledgement: nothing was answered.
  bool cancelled() const noexcept { return cancelled_; }
  std::optional<ProviderStage> failed_stage() const noexcept { return failed_stage_; }
  const std::string& error_text() const noexcept { return error_text_; }
  const SyncRequest& request() const noexcept { return request_; }
  const PublishedSnapshot& snapshot() const noexcept { return snapshot_; }
  const boost::json::object& record() const noexcept { return record_; }
  // The sequence the record was signed at (0: unsigned).
  std::int64_t signed_sequence() const noexcept { return sequence_; }

 private:
  enum class State {
    start, stopping, building, starting_after_build, uploading, removing_archive, publishing,
    deleting_upload, appending_history, writing_response, removing_invalid,
    discarding_after_success, retiring, reporting, discarding_after_failure,
    cancel_starting, cancel_removing_archive, cancel_deleting_upload, done,
  };
  ProviderAction cancel();
  ProviderAction cancel_next();
  ProviderAction retire_or_done();
  ProviderAction fail(ProviderStage stage, std::string text, double now);
  ProviderAction after_build(double now);
  ProviderAction act(State next, ProviderAction::Kind kind);

  SyncRequest request_;
  std::optional<RequestRejection> rejection_;
  ProviderParams params_;
  State state_ = State::start;
  bool container_stopped_ = false;
  std::optional<Error> build_error_;
  std::uint64_t archive_size_ = 0;
  PublishedSnapshot snapshot_;
  std::optional<boost::json::object> delta_history_;
  boost::json::object record_;
  std::int64_t sequence_ = 0;
  bool history_ok_ = false;
  std::optional<std::string> history_error_;
  bool succeeded_ = false;
  bool cancelled_ = false;
  bool archive_built_ = false;  // an archive file may exist in scratch
  std::optional<ProviderStage> failed_stage_;
  std::string error_text_;
  boost::json::object failure_response_;
};

}  // namespace carsync::core
