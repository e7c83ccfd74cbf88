// carsyncd: the daemon. Everything happens in carsync::Node; main owns the io_context and
// the signals: SIGTERM/SIGINT stop the node (two-phase), SIGHUP reloads the configuration.
#include "carsync/config.hpp"
#include "carsync/node.hpp"
#include "cmd/log_setup.hpp"
#include "cmd/progress_log.hpp"
#include "cmd/service_notify.hpp"
#include "cmd/signal_stream.hpp"
#include "cmd/status_summary.hpp"
#include "net/control_server.hpp"
#include "runtime/api_instances.hpp"
#include "runtime/control_api.hpp"
#include "runtime/status_page.hpp"
#include "runtime/task_group.hpp"

#include <boost/asio/io_context.hpp>
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <malloc.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <optional>
#include <set>

#ifndef CARSYNC_VERSION
#define CARSYNC_VERSION "unknown"
#endif

namespace {

// glibc gives each thread that allocates an arena of its own, up to 8 per CPU, and keeps what
// an arena freed for that arena. carsyncd's pool threads take turns building and scanning
// archives, so every arena grows to the largest apply it once served: a consumer's RSS rose
// 25 -> 39 MiB over six 200 MB applies (3,205 files) and from 14 to 111 MiB over the delta
// bench's 15,000-file applies, and stayed there. With two arenas it stays at 22-25 MiB over the
// same six applies (one: 21 MiB). An operator's MALLOC_ARENA_MAX or glibc.malloc.arena_max
// tunable wins.
void limit_malloc_arenas() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (std::getenv("MALLOC_ARENA_MAX") || (tunables && std::strstr(tunables, "glibc.malloc.arena_max"))) return;
  ::mallopt(M_ARENA_MAX, 2);
}

}  // namespace

int main(int argc, char** argv) {
  limit_malloc_arenas();  // before any thread starts
  CLI::App app{"carsyncd: replicates container application state between hosts"};
  std::string config_file;
  std::string log_level = "info";
  std::string log_format = "text";
  app.set_version_flag("--version", std::string("carsyncd ") + CARSYNC_VERSION);
  app.add_option("-c,--config", config_file, "node configuration (JSON)")->required();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--log-format", log_format, "text (for people) or json (one object per line, for log shippers)")
      ->check(CLI::IsMember({"text", "json"}));
  app.footer(
      "Signals: SIGTERM/SIGINT stop (running requests get limits.shutdown_grace_s), SIGHUP reloads the file.\n"
      "Exit codes: 0 stopped cleanly, 1 fatal error, 2 unusable configuration or data_dir owned by another process.");
  CLI11_PARSE(app, argc, argv);
  std::set<std::string> file_ids;

  // stderr, UTC, one line per event; journald priorities when stderr is the journal.
  carsync::cmd::setup_logging(log_format == "json" ? carsync::cmd::LogFormat::json : carsync::cmd::LogFormat::text,
                              spdlog::level::from_str(log_level));
  try {
    // Signals are blocked from here on, before any thread starts, and read from a signalfd:
    // one that arrives while the node starts waits in the kernel and is handled once the loop
    // runs (a graceful stop), never the default action.
    boost::asio::io_context ioc{1};
    carsync::cmd::SignalStream signals(ioc.get_executor(), {SIGTERM, SIGINT, SIGHUP});
    // The file's instances, then those added through the control API (kept in data_dir).
    std::optional<carsync::runtime::ApiInstances> catalog;
    auto with_api_instances = [&](carsync::NodeConfig cfg) {
      file_ids.clear();
      for (const auto& i : cfg.instances) file_ids.insert(i.id);
      for (const auto& id : catalog->merge_into(cfg))
        spdlog::warn("[{}] the configuration file defines this instance: the one added through the control API is ignored", id);
      return cfg;
    };
    auto file_cfg = carsync::load_node_config(config_file);
    const auto data_dir = file_cfg.data_dir;
    auto loaded = carsync::runtime::ApiInstances::load(data_dir / "api_instances.json");
    if (!loaded) throw carsync::ConfigError(loaded.error().message, "data_dir");
    catalog.emplace(std::move(*loaded));
    auto cfg = with_api_instances(std::move(file_cfg));
    const std::string control_socket = cfg.control_socket, metrics_listen = cfg.metrics_listen;
    const auto limits = cfg.limits;
    const auto image = cfg.system_volume_image;
    carsync::Node node(std::move(cfg), ioc.get_executor());
    // systemd: READY/RELOADING/STOPPING, STATUS= and watchdog keep-alives (no-ops elsewhere).
    carsync::cmd::ServiceNotifier service(ioc.get_executor());
    carsync::cmd::StatusSummary summary;
    auto summary_sub = node.subscribe([&](const carsync::StatusEvent& e) {
      summary.update(e);
      service.status(summary.text());
    });
    carsync::cmd::ProgressReporter progress(node);

    // The control API: its connections are tasks of one group, cancelled when the node has stopped.
    carsync::runtime::TaskGroup api_tasks(ioc.get_executor(), "control API");
    carsync::runtime::ControlApi api(node, *catalog, file_ids,
                                     {.data_dir = data_dir,
                                      .version = CARSYNC_VERSION,
                                      .system_volume_image = image,
                                      .change_timeout = 3 * limits.step_timeout + 4 * limits.store_timeout,
                                      .render_page = [](const carsync::NodeStatus& status) {
                                        const std::chrono::duration<double> now =
                                            std::chrono::system_clock::now().time_since_epoch();
                                        return carsync::runtime::render_status_page(status, now.count());
                                      },
                                      .metrics_text = [&node] { return node.metrics_text(); }});
    carsync::net::ControlServer server(
        ioc.get_executor(), [&api](carsync::net::ControlRequest r) { return api.handle(std::move(r)); },
        [&api_tasks](carsync::net::Task<void> t) { api_tasks.spawn(std::move(t)); });
    if (auto r = server.listen_unix(control_socket); !r) throw carsync::ConfigError(r.error().message, "control_socket");
    if (!metrics_listen.empty()) {
      auto port = server.listen_tcp(metrics_listen, true);
      if (!port) throw carsync::ConfigError(port.error().message, "metrics_listen");
      spdlog::info("read-only status and metrics on {} (port {})", metrics_listen, *port);
    }
    server.start();
    spdlog::info("control API on {}", control_socket);

    std::function<void(const boost::system::error_code&, int)> on_signal =
        [&](const boost::system::error_code& ec, int sig) {
          if (ec) return;
          if (sig == SIGHUP) {
            spdlog::info("SIGHUP: reloading {}", config_file);
            service.reloading();
            try {
              auto next = with_api_instances(carsync::load_node_config(config_file));
              api.set_file_ids(file_ids);
              // READY=1 again once the change has taken effect (or at once if refused).
              if (auto r = node.reconfigure(std::move(next), [&](carsync::Result<void>) { service.ready(); }); !r) {
                spdlog::error("reload refused: {}", r.error().message);
                service.ready();
              }
            } catch (const carsync::ConfigError& e) {
              spdlog::error("reload: {}: nothing changed", e.what());
              service.ready();
            }
            signals.async_wait(on_signal);
            return;
          }
          spdlog::info("received signal {}", sig);
          service.stopping();
          summary_sub.reset();  // the summary would overwrite "stopping"
          service.status("stopping");
          node.stop();
        };
    signals.async_wait(on_signal);
    node.on_stopped([&] {
      signals.cancel();
      api.stop();
      server.close();
      api_tasks.emit(boost::asio::cancellation_type::terminal);
      service.stop();
      progress.stop();
    });
    node.start();
    // READY=1: the control socket listens (above) and the node serves (instances prepare and
    // recover in the background).
    summary.reset(node.status());
    service.status(summary.text());
    service.ready();
    service.start_watchdog();
    ioc.run();
  } catch (const carsync::ConfigError& e) {
    std::cerr << "carsyncd: " << config_file << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    spdlog::critical("carsyncd: fatal: {}", e.what());
    return 1;
  }
  return 0;
}
