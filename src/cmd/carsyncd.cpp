// carsyncd: the daemon. Everything happens in carsync::Node; this only reads the flags.
#include "carsync/config.hpp"
#include "carsync/node.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"carsyncd: replicates container application state between hosts"};
  std::string config_file;
  std::string log_level = "info";
  app.add_option("-c,--config", config_file, "node configuration (JSON)")->required();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  CLI11_PARSE(app, argc, argv);

  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  spdlog::set_level(spdlog::level::from_str(log_level));
  try {
    carsync::Node node(carsync::load_node_config(config_file));
    node.run();
  } catch (const carsync::ConfigError& e) {
    std::cerr << "carsyncd: " << config_file << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    spdlog::critical("carsyncd: fatal: {}", e.what());
    return 1;
  }
  return 0;
}
