// Steps the provider state machine through every path of spec §7, one action at a time.
#include "core/provider_lifecycle.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace carsync::core {
namespace {

using Kind = ProviderAction::Kind;
namespace json = boost::json;

SyncRequest offline_request() {
  SyncRequest r;
  r.archive_paths = {"/app/data/"};
  r.metadata["epoch"] = 1;
  return r;
}

ProviderParams params(bool has_container) {
  ProviderParams p;
  p.sync_key = "shared-key";
  p.node_id = "node-a";
  p.has_container = has_container;
  return p;
}

ProviderEvent ok(double now = 100.5) {
  ProviderEvent ev;
  ev.now = now;
  return ev;
}
ProviderEvent failed(std::string text, double now = 100.5) {
  ProviderEvent ev = ok(now);
  ev.error = make_error(errc::io_failure, std::move(text));
  return ev;
}

// Drives the machine, answering every action with `answer(kind)`, and returns the kinds.
template <class Answer>
std::vector<Kind> drive(ProviderLifecycle& m, Answer answer) {
  std::vector<Kind> seen;
  ProviderAction a = m.resume(ok());
  while (a.kind != Kind::done) {
    seen.push_back(a.kind);
    EXPECT_LT(seen.size(), 32u) << "machine does not terminate";
    if (seen.size() >= 32) break;
    a = m.resume(answer(a));
  }
  return seen;
}

ProviderEvent happy(const ProviderAction& a) {
  ProviderEvent ev = ok();
  if (a.kind == Kind::build_archive) ev.archive_size = 4096;
  if (a.kind == Kind::upload) ev.cid = "bafkcid1";
  if (a.kind == Kind::publish) ev.ack = true;
  return ev;
}

TEST(ProviderLifecycle, OfflineHappyPathRestartsBeforeUpload) {
  ProviderLifecycle m(offline_request(), params(true));
  auto kinds = drive(m, happy);
  std::vector<Kind> want{Kind::stop_container, Kind::build_archive, Kind::start_container,
                         Kind::upload,         Kind::remove_archive, Kind::publish,
                         Kind::append_history, Kind::write_response, Kind::remove_invalid,
                         Kind::discard_processing, Kind::retire_previous};
  EXPECT_EQ(kinds, want);
  EXPECT_TRUE(m.succeeded());
  EXPECT_TRUE(m.finished());
  EXPECT_EQ(m.snapshot().cid, "bafkcid1");
  EXPECT_EQ(m.snapshot().version, 100);
  EXPECT_EQ(m.snapshot().archive_size_bytes, 4096u);
}

TEST(ProviderLifecycle, NoContainerSkipsStopAndStart) {
  ProviderLifecycle m(offline_request(), params(false));
  auto kinds = drive(m, happy);
  EXPECT_EQ(kinds.front(), Kind::build_archive);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::start_container), 0);
  EXPECT_TRUE(m.succeeded());
}

TEST(ProviderLifecycle, OnlineCaptureNeverTouchesContainer) {
  SyncRequest r = offline_request();
  r.runtime.provider_capture = "online";
  ProviderLifecycle m(std::move(r), params(true));
  auto kinds = drive(m, happy);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::stop_container), 0);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::start_container), 0);
  EXPECT_EQ(m.record().at("runtime").at("provider_capture"), "online");
}

TEST(ProviderLifecycle, PublishCarriesRecordForSyncKeyShape) {
  ProviderLifecycle m(offline_request(), params(false));
  json::object record;
  drive(m, [&](const ProviderAction& a) {
    if (a.kind == Kind::publish) record = a.document;
    return happy(a);
  });
  EXPECT_EQ(record.at("cid"), "bafkcid1");
  EXPECT_EQ(record.at("version"), 100);
  EXPECT_EQ(record.at("node_id"), "node-a");
  EXPECT_EQ(record.at("metadata").at("epoch"), 1);
  const auto& manifest = record.at("manifest").as_object();
  EXPECT_EQ(manifest.at("schema_version"), 1);
  EXPECT_EQ(manifest.at("archive_format"), "tar.gz");
  EXPECT_EQ(manifest.at("archive_size_bytes"), 4096);
  EXPECT_EQ(manifest.at("archive_paths").at(0), "/app/data/");
}

TEST(ProviderLifecycle, StopNotConfirmedReportsRuntimeStopWithoutStart) {
  ProviderLifecycle m(offline_request(), params(true));
  ProviderAction failure;
  auto kinds = drive(m, [&](const ProviderAction& a) {
    if (a.kind == Kind::report_failure) failure = a;
    return a.kind == Kind::stop_container ? failed("stop timed out") : happy(a);
  });
  std::vector<Kind> want{Kind::stop_container, Kind::report_failure, Kind::discard_processing};
  EXPECT_EQ(kinds, want);
  EXPECT_FALSE(m.succeeded());
  EXPECT_EQ(m.failed_stage(), ProviderStage::runtime_stop);
  EXPECT_EQ(failure.response.at("error"), "could not stop/remove container for offline provider capture");
  EXPECT_EQ(failure.document.at("_error").at("stage"), "runtime_stop");
  EXPECT_EQ(failure.document.at("request").at("archive_paths").at(0), "/app/data/");
}

TEST(ProviderLifecycle, BuildFailureStillRestartsAndReportsArchiveBuild) {
  ProviderLifecycle m(offline_request(), params(true));
  auto kinds = drive(m, [&](const ProviderAction& a) {
    return a.kind == Kind::build_archive ? failed("/app/data/x does not exist") : happy(a);
  });
  std::vector<Kind> want{Kind::stop_container, Kind::build_archive, Kind::start_container,
                         Kind::report_failure, Kind::discard_processing};
  EXPECT_EQ(kinds, want);
  EXPECT_EQ(m.failed_stage(), ProviderStage::archive_build);
  EXPECT_EQ(m.error_text(), "/app/data/x does not exist");
}

TEST(ProviderLifecycle, UploadErrorFailsAtR1fsUploadWithoutPublish) {
  ProviderLifecycle m(offline_request(), params(true));
  auto kinds = drive(m, [&](const ProviderAction& a) {
    return a.kind == Kind::upload ? failed("connection refused") : happy(a);
  });
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::publish), 0);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::start_container), 1);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::remove_archive), 1);
  EXPECT_EQ(m.failed_stage(), ProviderStage::r1fs_upload);
  EXPECT_EQ(m.error_text(), "connection refused");
}

TEST(ProviderLifecycle, EmptyCidFailsAtR1fsUpload) {
  ProviderLifecycle m(offline_request(), params(false));
  drive(m, [&](const ProviderAction& a) {
    ProviderEvent ev = happy(a);
    if (a.kind == Kind::upload) ev.cid.clear();
    return ev;
  });
  EXPECT_EQ(m.failed_stage(), ProviderStage::r1fs_upload);
  EXPECT_EQ(m.error_text(), "r1fs.add_file returned no CID");
}

TEST(ProviderLifecycle, FalseAckDeletesUploadAndWritesNoHistory) {
  ProviderLifecycle m(offline_request(), params(false));
  std::string deleted;
  auto kinds = drive(m, [&](const ProviderAction& a) {
    if (a.kind == Kind::delete_upload) deleted = a.cid;
    ProviderEvent ev = happy(a);
    if (a.kind == Kind::publish) ev.ack = false;
    return ev;
  });
  EXPECT_EQ(deleted, "bafkcid1");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::append_history), 0);
  EXPECT_EQ(m.failed_stage(), ProviderStage::chainstore_publish);
  EXPECT_NE(m.error_text().find("ack"), std::string::npos);
}

TEST(ProviderLifecycle, HsetErrorDeletesUploadAndReportsCause) {
  ProviderLifecycle m(offline_request(), params(false));
  auto kinds = drive(m, [&](const ProviderAction& a) {
    return a.kind == Kind::publish ? failed("store unavailable") : happy(a);
  });
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::delete_upload), 1);
  EXPECT_EQ(m.failed_stage(), ProviderStage::chainstore_publish);
  EXPECT_EQ(m.error_text(), "store unavailable");
  EXPECT_FALSE(m.succeeded());
}

TEST(ProviderLifecycle, HistoryFailureStillSucceedsWithHistoryErrorAndNoRetirement) {
  ProviderLifecycle m(offline_request(), params(false));
  json::object response;
  auto kinds = drive(m, [&](const ProviderAction& a) {
    if (a.kind == Kind::write_response) response = a.document;
    return a.kind == Kind::append_history ? failed("disk full") : happy(a);
  });
  EXPECT_TRUE(m.succeeded());
  EXPECT_EQ(response.at("status"), "ok");
  EXPECT_EQ(response.at("history_error"), "disk full");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::retire_previous), 0);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::discard_processing), 1);
}

TEST(ProviderLifecycle, SuccessResponseShape) {
  ProviderLifecycle m(offline_request(), params(false));
  json::object response;
  drive(m, [&](const ProviderAction& a) {
    if (a.kind == Kind::write_response) response = a.document;
    return happy(a);
  });
  EXPECT_EQ(response.at("cid"), "bafkcid1");
  EXPECT_EQ(response.at("version"), 100);
  EXPECT_DOUBLE_EQ(response.at("published_timestamp").as_double(), 100.5);
  EXPECT_EQ(response.at("archive_size_bytes"), 4096);
  EXPECT_EQ(response.at("chainstore_ack"), true);
  EXPECT_EQ(response.at("metadata").at("epoch"), 1);
  EXPECT_FALSE(response.contains("history_error"));
}

TEST(ProviderLifecycle, RejectionReportsValidationWithRawBodyThenDiscards) {
  RequestRejection rej;
  rej.error = make_error(errc::invalid_request, "malformed JSON: syntax error");
  rej.raw_body = "not-json{";
  ProviderLifecycle m(std::move(rej), params(true));
  ProviderAction failure;
  auto kinds = drive(m, [&](const ProviderAction& a) {
    if (a.kind == Kind::report_failure) failure = a;
    return happy(a);
  });
  std::vector<Kind> want{Kind::report_failure, Kind::discard_processing};
  EXPECT_EQ(kinds, want);
  EXPECT_TRUE(failure.document.at("request").is_null());
  EXPECT_EQ(failure.document.at("_error").at("raw_body"), "not-json{");
  EXPECT_EQ(failure.document.at("_error").at("stage"), "validation");
  EXPECT_EQ(failure.document.at("_error").at("failed_timestamp"),
            failure.response.at("failed_timestamp"));
  EXPECT_EQ(failure.response.at("archive_paths"), json::array());
}

TEST(ProviderLifecycle, RejectionWithParsedBodyOmitsRawBodyAndEchoesPaths) {
  RequestRejection rej;
  rej.error = make_error(errc::path_rejected, "no mounted volume covers /nope");
  rej.request = json::object{{"archive_paths", json::array{"/nope"}}, {"extra", 1}};
  rej.raw_body = "ignored because request is an object";
  rej.archive_paths = json::array{"/nope"};
  ProviderLifecycle m(std::move(rej), params(false));
  ProviderAction failure;
  drive(m, [&](const ProviderAction& a) {
    if (a.kind == Kind::report_failure) failure = a;
    return happy(a);
  });
  EXPECT_FALSE(failure.document.at("_error").as_object().contains("raw_body"));
  EXPECT_EQ(failure.document.at("request").at("extra"), 1);
  EXPECT_EQ(failure.response.at("archive_paths").at(0), "/nope");
}

}  // namespace
}  // namespace carsync::core

namespace carsync::core {
namespace {

// Cancellation, table-driven: cancelled while performing `at`; what the machine must do next.
// Before the acknowledgement it undoes (container back, archive gone, an unreferenced upload
// deleted) and answers nothing, so request.json.processing stays for recovery; after it, the
// bookkeeping completes and the request is answered exactly once.
struct CancelCase {
  const char* name;
  Kind at;
  std::vector<Kind> after;
  bool succeeded;
};

TEST(ProviderLifecycle, CancellationUndoesBeforeTheAckAndFinishesAfterIt) {
  const std::vector<CancelCase> cases = {
      {"stop in flight", Kind::stop_container, {Kind::start_container}, false},
      {"archive build", Kind::build_archive, {Kind::start_container, Kind::remove_archive}, false},
      {"restart after build", Kind::start_container, {Kind::remove_archive}, false},
      {"upload", Kind::upload, {Kind::remove_archive}, false},
      {"archive removal", Kind::remove_archive, {Kind::remove_archive, Kind::delete_upload}, false},
      {"publish in flight", Kind::publish, {}, false},
      {"history after ack", Kind::append_history,
       {Kind::write_response, Kind::remove_invalid, Kind::discard_processing, Kind::retire_previous}, true},
      {"response after ack", Kind::write_response,
       {Kind::remove_invalid, Kind::discard_processing, Kind::retire_previous}, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ProviderLifecycle m(offline_request(), params(true));
    bool cancelled = false;
    std::vector<Kind> after;
    drive(m, [&](const ProviderAction& a) {
      if (cancelled) after.push_back(a.kind);
      ProviderEvent ev = happy(a);
      if (!cancelled && a.kind == c.at) ev.cancelled = cancelled = true;
      return ev;
    });
    EXPECT_EQ(after, c.after);
    EXPECT_EQ(m.succeeded(), c.succeeded);
    EXPECT_EQ(m.cancelled(), !c.succeeded);
    EXPECT_TRUE(m.finished());
  }
}

TEST(ProviderLifecycle, CancelledUploadOfNoContainerDeletesWhatWasUploaded) {
  ProviderLifecycle m(offline_request(), params(false));
  std::vector<Kind> after;
  std::string deleted;
  bool cancelled = false;
  drive(m, [&](const ProviderAction& a) {
    if (cancelled) after.push_back(a.kind);
    if (a.kind == Kind::delete_upload) deleted = a.cid;
    ProviderEvent ev = happy(a);
    if (a.kind == Kind::remove_archive && !cancelled) ev.cancelled = cancelled = true;
    return ev;
  });
  EXPECT_EQ(after, (std::vector<Kind>{Kind::remove_archive, Kind::delete_upload}));
  EXPECT_EQ(deleted, "bafkcid1");
  EXPECT_TRUE(m.cancelled());
}

// A publish through the API has no control files: nothing is written to or removed from the
// control directory, on success or failure.
TEST(ProviderLifecycle, ApiPublishNeverTouchesControlFiles) {
  auto touches_control = [](Kind k) {
    return k == Kind::write_response || k == Kind::remove_invalid || k == Kind::report_failure ||
           k == Kind::discard_processing;
  };
  ProviderParams p = params(true);
  p.answer_by_files = false;
  ProviderLifecycle ok_m(offline_request(), p);
  auto kinds = drive(ok_m, happy);
  EXPECT_TRUE(ok_m.succeeded());
  EXPECT_EQ(std::count_if(kinds.begin(), kinds.end(), touches_control), 0);
  EXPECT_EQ(kinds.back(), Kind::retire_previous);

  ProviderLifecycle bad(offline_request(), p);
  kinds = drive(bad, [](const ProviderAction& a) {
    return a.kind == Kind::upload ? failed("r1fs down") : happy(a);
  });
  EXPECT_FALSE(bad.succeeded());
  EXPECT_EQ(bad.failed_stage(), ProviderStage::r1fs_upload);
  EXPECT_EQ(std::count_if(kinds.begin(), kinds.end(), touches_control), 0);
}

}  // namespace
}  // namespace carsync::core

namespace carsync::core {
namespace {

TEST(ProviderLifecycleDelta, TheUploadsDeltaFieldsGoIntoTheRecordAndTheSentEntry) {
  ProviderLifecycle m(offline_request(), params(false));
  const json::object record_field{{"format", 1}, {"serial", 3}};
  const json::object history_field{{"serial", 3}, {"record_packs", json::array{"QmPack3"}}};
  json::object record, entry;
  drive(m, [&](const ProviderAction& a) {
    if (a.kind == Kind::publish) record = a.document;
    if (a.kind == Kind::append_history) entry = a.document;
    ProviderEvent ev = happy(a);
    if (a.kind == Kind::upload) {
      ev.delta_record = record_field;
      ev.delta_history = history_field;
    }
    return ev;
  });
  EXPECT_EQ(record.at("delta"), record_field);
  EXPECT_EQ(entry.at("delta"), history_field);
}

TEST(ProviderLifecycleDelta, WithoutDeltaNeitherHasTheField) {
  ProviderLifecycle m(offline_request(), params(false));
  json::object record, entry;
  drive(m, [&](const ProviderAction& a) {
    if (a.kind == Kind::publish) record = a.document;
    if (a.kind == Kind::append_history) entry = a.document;
    return happy(a);
  });
  EXPECT_FALSE(record.contains("delta"));
  EXPECT_FALSE(entry.contains("delta"));
}

TEST(ProviderLifecycleDelta, AFailedUploadCarriesNoDeltaIntoAnything) {
  ProviderLifecycle m(offline_request(), params(false));
  std::vector<Kind> kinds = drive(m, [&](const ProviderAction& a) {
    ProviderEvent ev = happy(a);
    if (a.kind == Kind::upload) {
      ev = failed("store down");
      ev.delta_record = json::object{{"serial", 1}};
    }
    return ev;
  });
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::publish), 0);
  EXPECT_FALSE(m.snapshot().delta);
}

}  // namespace
}  // namespace carsync::core
