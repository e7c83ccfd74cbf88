#pragma once
// One instance: owns its control files, history, container handle and status, and runs
// its lifecycle whenever something pokes it (an inotify event, a KV change, a rescan).
#include "runtime/consumer_run.hpp"
#include "runtime/instance_context.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/channel.hpp>

#include <memory>

namespace carsync::runtime {

struct NodeServices {
  backend::ContentStore& cas;
  backend::KvStore& kv;
  BlockingPool& io_pool;
  BlockingPool& cpu_pool;
  const core::Clock& clock;
  core::MountPolicy policy;
  std::optional<std::string> node_id;
  std::filesystem::path data_dir;
  io::EngineKind engine;
  RuntimeLimits limits;
};

class InstanceSupervisor {
 public:
  InstanceSupervisor(InstanceConfig config, NodeServices& services,
                     std::unique_ptr<backend::ContainerRuntime> container,
                     boost::asio::any_io_executor ex);

  const InstanceConfig& config() const noexcept { return config_; }
  bool active() const noexcept;  // enabled, valid and with a usable control directory
  io::ControlFiles& control() noexcept { return control_; }
  InstanceStatus status() const { return status_.snapshot(); }

  // Start-up, before run(): provisions the control directory, recovers a stale
  // .processing (§10.1, every role) and clears scratch leftovers.
  boost::asio::awaitable<void> prepare();
  // Something may have changed: run the lifecycle soon. Pokes coalesce (bounded to one).
  void poke() noexcept;
  // Waits for pokes and runs the lifecycle until close() or cancellation.
  boost::asio::awaitable<void> run();
  // The first-boot gate (SYNC.INITIAL_SYNC_TIMEOUT): keeps a fresh consumer's container
  // stopped until its first snapshot is applied or the timeout passes.
  boost::asio::awaitable<void> initial_sync_gate();
  // No more pokes: run() returns once the current lifecycle step finishes.
  void close() noexcept;

  Role role() const noexcept { return config_.sync.role; }
  const std::string& sync_key() const noexcept { return config_.sync.key; }

 private:
  InstanceConfig config_;
  NodeServices& services_;
  std::unique_ptr<backend::ContainerRuntime> container_;
  io::ControlFiles control_;
  io::HistoryStore history_;
  StatusCell status_;
  InstanceContext ctx_;
  bool provisioned_ = false;
  bool halted_ = false;
  ConsumerState consumer_;
  boost::asio::experimental::channel<void(boost::system::error_code)> wake_;
};

}  // namespace carsync::runtime
