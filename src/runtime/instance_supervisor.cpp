#include "runtime/instance_supervisor.hpp"

#include "runtime/provider_run.hpp"

#include <boost/asio/as_tuple.hpp>
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
           .engine = services.engine,
           .limits = services.limits,
           .status = &status_},
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
  status_.update([&](InstanceStatus& s) { s.phase = active() ? "idle" : "disabled"; });
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
      if (config_.sync.role == Role::provider) co_await run_provider_once(ctx_);
    } catch (const boost::system::system_error& e) {
      if (e.code() == boost::asio::error::operation_aborted) co_return;  // terminal shutdown
      spdlog::critical("[{}] lifecycle aborted by a bug: {}", config_.id, e.what());
    } catch (const std::exception& e) {
      spdlog::critical("[{}] lifecycle aborted by a bug: {}", config_.id, e.what());
    }
  }
}

}  // namespace carsync::runtime
