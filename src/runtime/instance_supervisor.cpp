#include "runtime/instance_supervisor.hpp"

#include "runtime/provider_run.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <fmt/format.h>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>

namespace carsync::runtime {

namespace fs = std::filesystem;

namespace {
fs::path instance_dir(const NodeServices& s, const InstanceConfig& c) {
  return s.data_dir / "instances" / c.id;
}
}  // namespace

InstanceSupervisor::InstanceSupervisor(InstanceConfig config, NodeServices& services,
                                       std::unique_ptr<backend::ContainerRuntime> container,
                                       boost::asio::any_io_executor ex)
    : config_(std::move(config)),
      services_(services),
      container_(std::move(container)),
      control_(config_.system_volume),
      history_(instance_dir(services, config_) / "sync_history"),
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
           .clock = services.clock,
           .scratch_dir = instance_dir(services, config_) / "scratch",
           .state_dir = instance_dir(services, config_) / "sync_history" / "state",
           .engine = services.engine,
           .limits = services.limits,
           .status = &status_},
      consumer_(config_.sync.hsync_poll_interval),
      wake_(ex, 1) {
  status_.update([&](InstanceStatus& s) {
    s.id = config_.id;
    s.role = config_.sync.role;
    s.enabled = config_.sync.enabled && !config_.error;
    s.config_error = config_.error;
    s.phase = s.enabled ? "starting" : "disabled";
  });
}

bool InstanceSupervisor::active() const noexcept {
  return provisioned_ && config_.sync.enabled && !config_.error;
}

boost::asio::awaitable<void> InstanceSupervisor::prepare() {
  const auto& id = config_.id;
  if (config_.error) spdlog::error("[{}] instance disabled: {}", id, *config_.error);

  // The control directory is provisioned for every instance, whatever its SYNC block (§2.1).
  auto provisioned = co_await services_.io_pool.run([&] { return control_.provision(); });
  if (!provisioned) {
    spdlog::error("[{}] system volume unavailable, sync disabled: {}", id, provisioned.error().message);
    status_.update([&](InstanceStatus& s) {
      s.enabled = false;
      s.phase = "disabled";
      s.config_error = "system volume unavailable: " + provisioned.error().message;
    });
    co_return;
  }
  provisioned_ = true;

  auto recovered = co_await services_.io_pool.run([&] { return control_.recover_stale_processing(); });
  if (!recovered) spdlog::warn("[{}] stale .processing recovery: {}", id, recovered.error().message);
  else if (*recovered == io::RecoveryResult::recovered)
    spdlog::info("[{}] recovered an interrupted request: request.json will be processed again", id);

  // An apply interrupted by a crash is finished or undone before anything else runs.
  halted_ = co_await recover_consumer(ctx_);
  if (halted_) status_.update([](InstanceStatus& s) { s.phase = "halted"; });

  // Archives of a build interrupted by a crash are useless: start with an empty scratch dir.
  auto scratch = ctx_.scratch_dir;
  co_await services_.io_pool.run([&] {
    std::error_code ec;
    fs::remove_all(scratch, ec);
    fs::create_directories(scratch, ec);
  });

  if (active())
    spdlog::info("[{}] sync enabled: role={} key={} control={}", id, to_string(config_.sync.role),
                 config_.sync.key, control_.control_dir().string());
  if (!halted_) status_.update([&](InstanceStatus& s) { s.phase = active() ? "idle" : "disabled"; });
}

void InstanceSupervisor::poke() noexcept {
  if (wake_.is_open()) wake_.try_send(boost::system::error_code{});
}

void InstanceSupervisor::close() noexcept { wake_.close(); }

boost::asio::awaitable<void> InstanceSupervisor::run() {
  if (!active()) co_return;
  poke();  // whatever arrived while carsyncd was down
  for (;;) {
    auto [ec] = co_await wake_.async_receive(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec) co_return;  // closed for shutdown, or cancelled
    try {
      if (config_.sync.role == Role::provider) {
        co_await run_provider_once(ctx_);
      } else if (config_.sync.role == Role::consumer) {
        auto out = co_await run_consumer_once(ctx_, consumer_);
        if (out.outcome == core::ConsumerOutcome::uncertain) halted_ = true;
      }
    } catch (const boost::system::system_error& e) {
      if (e.code() == boost::asio::error::operation_aborted) co_return;  // terminal shutdown
      spdlog::critical("[{}] lifecycle aborted by a bug: {}", config_.id, e.what());
    } catch (const std::exception& e) {
      spdlog::critical("[{}] lifecycle aborted by a bug: {}", config_.id, e.what());
    }
  }
}

}  // namespace carsync::runtime

namespace carsync::runtime {

boost::asio::awaitable<void> InstanceSupervisor::initial_sync_gate() {
  const auto& timeout = config_.sync.initial_sync_timeout;
  if (!active() || halted_ || config_.sync.role != Role::consumer || !timeout) co_return;
  bool applied = co_await services_.io_pool.run([&] {
    auto latest = history_.latest(core::HistoryDir::received);
    return latest.has_value();
  });
  if (applied || !container_->has_container()) co_return;
  spdlog::info("[{}] initial sync gate: container held until the first snapshot is applied{}", config_.id,
               *timeout > 0 ? fmt::format(" or {} s pass", *timeout) : std::string());
  auto stopped = co_await container_->stop();
  if (!stopped) spdlog::warn("[{}] initial sync gate: stop not confirmed: {}", config_.id, stopped.error().message);
  if (*timeout <= 0) co_return;  // wait forever: the first apply's restart starts it
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor,
                                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(*timeout)));
  boost::system::error_code ec;
  co_await timer.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  if (ec) co_return;
  bool done = co_await services_.io_pool.run([&] { return history_.latest(core::HistoryDir::received).has_value(); });
  if (done) co_return;
  spdlog::warn("[{}] initial sync gate: no snapshot after {} s, starting the container on its current state",
               config_.id, *timeout);
  auto started = co_await container_->start();
  if (!started) spdlog::warn("[{}] initial sync gate: start failed: {}", config_.id, started.error().message);
}

}  // namespace carsync::runtime
