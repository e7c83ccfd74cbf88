#include "runtime/provider_run.hpp"

#include "core/record.hpp"
#include "core/request.hpp"
#include "io/atomic_json.hpp"
#include "io/capture.hpp"
#include "io/online_capture.hpp"
#include "io/secure_fs.hpp"
#include "runtime/cancellation.hpp"
#include "runtime/crash_point.hpp"
#include "runtime/deadline.hpp"
#include "runtime/delta_publish.hpp"
#include "runtime/node_metrics.hpp"
#include "runtime/retire.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <variant>
#include <vector>

namespace carsync::runtime {

namespace json = boost::json;
using Kind = core::ProviderAction::Kind;

namespace {

std::string_view archive_suffix(ArchiveFormat f) {
  return f == ArchiveFormat::tar_zst ? ".tar.zst" : ".tar.gz";
}

void log_ignored(const InstanceContext& ctx, Kind kind, const Result<void>& r) {
  if (!r) spdlog::warn("[{}] provider {}: {}", ctx.config.id, core::to_string(kind), r.error().message);
}

// The container archives exported for one online build. Whatever is still listed when
// this goes away is removed, so an exception or an abandoned coroutine leaves no file.
struct ExportedStreams {
  std::vector<io::OnlineSource> sources;
  void remove() noexcept {
    for (const auto& s : sources) {
      std::error_code ec;
      std::filesystem::remove(s.stream, ec);
    }
    sources.clear();
  }
  ~ExportedStreams() { remove(); }
};

// Exported streams get random names so two builds never share one.
std::string random_token() {
  std::random_device rd;
  const std::uint64_t v = (std::uint64_t{rd()} << 32) | rd();
  return fmt::format("{:016x}", v);
}

class ProviderDriver {
 public:
  ProviderDriver(InstanceContext& ctx) : ctx_(ctx) {}

  boost::asio::awaitable<ProviderRunOutcome> run(const std::string* api_body) {
    ProviderRunOutcome out;
    io::ClaimOutcome claim = io::NothingPending{};
    if (api_body) claim = io::ClaimedBody{*api_body};
    else claim = co_await ctx_.io_pool.run([&] { return ctx_.control.claim(core::max_request_bytes); });
    if (std::holds_alternative<io::NothingPending>(claim)) co_return out;
    if (auto* failed = std::get_if<io::ClaimFailedToRename>(&claim)) {
      // The request stays pending; the next event or rescan retries it. Said in the status
      // too: a control dir that stays read-only would otherwise leave requests unanswered
      // with nothing but a log line to show for it.
      out.error = failed->why;
      spdlog::warn("[{}] {}; will retry", ctx_.config.id, out.error);
      if (ctx_.status)
        ctx_.status->update([&](InstanceStatus& s) {
          s.error = LastError{.stage = Stage::system_volume, .message = out.error, .time = ctx_.clock.now()};
        });
      co_return out;
    }
    out.claimed = true;
    crash_point(ctx_.config.id, "provider", "claim");  // claimed: request.json.processing holds it
    count_claim(claim);
    started_ = std::chrono::steady_clock::now();
    set_phase(Phase::archiving);

    core::ProviderParams params{.sync_key = ctx_.config.sync.key,
                                .node_id = ctx_.node_id,
                                .format = ctx_.config.sync.archive_format,
                                .has_container = ctx_.container.has_container(),
                                .answer_by_files = api_body == nullptr,
                                .signing_keys = ctx_.signing_keys,
                                .last_sequence = ctx_.last_signed_sequence};
    std::optional<core::ProviderLifecycle> machine;
    if (auto* unsafe = std::get_if<io::ClaimUnsafe>(&claim)) {
      core::RequestRejection rej;
      rej.error = unsafe->error;
      machine.emplace(std::move(rej), params);
    } else {
      core::RequestContext rctx{.mounts = ctx_.config.volumes,
                                .policy = &ctx_.policy,
                                .allow_online_capture = ctx_.config.sync.allow_online_capture};
      auto parsed = core::parse_request(std::get<io::ClaimedBody>(claim).bytes, rctx);
      if (parsed) machine.emplace(std::move(*parsed), params);
      else machine.emplace(std::move(parsed.error()), params);
    }

    core::ProviderEvent first;
    first.now = ctx_.clock.now();
    first.cancelled = co_await was_cancelled();
    cancelled_ = first.cancelled;
    auto action = machine->resume(first);
    while (action.kind != Kind::done) {
      core::ProviderEvent ev = co_await perform(*machine, action);
      ev.now = ctx_.clock.now();
      const bool now_cancelled = co_await was_cancelled();  // no co_await inside || (g++ 12)
      ev.cancelled = cancelled_ = cancelled_ || now_cancelled;
      action = machine->resume(ev);
    }

    crash_point(ctx_.config.id, "provider", "done");
    // A signed record may be stored even when its publish failed (a timeout): its sequence
    // is never signed again.
    ctx_.last_signed_sequence = std::max(ctx_.last_signed_sequence, machine->signed_sequence());
    out.succeeded = machine->succeeded();
    out.cancelled = machine->cancelled();
    out.cid = machine->snapshot().cid;
    out.version = machine->snapshot().version;
    out.published_at = machine->snapshot().timestamp;
    out.archive_size = machine->snapshot().archive_size_bytes;
    out.failed_stage = machine->failed_stage();
    out.error = machine->error_text();
    finish(out);
    co_return out;
  }

 private:
  std::chrono::steady_clock::duration step_deadline() const {
    return runtime::step_deadline(cancelled_, ctx_.limits, ctx_.limits.step_timeout);
  }
  std::chrono::steady_clock::duration store_deadline() const {
    return runtime::step_deadline(cancelled_, ctx_.limits, ctx_.limits.store_timeout);
  }

  // nullopt: the step belongs to the phase before it (removing the uploaded archive is
  // part of the upload), so an operator never sees the phases flicker.
  static std::optional<Phase> phase_of(Kind k) {
    switch (k) {
      case Kind::stop_container: return Phase::stopping;
      case Kind::build_archive: return Phase::archiving;
      case Kind::start_container: return Phase::restarting;
      case Kind::upload: return Phase::uploading;
      case Kind::remove_archive: return std::nullopt;
      case Kind::publish: return Phase::publishing;
      default: return Phase::finishing;
    }
  }

  boost::asio::awaitable<core::ProviderEvent> perform(const core::ProviderLifecycle& m,
                                                      const core::ProviderAction& a) {
    core::ProviderEvent ev;
    auto fail_with = [&](const Error& e) { ev.error = e; };
    if (const auto phase = phase_of(a.kind)) set_phase(*phase);
    crash_point(ctx_.config.id, "provider", core::to_string(a.kind));
    switch (a.kind) {
      case Kind::stop_container: {
        stop_began_ = std::chrono::steady_clock::now();
        auto r = co_await with_deadline(ctx_.container.stop(), step_deadline(), "container stop");
        if (!r) fail_with(r.error());
        break;
      }
      case Kind::build_archive: {
        auto r = co_await build(m.request());
        if (r) {
          ev.archive_size = archive_size_ = r->size;
          archive_sha256_ = r->sha256;
          frames_ = std::move(r->frames);
          plain_size_ = r->plain_size;
          ev.archive_sha256 = io::to_hex(r->sha256);
          if (ctx_.metrics) ctx_.metrics->archived(ctx_.config.id, r->size);
        } else {
          fail_with(r.error());
        }
        break;
      }
      case Kind::start_container: {
        auto r = co_await with_deadline(ctx_.container.start(), step_deadline(), "container start");
        log_ignored(ctx_, a.kind, r);
        auto down = std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_began_).count();
        spdlog::info("[{}] provider: container restarted after {:.3f} s offline", ctx_.config.id, down);
        break;
      }
      case Kind::upload: {
        if (ctx_.status) ctx_.status->reset_progress(archive_size_);
        // The delta's pack is cut from the archive before the store takes the archive.
        co_await prepare_delta_files();
        if (ctx_.cas.identifies_content()) {
          // A kill inside the upload leaves a blob whose CID carsync never learnt; this record
          // lets start-up find it (adopt_upload_in_flight): by the CID the store will give,
          // since a store that takes the archive by rename leaves no file to hash, else
          // from the archive.
          json::object pending{{"archive", archive_.filename().string()},
                               {"version", static_cast<std::int64_t>(ctx_.clock.now())}};
          if (auto cid = ctx_.cas.cid_for(archive_sha256_)) pending["cid"] = *cid;
          put_delta_in_flight(pending);
          auto w = co_await ctx_.io_pool.run([&] { return io::write_json_file(upload_in_flight_path(ctx_), pending); });
          if (!w) spdlog::warn("[{}] provider: cannot record the upload in flight: {}", ctx_.config.id, w.error().message);
        }
        // The archive is handed over (renamed into the embedded store): never read again.
        auto r = co_await with_deadline(ctx_.cas.add_owned_file(archive_, archive_sha256_), step_deadline(),
                                        "r1fs upload");
        if (r && ctx_.status) ctx_.status->progress_done() = archive_size_;
        if (r) {
          ev.cid = *r;
          if (ctx_.metrics) ctx_.metrics->uploaded(ctx_.config.id, archive_size_);
          co_await upload_delta(ev);
          // Until the sent history names it, only this record does: a kill now would
          // otherwise leave the blob referenced by nothing, never retired.
          json::object record{{"cid", *r}, {"version", static_cast<std::int64_t>(ctx_.clock.now())}};
          put_delta_in_flight(record);
          auto w = co_await ctx_.io_pool.run([&] { return io::write_json_file(upload_in_flight_path(ctx_), record); });
          if (!w) spdlog::warn("[{}] provider: cannot record upload cid={} in flight: {}", ctx_.config.id, *r,
                               w.error().message);
        } else {
          fail_with(r.error());
        }
        if (prepared_) co_await ctx_.io_pool.run([&] { remove_prepared(*prepared_); });
        break;
      }
      case Kind::remove_archive: {
        // Usually gone already: the store took it (add_owned_file). Absent is not an error.
        co_await ctx_.io_pool.run([&] {
          std::error_code ec;
          std::filesystem::remove(archive_, ec);
        });
        break;
      }
      case Kind::publish: {
        auto r = co_await with_deadline(
            ctx_.kv.hset(std::string(core::sync_hkey), ctx_.config.sync.key, a.document),
            store_deadline(), "chainstore hset");
        if (r) ev.ack = *r;
        else fail_with(r.error());
        break;
      }
      case Kind::delete_upload: {
        auto r = co_await with_deadline(ctx_.cas.delete_file(a.cid, true, false), store_deadline(),
                                        "r1fs delete_file");
        log_ignored(ctx_, a.kind, r);
        // The index and pack uploaded with it: nobody references them either.
        for (const auto& cid : uploaded_delta_) {
          auto d = co_await with_deadline(ctx_.cas.delete_file(cid, true, false), store_deadline(),
                                          "r1fs delete_file");
          log_ignored(ctx_, a.kind, d);
          if (!d) r = d;
        }
        if (r) co_await ctx_.io_pool.run([&] { ::unlink(upload_in_flight_path(ctx_).c_str()); });
        break;
      }
      case Kind::append_history: {
        auto r = co_await ctx_.io_pool.run([&] {
          return ctx_.history.append(core::HistoryDir::sent, a.document, ctx_.clock.now_ns());
        });
        if (!r) {
          spdlog::warn("[{}] sent history append failed: {}", ctx_.config.id, r.error().message);
          fail_with(r.error());
        } else {
          co_await ctx_.io_pool.run([&] { ::unlink(upload_in_flight_path(ctx_).c_str()); });
        }
        break;
      }
      case Kind::write_response: {
        auto r = co_await ctx_.io_pool.run([&] { return ctx_.control.write(io::response_name, a.document); });
        log_ignored(ctx_, a.kind, r);
        break;
      }
      case Kind::remove_invalid: {
        co_await ctx_.io_pool.run([&] { return ctx_.control.remove_invalid(); });
        break;
      }
      case Kind::report_failure: {
        const auto written = co_await ctx_.io_pool.run([&] {
          auto i = ctx_.control.write(io::invalid_name, a.document);
          auto r = ctx_.control.write(io::response_name, a.response);
          return std::pair{i, r};
        });
        log_ignored(ctx_, a.kind, written.first);
        log_ignored(ctx_, a.kind, written.second);
        break;
      }
      case Kind::discard_processing: {
        auto r = co_await ctx_.io_pool.run([&] { return ctx_.control.discard_processing(); });
        log_ignored(ctx_, a.kind, r);
        break;
      }
      case Kind::retire_previous:
        co_await retire_previous(ctx_, core::HistoryDir::sent, true, false);
        if (prepared_ && !uploaded_delta_.empty()) {
          const auto serial = prepared_->serial;
          co_await ctx_.io_pool.run([&] { prune_provider_indexes(ctx_, serial); });
        }
        break;
      case Kind::done:
        break;
    }
    co_return ev;
  }

  boost::asio::awaitable<Result<io::ArchiveSeal>> build(const core::SyncRequest& req) {
    archive_ = ctx_.scratch_dir /
               ("sync_archive_" + std::to_string(static_cast<std::int64_t>(ctx_.clock.now())) + "_" +
                std::to_string(::getpid()) + std::string(archive_suffix(ctx_.config.sync.archive_format)));
    io::ArchiveOptions opts{.format = ctx_.config.sync.archive_format,
                            .level = ctx_.config.sync.compression_level,
                            .progress = ctx_.status ? &ctx_.status->progress_done() : nullptr,
                            .compute = ctx_.compute,
                            .chunked = ctx_.config.sync.delta};
    if (req.runtime.online()) {
      // Re-checked at archive time: the opt-in may have been withdrawn since the claim.
      if (!ctx_.config.sync.allow_online_capture)
        co_return make_error(errc::invalid_request,
                             "online provider capture requires ALLOW_ONLINE_PROVIDER_CAPTURE=true");
      if (!ctx_.container.has_container())
        co_return make_error(errc::runtime_unavailable, "online provider capture requires a running container");
      co_return co_await build_online(req, opts);
    }
    io::EngineOptions eo{.queue_depth = ctx_.limits.uring_queue_depth, .block_size = ctx_.limits.read_block_size};
    auto stats = co_await ctx_.cpu_pool.run_cancellable(
        ctx_.limits.step_timeout, [&](const std::atomic<bool>& cancel) {
          auto reader = io::make_reader(ctx_.engine, eo);
          return io::build_offline_archive(req.sources, archive_, opts, *reader, &cancel);
        });
    if (!stats) co_return stats.error();
    spdlog::info("[{}] provider: archive sealed: {} files, {} dirs, {} bytes -> {} bytes ({})",
                 ctx_.config.id, stats->files, stats->directories, stats->content_bytes,
                 stats->archive_size, to_string(ctx_.engine));
    co_return io::ArchiveSeal{stats->archive_size, stats->archive_sha256, std::move(stats->frames), stats->plain_size};
  }

  // §7.3 online entries: each path's container archive is exported to a scratch file, then
  // the files are copied into the archive. The exported files never outlive the build.
  boost::asio::awaitable<Result<io::ArchiveSeal>> build_online(const core::SyncRequest& req,
                                                             const io::ArchiveOptions& opts) {
    ExportedStreams streams;
    auto built = co_await export_and_build(req, opts, streams.sources);
    co_await ctx_.io_pool.run([&] { streams.remove(); });
    co_return built;
  }

  boost::asio::awaitable<Result<io::ArchiveSeal>> export_and_build(const core::SyncRequest& req,
                                                                 const io::ArchiveOptions& opts,
                                                                 std::vector<io::OnlineSource>& sources) {
    for (const auto& path : req.archive_paths) {
      auto target = core::check_shape(path);
      if (!target) co_return target.error();
      // Checked before exporting: the whole container filesystem is never worth streaming.
      if (*target == "/") co_return make_error(errc::path_rejected, "archive source must not be '/'");
      // Listed before the export starts, so a partial file is removed too.
      auto& src = sources.emplace_back();
      src.base = target->substr(target->rfind('/') + 1);
      src.container_path = std::move(*target);
      src.stream = ctx_.scratch_dir / ("sync_docker_archive_" + random_token() + ".tar");
      auto exported = co_await with_deadline(ctx_.container.export_path(src.container_path, src.stream),
                                             ctx_.limits.step_timeout, "container archive");
      if (!exported) {
        Error e = exported.error();
        e.message = "container archive of " + src.container_path + ": " + e.message;
        co_return e;
      }
    }
    auto stats = co_await ctx_.cpu_pool.run_cancellable(
        ctx_.limits.step_timeout, [&](const std::atomic<bool>& cancel) {
          return io::build_online_archive(sources, archive_, opts, &cancel);
        });
    if (!stats) co_return stats.error();
    spdlog::info("[{}] provider: online archive sealed: {} files, {} dirs, {} bytes -> {} bytes",
                 ctx_.config.id, stats->files, stats->directories, stats->content_bytes, stats->archive_size);
    co_return io::ArchiveSeal{stats->archive_size, stats->archive_sha256, std::move(stats->frames), stats->plain_size};
  }

  void set_phase(Phase phase) {
    if (ctx_.status) ctx_.status->enter(phase);
  }

  void count_claim(const io::ClaimOutcome& claim) {
    if (!ctx_.metrics) return;
    ctx_.metrics->claimed(ctx_.config.id);
    // Wall clock against the file's mtime, whatever clock the lifecycle runs on: both are
    // the host's real time (an API publish has no file, hence no reaction latency).
    const auto* body = std::get_if<io::ClaimedBody>(&claim);
    if (body && body->mtime > 0) {
      const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      ctx_.metrics->reaction_latency(ctx_.config.id, now - body->mtime);
    }
  }

  void finish(const ProviderRunOutcome& out) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    if (ctx_.metrics && out.succeeded) ctx_.metrics->published(ctx_.config.id, secs);
    else if (ctx_.metrics && !out.cancelled)
      ctx_.metrics->failed(ctx_.config.id, out.failed_stage ? public_stage(*out.failed_stage) : Stage::validation);
    if (out.succeeded)
      spdlog::info("[{}] provider: published cid={} in {:.3f} s", ctx_.config.id, out.cid, secs);
    else if (out.cancelled)
      spdlog::warn("[{}] provider: request cancelled after {:.3f} s; it runs again at the next start", ctx_.config.id,
                   secs);
    else
      spdlog::warn("[{}] provider: request failed at stage {}: {}", ctx_.config.id,
                   out.failed_stage ? core::to_string(*out.failed_stage) : "?", out.error);
    if (!ctx_.status) return;
    ctx_.status->reset_progress();
    ctx_.status->update([&](InstanceStatus& s) {
      s.phase = Phase::idle;
      s.last_duration_s = secs;
      if (out.succeeded) {
        ++s.requests_ok;
        s.last_cid = out.cid;
        s.last_publish = SyncPoint{.cid = out.cid, .version = out.version, .time = out.published_at,
                                   .size = out.archive_size};
      } else if (out.cancelled) {
        s.error = LastError{.stage = Stage::cancelled, .message = "cancelled", .time = ctx_.clock.now()};
      } else {
        ++s.requests_failed;
        s.last_error = std::string(out.failed_stage ? core::to_string(*out.failed_stage) : "") + ": " + out.error;
        s.error = LastError{.stage = out.failed_stage ? public_stage(*out.failed_stage) : Stage::validation,
                            .message = out.error,
                            .time = ctx_.clock.now()};
      }
    });
  }

  // Delta transfer: the index and pack of this version, written before the upload. Failing
  // here costs the consumers a full download, never the publish.
  boost::asio::awaitable<void> prepare_delta_files() {
    if (frames_.empty()) co_return;
    SealedArchive sealed{.file = archive_, .size = archive_size_, .sha256 = archive_sha256_, .plain_size = plain_size_,
                         .frames = std::move(frames_)};
    auto r = co_await ctx_.io_pool.run([&] { return prepare_delta(ctx_, sealed); });
    if (!r) {
      spdlog::warn("[{}] provider: no delta for this version: {}", ctx_.config.id, r.error().message);
      co_return;
    }
    prepared_ = std::move(*r);
  }

  // The pack, then the index; the index names the pack, so a version never names a pack
  // that is not stored.
  boost::asio::awaitable<void> upload_delta(core::ProviderEvent& ev) {
    if (!prepared_) co_return;
    std::optional<std::string> pack_cid;
    std::optional<Error> failed;
    if (prepared_->pack_file) {
      auto p = co_await with_deadline(ctx_.cas.add_owned_file(*prepared_->pack_file, prepared_->pack.sha256),
                                      step_deadline(), "r1fs upload (delta pack)");
      if (p) {
        pack_cid = *p;
        uploaded_delta_.push_back(*p);
      } else {
        failed = p.error();
      }
    }
    if (!failed) {
      auto i = co_await with_deadline(ctx_.cas.add_owned_file(prepared_->index_file, prepared_->index.sha256),
                                      step_deadline(), "r1fs upload (delta index)");
      if (i) {
        uploaded_delta_.push_back(*i);
        auto fields = delta_fields(*prepared_, *i, pack_cid);
        ev.delta_record = std::move(fields.record);
        ev.delta_history = std::move(fields.history);
        if (ctx_.metrics) ctx_.metrics->uploaded(ctx_.config.id, prepared_->index.size + (pack_cid ? prepared_->pack.size : 0));
        spdlog::info("[{}] provider: delta {}: index {} bytes, {} new frames{}", ctx_.config.id, prepared_->serial,
                     prepared_->index.size, prepared_->new_frames,
                     pack_cid ? fmt::format(", pack {} bytes", prepared_->pack.size) : std::string(" (no pack)"));
        co_return;
      }
      failed = i.error();
    }
    // Published without a delta: what was uploaded goes at once.
    spdlog::warn("[{}] provider: delta upload failed, publishing without it: {}", ctx_.config.id, failed->message);
    for (const auto& cid : uploaded_delta_) {
      auto d = co_await with_deadline(ctx_.cas.delete_file(cid, true, false), store_deadline(), "r1fs delete_file");
      if (!d) spdlog::warn("[{}] provider: delete of delta cid={} failed: {}", ctx_.config.id, cid, d.error().message);
    }
    uploaded_delta_.clear();
  }

  // In upload_in_flight.json: the CIDs the store will give the delta files (a store that
  // names blobs by content), so that a kill between the uploads leaves nothing unnamed.
  void put_delta_in_flight(json::object& record) const {
    if (!prepared_) return;
    json::array cids;
    if (auto c = ctx_.cas.cid_for(prepared_->index.sha256)) cids.emplace_back(*c);
    if (prepared_->pack_file)
      if (auto c = ctx_.cas.cid_for(prepared_->pack.sha256)) cids.emplace_back(*c);
    for (const auto& c : uploaded_delta_)
      if (std::find(cids.begin(), cids.end(), json::value(c)) == cids.end()) cids.emplace_back(c);
    if (!cids.empty()) record["delta_cids"] = std::move(cids);
  }

  InstanceContext& ctx_;
  bool cancelled_ = false;
  std::uint64_t archive_size_ = 0;
  io::Sha256Digest archive_sha256_{};
  std::vector<core::FrameInfo> frames_;
  std::uint64_t plain_size_ = 0;
  std::optional<PreparedDelta> prepared_;
  std::vector<std::string> uploaded_delta_;
  std::filesystem::path archive_;
  std::chrono::steady_clock::time_point started_{}, stop_began_{};
};

}  // namespace

std::filesystem::path upload_in_flight_path(const InstanceContext& ctx) {
  return ctx.state_dir / "upload_in_flight.json";
}

Result<bool> adopt_upload_in_flight(InstanceContext& ctx) {
  const auto path = upload_in_flight_path(ctx);
  std::error_code ec;
  // A kill inside the record's own write left its temp (".upload_in_flight.json.<hex>.tmp"):
  // that upload never got its record, as if killed just before it.
  const std::string temp_prefix = "." + path.filename().string() + ".";
  for (std::filesystem::directory_iterator it(ctx.state_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    std::error_code ignored;
    if (name.starts_with(temp_prefix) && name.ends_with(".tmp")) std::filesystem::remove(it->path(), ignored);
  }
  if (!std::filesystem::exists(path, ec)) return false;
  auto dir = io::open_root_dir(ctx.state_dir);
  if (!dir) return dir.error();
  auto body = io::read_json_at(dir->get(), path.filename().string());
  const json::object* record = body && body->is_object() ? &body->as_object() : nullptr;
  const json::value* cid = record ? record->if_contains("cid") : nullptr;
  const json::value* archive = record ? record->if_contains("archive") : nullptr;
  // Killed inside the upload: the store may hold the archive under a CID never returned.
  // A record written before the upload may name the CID the store was to give (it took
  // the archive by rename, leaving no file to hash): adopted if the store holds it.
  if (cid && archive && !(cid->is_string() && ctx.cas.holds(std::string(cid->as_string())))) cid = nullptr;
  // Else the archive is still in scratch (start-up empties scratch after this); a store
  // that keeps bytes as given finds the blob from it (records without a CID, too).
  json::value found;
  if (cid) archive = nullptr;
  if (archive && archive->is_string() && ctx.cas.identifies_content()) {
    const std::string name(archive->as_string());
    const auto file = ctx.scratch_dir / name;
    const bool plain = !name.empty() && name.find('/') == std::string::npos && name != "..";
    if (plain && std::filesystem::is_regular_file(file, ec)) {
      auto held = ctx.cas.held_cid(file);
      if (!held) return held.error();
      if (*held) {
        found = json::string(**held);
        cid = &found;
      }
    }
  }
  bool adopted = false;
  const auto sent = ctx.history.entries(core::HistoryDir::sent);
  // The delta files uploaded with it (or about to be) that the store holds and no entry names.
  json::object delta;
  if (const auto* cids = record ? record->if_contains("delta_cids") : nullptr; cids && cids->is_array()) {
    const char* parts[] = {"index", "pack"};
    std::size_t n = 0;
    for (const auto& c : cids->as_array()) {
      if (!c.is_string() || n == 2 || !ctx.cas.holds(std::string(c.as_string()))) continue;
      bool named = false;
      for (const auto& e : sent)
        if (const auto* d = e.body.if_contains("delta"); d && d->is_object())
          for (const char* part : parts)
            if (const auto* o = d->as_object().if_contains(part); o && o->is_object() && o->as_object().if_contains("cid") &&
                                                                    o->as_object().at("cid") == c)
              named = true;
      if (!named) delta[parts[n++]] = json::object{{"cid", c}};
    }
  }
  // The delta files are uploaded after the archive: with them held, the archive is too.
  if (cid && cid->is_string() && !cid->as_string().empty()) {
    bool known = false;
    for (const auto& e : sent)
      if (const auto* c = e.body.if_contains("cid"); c && *c == *cid) known = true;
    if (!known || !delta.empty()) {
      // A history entry makes the next publish's retirement pass delete it (or keeps it,
      // should the record be what consumers now read and no publish follow).
      json::object entry{{"cid", *cid}};
      if (const auto* v = record->if_contains("version")) entry["version"] = *v;
      if (!delta.empty()) entry["delta"] = std::move(delta);
      entry["recovered_upload"] = true;
      auto r = ctx.history.append(core::HistoryDir::sent, std::move(entry), ctx.clock.now_ns());
      if (!r) return r.error();
      adopted = true;
    }
  }
  ::unlink(path.c_str());
  return adopted;
}

boost::asio::awaitable<ProviderRunOutcome> run_provider_once(InstanceContext& ctx, const std::string* api_body) {
  ProviderDriver driver(ctx);
  co_return co_await driver.run(api_body);
}

Stage public_stage(core::ProviderStage s) noexcept {
  switch (s) {
    case core::ProviderStage::validation: return Stage::validation;
    case core::ProviderStage::archive_build: return Stage::archive_build;
    case core::ProviderStage::r1fs_upload: return Stage::r1fs_upload;
    case core::ProviderStage::chainstore_publish: return Stage::chainstore_publish;
    case core::ProviderStage::runtime_stop: return Stage::runtime_stop;
  }
  return Stage::none;
}

}  // namespace carsync::runtime
