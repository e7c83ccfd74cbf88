#include "runtime/consumer_run.hpp"

#include "io/sha256.hpp"

#include "backend/cid.hpp"
#include "core/apply_state.hpp"
#include "core/quarantine.hpp"
#include "core/record.hpp"
#include "io/archive_scan.hpp"
#include "runtime/delta_fetch.hpp"
#include "io/atomic_json.hpp"
#include "io/secure_fs.hpp"
#include "io/staged_apply.hpp"
#include "runtime/cancellation.hpp"
#include "runtime/crash_point.hpp"
#include "runtime/deadline.hpp"
#include "runtime/node_metrics.hpp"
#include "runtime/retire.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/json/serialize.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

namespace carsync::runtime {

namespace fs = std::filesystem;
namespace json = boost::json;
using Kind = core::ConsumerAction::Kind;

std::filesystem::path current_apply_path(const InstanceContext& ctx) {
  return ctx.state_dir / "current_apply.json";
}
std::filesystem::path apply_journal_path(const InstanceContext& ctx) {
  return ctx.state_dir / "apply_journal.json";
}
// Present (durably) from before carsync stops the consumer's container until it has
// started it again: a kill in between leaves it, and start-up recovery restarts the
// container instead of leaving the app down until the next snapshot.
std::filesystem::path container_stopped_path(const InstanceContext& ctx) {
  return ctx.state_dir / "container_stopped.json";
}

namespace {

std::string sha256_hex(std::string_view text) {
  io::Sha256 h;
  h.update(std::as_bytes(std::span(text.data(), text.size())));
  return io::to_hex(h.finish());
}

// A non-negative JSON integer, else 0 (sizes and counts from records and state files).
std::uint64_t as_count(const json::value& v) {
  if (v.is_uint64()) return v.get_uint64();
  if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::uint64_t>(v.get_int64());
  return 0;
}

// A small host-private JSON file; absent or unparseable reads as nullopt.
std::optional<json::value> read_json(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return std::nullopt;
  auto dir = io::open_root_dir(file.parent_path());
  if (!dir) return std::nullopt;
  auto v = io::read_json_at(dir->get(), file.filename().string());
  if (!v) {
    spdlog::warn("ignoring unreadable {}: {}", file.string(), v.error().message);
    return std::nullopt;
  }
  return std::move(*v);
}

class ConsumerDriver {
 public:
  ConsumerDriver(InstanceContext& ctx, ConsumerState& state) : ctx_(ctx), state_(state) {}

  boost::asio::awaitable<ConsumerRunOutcome> run() {
    ConsumerRunOutcome out;
    fetch_began_ = std::chrono::steady_clock::now();
    auto record = co_await fetch();

    core::ConsumerParams params;
    params.apply_mode = ctx_.config.sync.consumer_apply_mode;
    params.has_container = ctx_.container.has_container();
    params.mounts = ctx_.config.volumes;
    params.policy = &ctx_.policy;
    if (!ctx_.trusted_keys.empty()) {
      params.sync_key = ctx_.config.sync.key;
      params.trusted_keys = ctx_.trusted_keys;
      params.trust_policy = ctx_.config.trust ? ctx_.config.trust->policy : TrustPolicy::enforce;
    }
    co_await ctx_.io_pool.run([&] { load_durable_state(record, params); });

    core::ConsumerLifecycle machine(std::move(record), std::move(params));
    core::ConsumerEvent first;
    first.now = ctx_.clock.now();
    first.cancelled = cancelled_ = co_await was_cancelled();
    auto action = machine.resume(first);
    if (action.kind != Kind::done) started_ = std::chrono::steady_clock::now();
    while (action.kind != Kind::done) {
      if (const auto phase = phase_of(action.kind)) set_phase(*phase);
      crash_point(ctx_.config.id, "consumer", core::to_string(action.kind));
      core::ConsumerEvent ev = co_await perform(machine, action);
      ev.now = ctx_.clock.now();
      const bool now_cancelled = co_await was_cancelled();  // no co_await inside || (g++ 12)
      ev.cancelled = cancelled_ = cancelled_ || now_cancelled;
      action = machine.resume(ev);
    }
    if (started_ != std::chrono::steady_clock::time_point{}) crash_point(ctx_.config.id, "consumer", "done");
    state_.last_resolution = machine.apply_mode();
    out.outcome = machine.outcome();
    out.restart_safe = machine.restart_safe();
    out.error = machine.error_text();
    if (machine.signature_verdict()) out.signature_error = machine.signature_verdict()->error;
    if (const auto* c = machine.record().is_object() ? machine.record().as_object().if_contains("cid") : nullptr;
        c && c->is_string())
      out.cid = std::string(c->as_string());
    finish(machine, out);
    co_return out;
  }

 private:
  // §8.2: hsync at most every HSYNC_POLL_INTERVAL for a remote replica, then a cheap hget.
  boost::asio::awaitable<std::optional<json::value>> fetch() {
    const auto& key = ctx_.config.sync.key;
    if (key.empty()) co_return std::nullopt;
    // The gate is in-memory pacing: steady time, so a wall-clock step back cannot hold
    // hsync off for the length of the step.
    double now = ctx_.clock.steady();
    if (!ctx_.kv.supports_watch() && state_.hsync.due(now)) {
      auto t0 = std::chrono::steady_clock::now();
      auto r = co_await with_deadline(ctx_.kv.hsync(std::string(core::sync_hkey)), ctx_.limits.store_timeout,
                                      "chainstore hsync");
      double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r) {
        state_.hsync.on_success(now);
        spdlog::info("[{}] consumer: hsync ok in {:.3f} s", ctx_.config.id, took);
      } else {
        state_.hsync.on_failure(now);
        if (ctx_.metrics) ctx_.metrics->store_poll_failed(ctx_.config.id, "hsync");
        spdlog::warn("[{}] consumer: hsync failed in {:.3f} s: {}", ctx_.config.id, took, r.error().message);
      }
    }
    auto v = co_await with_deadline(ctx_.kv.hget(std::string(core::sync_hkey), key), ctx_.limits.store_timeout,
                                    "chainstore hget");
    if (!v) {
      if (ctx_.metrics) ctx_.metrics->store_poll_failed(ctx_.config.id, "hget");
      spdlog::warn("[{}] consumer: hget failed: {}", ctx_.config.id, v.error().message);
      co_return std::nullopt;
    }
    co_return std::move(*v);
  }

  void load_durable_state(const std::optional<json::value>& record, core::ConsumerParams& params) {
    auto current = read_json(current_apply_path(ctx_));
    auto latest = ctx_.history.latest(core::HistoryDir::received);
    params.applied_cid = core::dedupe_cid(current ? &*current : nullptr, latest ? &latest->body : nullptr);
    params.halted = core::is_halted(current ? &*current : nullptr);
    if (!record || !record->is_object()) return;
    if (!params.trusted_keys.empty()) params.trust_state = load_trust_state(current ? &*current : nullptr);
    params.manifest_digest = sha256_hex(core::quarantine_digest_input(*record));
    const auto* cid = record->as_object().if_contains("cid");
    if (!cid) return;
    quarantine_name_ = core::quarantine_file_name(*cid, params.manifest_digest);
    params.quarantine = read_json(ctx_.state_dir / "quarantine" / quarantine_name_);
  }

  // current_apply.json's "trust"; when the file or the field is missing or unreadable, what
  // the received history says was applied (so losing the file does not reopen the door to
  // older records).
  core::TrustState load_trust_state(const json::value* current) {
    const json::value* doc = current && current->is_object() ? current->as_object().if_contains("trust") : nullptr;
    std::string lost = current ? "has no \"trust\"" : "is missing or unreadable";
    if (doc) {
      auto state = core::TrustState::from_json(*doc);
      if (state) return std::move(*state);
      lost = "has an unreadable \"trust\" (" + state.error().message + ")";
    }
    const auto entries = ctx_.history.entries(core::HistoryDir::received);
    auto rebuilt = core::trust_state_from_history(entries);
    if (!rebuilt.keys.empty())
      spdlog::warn("[{}] consumer: {} {}: accepted sequences rebuilt from the received history", ctx_.config.id,
                   current_apply_path(ctx_).string(), lost);
    return rebuilt;
  }

  boost::asio::awaitable<core::ConsumerEvent> perform(const core::ConsumerLifecycle& m,
                                                      const core::ConsumerAction& a) {
    core::ConsumerEvent ev;
    const auto& id = ctx_.config.id;
    switch (a.kind) {
      case Kind::write_state:
      case Kind::halt: {
        const json::object& doc = a.document;  // the machine carries applied_cid
        auto r = co_await ctx_.io_pool.run([&] { return io::write_json_file(current_apply_path(ctx_), doc); });
        if (!r) {
          spdlog::warn("[{}] consumer: current_apply.json: {}", id, r.error().message);
          ev.error = r.error();
        }
        if (a.kind == Kind::halt)
          spdlog::error("[{}] consumer: apply of cid={} is uncertain: container left stopped until an operator "
                        "clears the halt",
                        id, cid_of(m));
        break;
      }
      case Kind::quarantine: {
        auto r = co_await ctx_.io_pool.run(
            [&] { return io::write_json_file(ctx_.state_dir / "quarantine" / a.name, a.document); });
        if (!r) {
          // Nothing durable backs a backoff now (a full disk, say): the next tick retries.
          ev.error = r.error();
          spdlog::error("[{}] consumer: cid={} failed at stage {} but its quarantine could not be recorded ({}); "
                        "no backoff: {}", id, cid_of(m), json::serialize(a.document.at("stage")),
                        r.error().message, json::serialize(a.document.at("error")));
          break;
        }
        quarantine_ = a.document;
        spdlog::warn("[{}] consumer: cid={} quarantined at stage {} (failure {}): {}", id, cid_of(m),
                     json::serialize(a.document.at("stage")), json::serialize(a.document.at("failure_count")),
                     json::serialize(a.document.at("error")));
        break;
      }
      case Kind::download: {
        auto t0 = std::chrono::steady_clock::now();
        std::uint64_t expected = 0;  // the manifest's archive size (validated before this step)
        if (const auto* size = m.record().as_object().at("manifest").as_object().if_contains("archive_size_bytes"))
          expected = as_count(*size);
        if (ctx_.status) ctx_.status->reset_progress(expected);
        Transfer transfer;
        transfer.archive_bytes = expected;
        co_await try_delta(m, transfer);
        if (transfer.mode == core::FetchMode::delta) {
          if (ctx_.status) ctx_.status->progress_done() = expected;
          spdlog::info("[{}] consumer: reassembled cid={} from its base and {} fetched bytes ({} of the archive's {}) "
                       "in {:.3f} s",
                       id, a.cid, transfer.fetched_bytes,
                       fmt::format("{:.1f} %", expected ? 100.0 * static_cast<double>(transfer.fetched_bytes) /
                                                              static_cast<double>(expected)
                                                        : 0.0),
                       expected, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        } else {
          // The copy may be unverified (the embedded store's hard link): the scan checks it
          // against expected_sha256_ while it streams, instead of a separate pass here.
          auto r = co_await with_deadline(ctx_.cas.fetch_file(a.cid), step_deadline(), "r1fs download");
          if (!r) ev.error = r.error();
          else if (r->path.empty()) ev.error = make_error(errc::store_failure, "r1fs.get_file returned no path");
          else if (auto expected_digest = expected_digest_of(m, r->sha256); !expected_digest) {
            ev.error = expected_digest.error();
            std::error_code ec;
            fs::remove(r->path, ec);  // refused: the node's copy goes, as cleanup would take it
          } else {
            download_ = r->path;
            expected_sha256_ = *expected_digest;
            if (ctx_.status) ctx_.status->progress_done() = expected;
            std::error_code ec;
            const auto size = fs::file_size(download_, ec);
            transfer.fetched_bytes += ec ? expected : size;
            spdlog::info("[{}] consumer: downloaded cid={} in {:.3f} s", id, a.cid,
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
          }
        }
        if (!ev.error) {
          ev.transfer = transfer.to_json();
          if (ctx_.metrics) {
            ctx_.metrics->downloaded(id, transfer.fetched_bytes);
            ctx_.metrics->fetched(id, transfer.mode == core::FetchMode::delta ? "delta" : "full",
                                  transfer.fetched_bytes, transfer.archive_bytes, transfer.fallback);
          }
        }
        break;
      }
      case Kind::scan: {
        auto r = co_await scan(m);
        if (!r) ev.error = r.error();
        break;
      }
      case Kind::stop_container: {
        stop_began_ = std::chrono::steady_clock::now();
        const json::value marker = json::object{{"cid", cid_of(m)}, {"stopped_at", ctx_.clock.now()}};
        auto marked = co_await ctx_.io_pool.run([&] { return io::write_json_file(container_stopped_path(ctx_), marker); });
        if (!marked) {
          // Without the marker a kill could leave the app down: do not stop it at all.
          ev.error = Error{marked.error().code, "cannot record the container stop: " + marked.error().message};
          break;
        }
        auto r = co_await with_deadline(ctx_.container.stop(), step_deadline(), "container stop");
        if (!r) ev.error = r.error();
        break;
      }
      case Kind::commit: {
        // Never interrupted (a plain job): the journal makes it crash-safe, not cancellable.
        io::ApplyOptions opts;
        opts.semantics = ctx_.config.sync.apply_semantics;
        if (ctx_.status) {
          ctx_.status->reset_progress(plan_->total_bytes);
          opts.progress = &ctx_.status->progress_done();
        }
        opts.cid = cid_of(m);
        auto journal = apply_journal_path(ctx_);
        auto outcome = co_await ctx_.cpu_pool.run([&] { return io::commit_plan(*plan_, journal, opts); });
        ev.extracted_paths = outcome.extracted_paths;
        if (!outcome.success) {
          ev.error = make_error(errc::io_failure, outcome.error);
          ev.rollback_incomplete = !outcome.restart_safe;
          break;
        }
        applied_bytes_ = plan_->total_bytes;
        if (ctx_.metrics) ctx_.metrics->applied_bytes(id, applied_bytes_);
        co_await install_base();
        spdlog::info("[{}] consumer: applied cid={}: {} paths ({} bytes), durable in {:.3f} s", id, opts.cid,
                     outcome.extracted_paths.size(), plan_->total_bytes, outcome.durable_seconds);
        break;
      }
      case Kind::append_history: {
        auto r = co_await ctx_.io_pool.run(
            [&] { return ctx_.history.append(core::HistoryDir::received, a.document, ctx_.clock.now_ns()); });
        if (!r) {
          spdlog::warn("[{}] consumer: received history append failed: {}", id, r.error().message);
          ev.error = r.error();
        }
        break;
      }
      case Kind::write_last_apply: {
        auto r = co_await ctx_.io_pool.run([&] { return ctx_.control.write(io::last_apply_name, a.document); });
        if (!r) spdlog::warn("[{}] consumer: last_apply.json: {}", id, r.error().message);
        break;
      }
      case Kind::start_container: {
        auto r = co_await with_deadline(ctx_.container.start(), step_deadline(), "container start");
        if (!r) spdlog::warn("[{}] consumer: container start failed: {}", id, r.error().message);
        else co_await ctx_.io_pool.run([&] { ::unlink(container_stopped_path(ctx_).c_str()); });
        if (stop_began_ != std::chrono::steady_clock::time_point{})
          spdlog::info("[{}] consumer: container restarted after {:.3f} s offline", id,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_began_).count());
        break;
      }
      case Kind::discard_staging: {
        co_await ctx_.io_pool.run([&] {
          std::error_code ec;
          if (!staging_.empty()) fs::remove_all(staging_, ec);
          if (!assembled_.empty()) fs::remove(assembled_, ec);
        });
        break;
      }
      case Kind::retire_previous:
        co_await retire_previous(ctx_, core::HistoryDir::received, false, true);
        break;
      case Kind::done:
        break;
    }
    co_return ev;
  }

  // Delta transfer: fetch the record's index, plan against the base, fetch the packs and
  // reassemble the archive (verified against the record's digest). On success download_ is
  // the reassembled archive; on any failure `t` says why and the caller fetches the archive.
  // Nothing here touches a volume.
  boost::asio::awaitable<void> try_delta(const core::ConsumerLifecycle& m, Transfer& t) {
    const auto& id = ctx_.config.id;
    if (!ctx_.config.sync.delta) {
      co_await ctx_.io_pool.run([&] { consumer_base(ctx_).clear(); });
      co_return;
    }
    auto field = core::record_delta(m.record());
    if (!field) {
      t.fallback = fallback_label(field.error());
      spdlog::warn("[{}] consumer: fetching the full archive: {}", id, field.error().message);
      co_return;
    }
    if (!*field) co_return;  // a record without a delta: the ordinary download
    const auto digest = core::record_archive_sha256(m.record());
    if (!digest) {
      t.fallback = "no_archive_sha256";
      spdlog::warn("[{}] consumer: fetching the full archive: the record has a delta but no archive_sha256", id);
      co_return;
    }
    const core::RecordDelta& delta = **field;
    co_await ctx_.io_pool.run([&] { remove_stale_incoming(ctx_); });
    auto index = co_await with_deadline(ctx_.cas.fetch_file(delta.index.cid), step_deadline(),
                                        "r1fs download (delta index)");
    if (!index) {
      t.fallback = "index_unavailable";
      spdlog::warn("[{}] consumer: fetching the full archive: delta index cid={}: {}", id, delta.index.cid,
                   index.error().message);
      co_return;
    }
    t.fetched_bytes += delta.index.size;
    const fs::path index_file = index->path;
    const std::uint64_t archive_size = t.archive_bytes;
    auto planned = co_await ctx_.io_pool.run([&] {
      auto r = plan_delta(ctx_, delta, index_file, *digest, archive_size);
      std::error_code ec;
      fs::remove(index_file, ec);  // parsed: the node's copy is not needed any more
      return r;
    });
    if (!planned) {
      t.fallback = fallback_label(planned.error());
      spdlog::warn("[{}] consumer: fetching the full archive: {}", id, planned.error().message);
      co_return;
    }
    next_index_ = planned->index;  // the base after this apply, however the archive is fetched
    if (planned->plan.mode == core::FetchMode::full) {
      t.fallback = std::string(core::to_string(planned->plan.reason));
      spdlog::info("[{}] consumer: fetching the full archive ({})", id, t.fallback);
      co_return;
    }
    io::AssembleInput in;
    std::optional<std::string> failed;
    for (const auto& p : planned->plan.packs) {
      auto f = co_await with_deadline(ctx_.cas.fetch_file(p.cid), step_deadline(), "r1fs download (delta pack)");
      if (!f) {
        failed = "delta pack " + std::to_string(p.serial) + " cid=" + p.cid + ": " + f.error().message;
        t.fallback = "pack_unavailable";
        break;
      }
      in.packs[p.serial] = f->path;
      t.fetched_bytes += p.size;
    }
    const fs::path out = incoming_archive_path(ctx_);
    Result<io::FileSeal> built = make_error(errc::io_failure, failed.value_or(""));
    if (!failed) {
      in.base_archive = planned->base ? &planned->base->archive : nullptr;
      in.next = &planned->index;
      in.plan = &planned->plan;
      in.expected = *digest;
      built = co_await ctx_.cpu_pool.run_cancellable(ctx_.limits.step_timeout, [&](const std::atomic<bool>& cancel) {
        in.cancel = &cancel;
        return io::reassemble(in, out);
      });
      if (!built) {
        t.fallback = fallback_label(built.error());
        failed = built.error().message;
      }
    }
    co_await ctx_.io_pool.run([&] {
      std::error_code ec;
      for (const auto& kv : in.packs) fs::remove(kv.second, ec);
    });
    if (failed) {
      spdlog::warn("[{}] consumer: fetching the full archive: {}", id, *failed);
      co_return;
    }
    t.mode = core::FetchMode::delta;
    t.fallback.clear();
    download_ = assembled_ = out;
    expected_sha256_.reset();  // reassemble verified it against the record's digest
  }

  static std::string fallback_label(const Error& e) {
    if (e.code.category() == core::delta_category())
      return std::string(core::to_string(static_cast<core::delta_errc>(e.code.value())));
    if (e.code == make_error_code(errc::cancelled)) return "cancelled";
    return "error";
  }

  // After a commit: the applied archive (verified) and its index become the base.
  boost::asio::awaitable<void> install_base() {
    if (!next_index_ || !ctx_.config.sync.delta) co_return;
    const auto bytes = core::encode_index(*next_index_);
    auto r = co_await ctx_.io_pool.run([&] { return consumer_base(ctx_).install(download_, bytes); });
    if (!r) spdlog::warn("[{}] consumer: cannot keep the applied archive as the delta base: {}", ctx_.config.id,
                         r.error().message);
  }

  // What the downloaded archive must hash to: the store's digest (what its CID names) and
  // the record's archive_sha256, whichever are known. Two that differ are a corrupt archive
  // whatever its bytes: one of them cannot match.
  static Result<std::optional<io::Sha256Digest>> expected_digest_of(const core::ConsumerLifecycle& m,
                                                                    const std::optional<io::Sha256Digest>& store) {
    const auto recorded = core::record_archive_sha256(m.record());
    if (store && recorded && *store != *recorded)
      return make_error(errc::corrupt_archive, "record archive_sha256 " + io::to_hex(*recorded) +
                                                   " differs from the digest the CID names (" +
                                                   io::to_hex(*store) + ")");
    return store ? store : recorded;
  }

  boost::asio::awaitable<Result<void>> scan(const core::ConsumerLifecycle& m) {
    staging_ = ctx_.state_dir / "staging" / io::random_name("apply.", "");
    std::error_code ec;
    fs::create_directories(staging_, ec);
    if (ec) co_return os_error(ec.value(), "create staging " + staging_.string());
    io::ScanContext sctx;
    sctx.mounts = ctx_.config.volumes;
    sctx.policy = &ctx_.policy;
    if (ctx_.status) sctx.progress = &ctx_.status->progress_done();
    sctx.expected_sha256 = expected_sha256_;
    const auto& manifest = m.record().as_object().at("manifest").as_object();
    for (const auto& p : manifest.at("archive_paths").as_array()) sctx.manifest_paths.emplace_back(p.as_string());
    auto t0 = std::chrono::steady_clock::now();
    auto plan = co_await ctx_.cpu_pool.run_cancellable(ctx_.limits.step_timeout, [&](const std::atomic<bool>& cancel) {
      return io::scan_and_stage(download_, sctx, staging_, &cancel);
    });
    if (!plan) co_return plan.error();
    plan_ = std::move(*plan);
    spdlog::info("[{}] consumer: staged {} entries ({} bytes) in {:.3f} s", ctx_.config.id, plan_->entries.size(),
                 plan_->total_bytes, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    co_return Result<void>{};
  }

  static std::string cid_of(const core::ConsumerLifecycle& m) {
    const auto& cid = m.identity().cid;
    return cid.is_string() ? std::string(cid.as_string()) : json::serialize(cid);
  }

  std::chrono::steady_clock::duration step_deadline() const {
    return runtime::step_deadline(cancelled_, ctx_.limits, ctx_.limits.step_timeout);
  }

  // nullopt: the step belongs to the phase it runs in (the durable state written around
  // the download and the commit), so an operator never sees the phases flicker.
  static std::optional<Phase> phase_of(Kind k) {
    switch (k) {
      case Kind::download: return Phase::downloading;
      case Kind::scan: return Phase::scanning;
      case Kind::stop_container: return Phase::stopping;
      case Kind::commit: return Phase::applying;
      case Kind::start_container: return Phase::restarting;
      case Kind::halt: return Phase::halted;
      case Kind::write_state: return std::nullopt;
      default: return Phase::finishing;
    }
  }

  void set_phase(Phase phase) {
    if (ctx_.status) ctx_.status->enter(phase);
  }

  // A signature that did not verify: counted, and said loudly (an equivocation is an alert:
  // the key's holder published two snapshots under one sequence).
  void report_signature(const core::ConsumerLifecycle& m, const ConsumerRunOutcome& out) {
    const auto& verdict = m.signature_verdict();
    if (!verdict) return;
    const auto& id = ctx_.config.id;
    if (!verdict->error) {
      spdlog::info("[{}] consumer: cid={} signed by {} at sequence {}: verified", id, out.cid,
                   fmt::join(verdict->key_ids, ","), verdict->sequence);
      return;
    }
    const bool warn_only = ctx_.config.trust && ctx_.config.trust->policy == TrustPolicy::warn;
    if (verdict->alert())
      spdlog::critical("[{}] ALERT: consumer: {}", id, verdict->reason);
    if (warn_only)
      spdlog::warn("[{}] consumer: cid={} signature not verified ({}), applied anyway (trust.policy warn): {}", id,
                   out.cid, core::to_string(*verdict->error), verdict->reason);
    if (ctx_.metrics) ctx_.metrics->signature_failed(id, core::to_string(*verdict->error));
    if (ctx_.status) ctx_.status->update([](InstanceStatus& s) { ++s.signature_failures; });
  }

  void finish(const core::ConsumerLifecycle& m, const ConsumerRunOutcome& out) {
    using O = core::ConsumerOutcome;
    report_signature(m, out);
    if (out.outcome == O::no_record || out.outcome == O::up_to_date || out.outcome == O::backing_off) return;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    if (ctx_.metrics && out.outcome == O::applied)
      ctx_.metrics->applied(ctx_.config.id,
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - fetch_began_).count());
    else if (ctx_.metrics && out.outcome != O::halted && out.outcome != O::cancelled)  // as requests_failed
      ctx_.metrics->failed(ctx_.config.id, m.failed_stage() ? public_stage(*m.failed_stage()) : Stage::validation);
    if (out.outcome == O::applied)
      spdlog::info("[{}] consumer: cid={} applied in {:.3f} s", ctx_.config.id, out.cid, secs);
    else if (out.outcome != O::halted)
      spdlog::warn("[{}] consumer: cid={} not applied ({}): {}", ctx_.config.id, out.cid, core::to_string(out.outcome),
                   out.error);
    if (!ctx_.status) return;
    ctx_.status->reset_progress();
    ctx_.status->update([&](InstanceStatus& s) {
      const bool halted = out.outcome == O::uncertain || out.outcome == O::halted;
      s.phase = halted ? Phase::halted : Phase::idle;
      s.halted = halted;
      if (out.outcome == O::halted) return;
      s.last_duration_s = secs;
      const double now = ctx_.clock.now();
      if (out.outcome == O::applied) {
        ++s.requests_ok;
        s.last_cid = out.cid;
        const auto& v = m.identity().version;
        s.last_apply = SyncPoint{.cid = out.cid,
                                 .version = v.is_int64() ? v.get_int64() : v.is_uint64() ? static_cast<std::int64_t>(v.get_uint64()) : 0,
                                 .time = now,
                                 .size = applied_bytes_};
        s.quarantine.reset();
      } else if (out.outcome == O::cancelled) {
        s.error = LastError{.stage = Stage::cancelled, .message = "cancelled", .time = now};
      } else {
        ++s.requests_failed;
        s.last_error = std::string(m.failed_stage() ? core::to_string(*m.failed_stage()) : "") + ": " + out.error;
        s.error = LastError{.stage = m.failed_stage() ? public_stage(*m.failed_stage()) : Stage::validation,
                            .message = out.error,
                            .time = now};
        if (quarantine_) s.quarantine = quarantine_info(*quarantine_, out.cid);
      }
    });
  }

  static QuarantineInfo quarantine_info(const json::object& q, const std::string& cid) {
    QuarantineInfo info;
    info.cid = cid;
    if (const auto* st = q.if_contains("stage"); st && st->is_string()) {
      const std::string_view name = st->get_string();
      for (auto stage : {core::ConsumerStage::validation, core::ConsumerStage::signature,
                         core::ConsumerStage::r1fs_download, core::ConsumerStage::extract,
                         core::ConsumerStage::runtime_stop, core::ConsumerStage::commit})
        if (core::to_string(stage) == name) info.stage = public_stage(stage);
    }
    if (const auto* n = q.if_contains("failure_count")) info.failure_count = as_count(*n);
    if (const auto* t = q.if_contains("next_retry_after"); t && t->is_number()) info.until = t->to_number<double>();  // any number converts
    return info;
  }

  InstanceContext& ctx_;
  ConsumerState& state_;
  bool cancelled_ = false;
  std::uint64_t applied_bytes_ = 0;
  std::optional<json::object> quarantine_;
  std::string quarantine_name_;
  fs::path download_;
  std::optional<io::Sha256Digest> expected_sha256_;  // of download_, checked by the scan
  fs::path assembled_;                      // download_ when reassembled (ours to remove)
  std::optional<core::DeltaIndex> next_index_;  // the record's delta index: the next base's
  fs::path staging_;
  std::optional<io::ApplyPlan> plan_;
  std::chrono::steady_clock::time_point started_{}, stop_began_{};
  std::chrono::steady_clock::time_point fetch_began_{};  // apply duration: fetch -> applied
};

}  // namespace

boost::asio::awaitable<bool> recover_consumer(InstanceContext& ctx) {
  const auto& id = ctx.config.id;
  auto current = co_await ctx.io_pool.run([&] {
    remove_stale_incoming(ctx);  // a reassembly or a base install a kill cut
    return read_json(current_apply_path(ctx));
  });
  const bool halted = core::is_halted(current ? &*current : nullptr);

  auto journal = apply_journal_path(ctx);
  bool pending = co_await ctx.io_pool.run([&] { return io::apply_pending(journal); });
  if (pending) {
    // The volumes may hold a half-applied snapshot: the app must not run on it.
    auto stopped = co_await with_deadline(ctx.container.stop(), ctx.limits.step_timeout, "container stop");
    if (!stopped) spdlog::error("[{}] recovery: container stop not confirmed: {}", id, stopped.error().message);
    auto r = co_await ctx.io_pool.run([&] { return io::recover_apply(journal); });
    if (!r) spdlog::error("[{}] recovery of an interrupted apply failed: {}", id, r.error().message);
    else
      spdlog::info("[{}] recovery: interrupted apply {}", id,
                   *r == io::RecoveryAction::rolled_forward ? "completed (new snapshot)" : "rolled back (old snapshot)");
    // A halted instance stays stopped whatever recovery did: an operator decides.
    if (r && stopped && !halted && ctx.container.has_container()) {
      auto started = co_await with_deadline(ctx.container.start(), ctx.limits.step_timeout, "container start");
      if (!started) spdlog::warn("[{}] recovery: container start failed: {}", id, started.error().message);
    }
  }
  // A kill between carsync's stop and start (after the commit, say) left the app down
  // with nothing else to bring it back: start it, unless an operator must decide first.
  const bool marked = co_await ctx.io_pool.run([&] {
    std::error_code ec;
    return fs::exists(container_stopped_path(ctx), ec);
  });
  if (marked && !halted) {
    bool running = !ctx.container.has_container();
    if (!running) {
      auto started = co_await with_deadline(ctx.container.start(), ctx.limits.step_timeout, "container start");
      if (!started) spdlog::warn("[{}] recovery: container start failed: {}", id, started.error().message);
      else spdlog::info("[{}] recovery: restarted the container an interrupted apply had stopped", id);
      running = started.has_value();
    }
    if (running) co_await ctx.io_pool.run([&] { ::unlink(container_stopped_path(ctx).c_str()); });
  }
  // Staging of an apply that never committed is useless after a restart, and so are the
  // temps of any state write a kill cut between write and rename (".current_apply.json.<hex>.tmp",
  // ".apply_journal.json.<hex>.tmp", ".container_stopped.json.<hex>.tmp", ...): recovery above
  // has already dealt with the renamed files, a temp one was never in force, and one process
  // owns this state directory (data_dir lock), so no live writer's temp is removed.
  co_await ctx.io_pool.run([&] {
    std::error_code ec;
    fs::remove_all(ctx.state_dir / "staging", ec);
    for (fs::directory_iterator it(ctx.state_dir, ec), end; !ec && it != end; it.increment(ec)) {
      const auto name = it->path().filename().string();
      std::error_code ignored;
      if (name.starts_with('.') && name.ends_with(".tmp") && name.find(".json.") != std::string::npos &&
          it->is_regular_file(ignored))
        fs::remove(it->path(), ignored);
    }
  });
  if (halted)
    spdlog::error("[{}] instance is halted after an uncertain apply: container stays stopped; "
                  "clear with `carsync --config FILE unhalt {}`",
                  id, id);
  co_return halted;
}

Result<bool> clear_halt_state(const InstanceContext& ctx, double now) {
  auto current = read_json(current_apply_path(ctx));
  if (!current || !core::is_halted(&*current) || !current->is_object()) return false;
  auto w = io::write_json_file(current_apply_path(ctx), core::clear_halt(current->as_object(), now));
  if (!w) return w.error();
  return true;
}

Stage public_stage(core::ConsumerStage s) noexcept {
  switch (s) {
    case core::ConsumerStage::validation: return Stage::validation;
    case core::ConsumerStage::signature: return Stage::signature;
    case core::ConsumerStage::r1fs_download: return Stage::r1fs_download;
    case core::ConsumerStage::extract: return Stage::extract;
    case core::ConsumerStage::runtime_stop: return Stage::runtime_stop;
    case core::ConsumerStage::commit: return Stage::commit;
  }
  return Stage::none;
}

boost::asio::awaitable<ConsumerRunOutcome> run_consumer_once(InstanceContext& ctx, ConsumerState& state) {
  ConsumerDriver driver(ctx, state);
  co_return co_await driver.run();
}

}  // namespace carsync::runtime
