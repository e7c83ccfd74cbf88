// carsync-devnode: serves the CStore and R1FS HTTP APIs of an edge node from the embedded
// stores under a data directory, until SIGINT/SIGTERM (see devnode.hpp). A development and
// test tool: carsyncd and the library never link it.
// Exit codes: 0 stopped by a signal, 1 could not serve, 2 bad usage. Once both listeners
// are bound it logs "devnode ready: cstore=URL r1fs=URL" (scripts and tests wait for it).
#include "carsync/config.hpp"
#include "tools/devnode/devnode.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>

namespace {

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;

int report(int code, std::string_view message) {
  std::cerr << "carsync-devnode: " << message << '\n';
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Emulate an edge node's CStore and R1FS APIs over the embedded stores"};
  std::string data_dir, config, log_level = "info";
  carsync::net::DevnodeOptions options;
  app.add_option("--data-dir", data_dir, "Data directory (stores at <dir>/cas and <dir>/kv)");
  app.add_option("--config", config, "Node configuration file (supplies data_dir when --data-dir is absent)");
  app.add_option("--listen", options.listen, "Listen address")->capture_default_str();
  app.add_option("--cstore-port", options.cstore_port, "CStore API port (0: any free port)")->capture_default_str();
  app.add_option("--r1fs-port", options.r1fs_port, "R1FS API port (0: any free port)")->capture_default_str();
  app.add_option("--faults", options.faults,
                 "Fault injection: ROUTE:ACTION[:WHEN],... (see src/tools/devnode/devnode.hpp)");
  app.footer(
      "Besides the CStore and R1FS routes, GET /devnode/stats on either port answers that service's\n"
      "traffic counters as JSON (requests, responses, cut_responses, file_responses, body_bytes_sent,\n"
      "file_bytes_sent, header_bytes_sent, request_body_bytes_received); it counts nothing of its own\n"
      "and --faults rules never match it.");
  app.add_option("--log-level", log_level, "trace, debug (one line per request), info, warn, error")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return report(kUsage, e.what());
  }

  if (!data_dir.empty()) {
    options.data_dir = data_dir;
  } else if (!config.empty()) {
    try {
      options.data_dir = carsync::load_node_config(config).data_dir;
    } catch (const std::exception& e) {  // ConfigError: its text names the file and the problem
      return report(kUsage, e.what());
    }
  } else {
    return report(kUsage, "--data-dir or --config is required");
  }
  auto level = spdlog::level::from_str(log_level);
  if (level == spdlog::level::off && log_level != "off") return report(kUsage, "unknown --log-level " + log_level);
  spdlog::set_level(level);

  boost::asio::io_context io;
  auto node = carsync::net::Devnode::create(io.get_executor(), options);
  if (!node) return report(node.error().code == carsync::errc::bad_config ? kUsage : kFailed, node.error().message);
  auto& server = **node;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (!ec) server.stop();
  });
  boost::asio::co_spawn(io, server.run(), [&](std::exception_ptr e) {
    signals.cancel();
    if (e) std::rethrow_exception(e);
  });
  spdlog::info("devnode ready: cstore={} r1fs={}", server.cstore_url(), server.r1fs_url());
  io.run();
  return kOk;
}
