#pragma once
// carsync::Node: every configured instance's sync lifecycles in one process, on one event
// loop with bounded worker pools. A node supervisor embeds it; carsyncd is a thin main.
#include "carsync/config.hpp"
#include "carsync/status.hpp"

#include <memory>

namespace carsync {

class Node {
 public:
  // Validates the configuration (a bad node config throws ConfigError; a bad instance is
  // kept disabled with its reason in status()) and prepares data_dir.
  explicit Node(NodeConfig config);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Runs until stop() or, when handle_signals, SIGTERM/SIGINT. Shutdown is two-phase:
  // waiting work is cancelled at once, running requests get limits.shutdown_grace to
  // finish (containers stopped for capture are started again), then everything is cancelled.
  void run(bool handle_signals = true);
  // Thread-safe; returns immediately.
  void stop();
  // Thread-safe snapshot.
  NodeStatus status() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace carsync
