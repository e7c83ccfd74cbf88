#include "runtime/instance_supervisor.hpp"

#include "core/record_signature.hpp"
#include "core/sync_config.hpp"
#include "io/key_file.hpp"
#include "io/system_volume.hpp"
#include "runtime/deadline.hpp"
#include "runtime/provider_run.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>

namespace carsync::runtime {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

InstanceSupervisor::InstanceSupervisor(InstanceConfig config, NodeServices& services,
                                       std::unique_ptr<backend::ContainerRuntime> container,
                                       asio::any_io_executor ex)
    : config_(std::move(config)),
      services_(services),
      container_(std::move(container)),
      control_(config_.system_volume),
      history_(services.data_dir / "instances" / config_.id / "sync_history"),
      ctx_{.config = config_,
           .policy = services.policy,
           .node_id = services.node_id,
           .control = control_,
           .history = history_,
           .cas = services.cas,
           .kv = services.kv,
           .container = *container_,
           .io_pool = services.io_pool,
           .cpu_pool = services.cpu_pool,
           .compute = services.compute,
           .clock = services.clock,
           .scratch_dir = instance_dir() / "scratch",
           .state_dir = instance_dir() / "sync_history" / "state",
           .engine = services.engine,
           .limits = services.limits,
           .status = &status_,
           .metrics = services.metrics},
      consumer_(config_.sync.hsync_poll_interval),
      gate_timer_(ex),
      poll_timer_(ex),
      wake_(ex, 1),
      tasks_(ex, "instance " + config_.id) {
  status_.update([&](InstanceStatus& s) {
    s.id = config_.id;
    s.role = config_.sync.role;
    s.enabled = config_.sync.enabled && !config_.error;
    s.config_error = config_.error;
    s.phase = s.enabled ? Phase::starting : Phase::disabled;
    if (config_.error) s.error = LastError{.stage = Stage::config, .message = *config_.error, .time = services_.clock.now()};
  });
}

InstanceSupervisor::~InstanceSupervisor() = default;

fs::path InstanceSupervisor::instance_dir() const { return services_.data_dir / "instances" / config_.id; }

bool InstanceSupervisor::active() const noexcept {
  return provisioned_ && !keys_unusable_ && config_.sync.enabled && !config_.error;
}

// Blocking (key files, sent history): on the io pool. The configuration checked the trusted
// keys already; a key file is only read here, and a bad one disables the instance.
Result<void> InstanceSupervisor::load_keys() {
  if (config_.trust) {
    for (const auto& text : config_.trust->keys) {
      auto key = core::PublicKey::parse(text);
      if (!key) return make_error(errc::bad_config, "trust.keys: " + key.error().message, "trust.keys");
      ctx_.trusted_keys.push_back(*key);
    }
  }
  if (config_.signing) {
    for (const auto& file : config_.signing->key_files) {
      auto key = io::read_secret_key(file);
      if (!key) return make_error(errc::bad_config, "signing.key_file: " + key.error().message, "signing.key_file");
      ctx_.signing_keys.push_back(*key);
    }
    ctx_.last_signed_sequence = core::last_signed_sequence(history_.entries(core::HistoryDir::sent));
  }
  return {};
}

void InstanceSupervisor::set_disabled(Stage stage, const std::string& why) {
  status_.update([&](InstanceStatus& s) {
    s.enabled = false;
    s.phase = Phase::disabled;
    s.config_error = why;
    s.error = LastError{.stage = stage, .message = why, .time = services_.clock.now()};
  });
}

asio::awaitable<void> InstanceSupervisor::prepare() {
  const auto& id = config_.id;
  if (auto why = core::disabled_reason(config_); !why.empty()) {
    if (config_.error) spdlog::error("[{}] instance disabled: {}", id, why);
    else spdlog::info("[{}] sync disabled: {}", id, why);
  }

  // The system volume as the reference provisions it: a loop-mounted ext4 image (§2.1).
  if (config_.system_volume_image && !config_.error) {
    auto mounted = co_await services_.io_pool.run(
        [&] { return io::provision_image_volume(*config_.system_volume_image, id, config_.system_volume); });
    if (!mounted) {
      spdlog::error("[{}] system volume unavailable, sync disabled: {}", id, mounted.error().message);
      set_disabled(Stage::system_volume, "system volume unavailable: " + mounted.error().message);
      co_return;
    }
    image_mounted_ = true;
  }

  // The control directory is provisioned for every instance, whatever its SYNC block (§2.1).
  auto provisioned = co_await services_.io_pool.run([&] { return control_.provision(); });
  if (!provisioned) {
    spdlog::error("[{}] system volume unavailable, sync disabled: {}", id, provisioned.error().message);
    set_disabled(Stage::system_volume, "system volume unavailable: " + provisioned.error().message);
    co_return;
  }
  provisioned_ = true;

  auto recovered = co_await services_.io_pool.run([&] { return control_.recover_stale_processing(); });
  if (!recovered) spdlog::warn("[{}] stale .processing recovery: {}", id, recovered.error().message);
  else if (*recovered == io::RecoveryResult::recovered)
    spdlog::info("[{}] recovered an interrupted request: request.json will be processed again", id);

  // A blob uploaded by a run a kill cut short, before history named it, joins the history
  // so that the next publish retires it.
  auto adopted = co_await services_.io_pool.run([&] { return adopt_upload_in_flight(ctx_); });
  if (!adopted) spdlog::warn("[{}] upload in flight not recovered: {}", id, adopted.error().message);
  else if (*adopted) spdlog::info("[{}] recovery: an interrupted run's upload was added to the sent history for retirement", id);

  // An apply interrupted by a crash is finished or undone before anything else runs.
  halted_ = co_await recover_consumer(ctx_);

  // Archives of a build interrupted by a crash are useless: start with an empty scratch dir.
  const auto scratch = ctx_.scratch_dir;
  co_await services_.io_pool.run([&] {
    std::error_code ec;
    fs::remove_all(scratch, ec);
    fs::create_directories(scratch, ec);
  });

  if (active() && (config_.signing || config_.trust)) {
    auto keys = co_await services_.io_pool.run([&] { return load_keys(); });
    if (!keys) {
      spdlog::error("[{}] sync disabled: {}", id, keys.error().message);
      keys_unusable_ = true;
      set_disabled(Stage::config, keys.error().message);
    } else if (config_.signing) {
      std::string ids;
      for (const auto& k : ctx_.signing_keys) ids += (ids.empty() ? "" : ",") + k.public_key().id();
      spdlog::info("[{}] records are signed with key {} (last sequence {})", id, ids, ctx_.last_signed_sequence);
    } else {
      spdlog::info("[{}] records must be signed by one of {} trusted key(s), policy {}", id, ctx_.trusted_keys.size(),
                   to_string(config_.trust->policy));
    }
  }
  if (active())
    spdlog::info("[{}] sync enabled: role={} key={} control={}", id, to_string(config_.sync.role),
                 config_.sync.key, control_.control_dir().string());
  status_.update([&](InstanceStatus& s) {
    s.halted = halted_;
    s.phase = halted_ ? Phase::halted : active() ? Phase::idle : Phase::disabled;
  });
}

void InstanceSupervisor::start() {
  if (!active()) return;
  tasks_.spawn(run());
  // A remote store has no change notification: consumers tick every POLL_INTERVAL.
  if (config_.sync.role == Role::consumer && !services_.kv.supports_watch()) tasks_.spawn(poll_loop());
}

void InstanceSupervisor::poke() noexcept {
  if (wake_.is_open()) wake_.try_send(boost::system::error_code{});
}

bool InstanceSupervisor::reserve_publish() noexcept {
  bool expected = false;
  return publish_reserved_.compare_exchange_strong(expected, true);
}

void InstanceSupervisor::publish(std::string body, PublishCompletion done) {
  if (closing_ || !active()) {
    publish_reserved_ = false;
    if (done) done(make_error(errc::not_running, "instance \"" + config_.id + "\" is not running"));
    return;
  }
  pending_publish_.emplace(std::move(body), std::move(done));
  poke();
}

void InstanceSupervisor::unhalt(Completion done) {
  if (closing_ || !provisioned_) {
    if (done) done(make_error(errc::not_running, "instance \"" + config_.id + "\" is not running"));
    return;
  }
  pending_unhalt_ = std::move(done);
  // A halted instance's loop only waits, so the change never overlaps an apply; an instance
  // whose loop does not run (sync disabled) is cleared right away.
  if (active()) return poke();
  tasks_.spawn(clear_halt());
}

asio::awaitable<void> InstanceSupervisor::clear_halt() {
  auto done = std::move(*pending_unhalt_);
  pending_unhalt_.reset();
  auto r = co_await services_.io_pool.run([&] { return clear_halt_state(ctx_, services_.clock.now()); });
  if (r && *r) spdlog::info("[{}] halt cleared by the operator: the next record is applied", config_.id);
  halted_ = false;
  status_.update([](InstanceStatus& s) {
    s.halted = false;
    if (s.phase == Phase::halted) s.phase = Phase::idle;
  });
  if (done) done(r ? Result<void>{} : Result<void>{r.error()});
}

asio::awaitable<bool> InstanceSupervisor::applied_any() {
  co_return co_await services_.io_pool.run([&] { return history_.latest(core::HistoryDir::received).has_value(); });
}

asio::awaitable<void> InstanceSupervisor::run() {
  // Cancellation is an input of the machines, not an exception: every driver checks it.
  co_await asio::this_coro::throw_if_cancelled(false);
  co_await gate_start();
  poke();  // whatever arrived while carsyncd was down
  for (;;) {
    boost::system::error_code ec;
    co_await wake_.async_receive(asio::redirect_error(asio::use_awaitable, ec));
    if (ec || closing_ || cancelled_) break;
    try {
      if (pending_unhalt_) co_await clear_halt();
      if (gate_fired_) {
        gate_fired_ = false;
        co_await gate_timeout();
      }
      if (pending_publish_) co_await run_publish();
      if (cancelled_) break;
      if (config_.sync.role == Role::provider) {
        co_await run_provider_once(ctx_);
      } else if (config_.sync.role == Role::consumer) {
        auto out = co_await run_consumer_once(ctx_, consumer_);
        if (out.outcome == core::ConsumerOutcome::uncertain) halted_ = true;
        if (out.outcome == core::ConsumerOutcome::applied) gate_.on_applied();
      }
    } catch (const std::exception& e) {
      spdlog::critical("[{}] lifecycle aborted by a bug: {}", config_.id, e.what());
    }
    if (cancelled_) break;
  }
  // Whatever is still queued is answered, never dropped.
  if (pending_publish_) {
    auto done = std::move(pending_publish_->second);
    pending_publish_.reset();
    publish_reserved_ = false;
    if (done) done(make_error(errc::cancelled, "instance \"" + config_.id + "\" stopped before the publish ran"));
  }
  if (pending_unhalt_) {
    auto done = std::move(*pending_unhalt_);
    pending_unhalt_.reset();
    if (done) done(make_error(errc::cancelled, "instance \"" + config_.id + "\" stopped before the unhalt ran"));
  }
}

asio::awaitable<void> InstanceSupervisor::run_publish() {
  // No structured bindings in coroutines: g++ 12 frames them wrongly (a double free).
  std::string body = std::move(pending_publish_->first);
  PublishCompletion done = std::move(pending_publish_->second);
  pending_publish_.reset();
  auto out = co_await run_provider_once(ctx_, &body);
  publish_reserved_ = false;
  if (!done) co_return;
  if (out.succeeded)
    done(SyncPoint{.cid = out.cid, .version = out.version, .time = out.published_at, .size = out.archive_size});
  else if (out.cancelled)
    done(make_error(errc::cancelled, "publish cancelled"));
  else
    done(Error{.code = make_error_code(out.failed_stage == core::ProviderStage::validation ? errc::invalid_request
                                                                                          : errc::store_failure),
               .message = std::string(out.failed_stage ? core::to_string(*out.failed_stage) : "") + ": " + out.error});
}

asio::awaitable<void> InstanceSupervisor::poll_loop() {
  const auto period = seconds(config_.sync.poll_interval);
  while (!closing_) {
    poll_timer_.expires_after(period);
    boost::system::error_code ec;
    co_await poll_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec || closing_) co_return;
    poke();
  }
}

// The first-boot gate (SYNC.INITIAL_SYNC_TIMEOUT): decisions in core::InitialSyncGate.
asio::awaitable<void> InstanceSupervisor::gate_start() {
  const bool consumer = config_.sync.role == Role::consumer;
  bool applied_before = false;
  if (consumer) applied_before = co_await applied_any();
  const core::GateFacts facts{.consumer = config_.sync.role == Role::consumer,
                              .has_container = container_->has_container(),
                              .halted = halted_,
                              .applied_before = applied_before,
                              .timeout = config_.sync.initial_sync_timeout};
  if (gate_.on_start(facts) != core::GateAction::hold) co_return;
  const double timeout = *config_.sync.initial_sync_timeout;
  spdlog::info("[{}] initial sync gate: container held until the first snapshot is applied{}", config_.id,
               timeout > 0 ? fmt::format(" or {} s pass", timeout) : std::string());
  status_.update([](InstanceStatus& s) { s.phase = Phase::gated; });
  auto stopped = co_await with_deadline(container_->stop(), services_.limits.step_timeout, "container stop");
  if (!stopped) spdlog::warn("[{}] initial sync gate: stop not confirmed: {}", config_.id, stopped.error().message);
  if (gate_.timed()) {
    gate_timer_.expires_after(seconds(timeout));
    tasks_.spawn(gate_timer());
  }
}

asio::awaitable<void> InstanceSupervisor::gate_timer() {
  boost::system::error_code ec;
  co_await gate_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (ec || closing_) co_return;
  gate_fired_ = true;
  poke();  // the loop decides between lifecycles, never during an apply
}

asio::awaitable<void> InstanceSupervisor::gate_timeout() {
  const bool applied = co_await applied_any();
  if (gate_.on_timeout(applied, halted_) != core::GateAction::release) co_return;
  spdlog::warn("[{}] initial sync gate: no snapshot after {} s, starting the container on its current state",
               config_.id, *config_.sync.initial_sync_timeout);
  auto started = co_await with_deadline(container_->start(), services_.limits.step_timeout, "container start");
  if (!started) spdlog::warn("[{}] initial sync gate: start failed: {}", config_.id, started.error().message);
  status_.update([](InstanceStatus& s) {
    if (s.phase == Phase::gated) s.phase = Phase::idle;
  });
}

asio::awaitable<void> InstanceSupervisor::stop(std::chrono::steady_clock::duration grace, bool restore) {
  // Phase 1: no new work; waits end; the running request (if any) may finish.
  closing_ = true;
  wake_.close();
  gate_timer_.cancel();
  poll_timer_.cancel();
  const bool finished = co_await tasks_.wait_for(grace);
  if (!finished) {
    // Phase 2: cancellation, an input of the machines: they undo or finish, each clean-up
    // step bounded by cleanup_timeout.
    spdlog::warn("[{}] grace expired: cancelling the running request", config_.id);
    cancelled_ = true;
    tasks_.emit(asio::cancellation_type::terminal);
    const auto bound = 4 * services_.limits.cleanup_timeout + std::chrono::seconds(5);
    const bool cleaned_up = co_await tasks_.wait_for(bound);
    if (!cleaned_up)
      spdlog::critical("[{}] still running {} s after cancellation", config_.id,
                       std::chrono::duration_cast<std::chrono::seconds>(bound).count());
  }
  // Removal gives the app its container back; a shutdown keeps holding it (the gate resumes
  // at the next start).
  if (restore && gate_.holding()) {
    gate_.on_cancel();
    auto started = co_await with_deadline(container_->start(), services_.limits.cleanup_timeout, "container start");
    if (!started) spdlog::warn("[{}] container start after removal failed: {}", config_.id, started.error().message);
  }
}

asio::awaitable<void> InstanceSupervisor::release(bool delete_state) {
  if (image_mounted_) {
    auto r = co_await services_.io_pool.run(
        [&] { return io::release_image_volume(*config_.system_volume_image, config_.id, config_.system_volume); });
    if (!r) spdlog::warn("[{}] system volume image not released: {}", config_.id, r.error().message);
    else image_mounted_ = false;
  }
  if (delete_state) {
    const auto dir = instance_dir();
    co_await services_.io_pool.run([&] {
      std::error_code ec;
      fs::remove_all(dir, ec);
      if (ec) spdlog::warn("[{}] state not deleted: {}: {}", config_.id, dir.string(), ec.message());
    });
  }
}

}  // namespace carsync::runtime
