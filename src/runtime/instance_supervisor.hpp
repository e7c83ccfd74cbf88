#pragma once
// One instance, as an actor on the node's executor: it owns its control files, history,
// container handle, status and a task group with every coroutine it runs (the lifecycle
// loop, a remote consumer's poll timer, the first-boot gate's timer). Lifecycles run one at
// a time in the loop, so a publish, a gate release and an unhalt never overlap an apply.
#include "carsync/node.hpp"
#include "core/initial_sync_gate.hpp"
#include "runtime/consumer_run.hpp"
#include "runtime/instance_context.hpp"
#include "runtime/task_group.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

namespace carsync::runtime {

struct NodeServices {
  backend::ContentStore& cas;
  backend::KvStore& kv;
  BlockingPool& io_pool;
  BlockingPool& cpu_pool;
  io::ComputePool* compute = nullptr;  // parallel compression (the node's pool)
  const core::Clock& clock;
  core::MountPolicy policy;
  std::optional<std::string> node_id;
  std::filesystem::path data_dir;
  io::EngineKind engine;
  RuntimeLimits limits;
  NodeMetrics* metrics = nullptr;
};

class InstanceSupervisor {
 public:
  InstanceSupervisor(InstanceConfig config, NodeServices& services,
                     std::unique_ptr<backend::ContainerRuntime> container,
                     boost::asio::any_io_executor ex);
  ~InstanceSupervisor();

  const InstanceConfig& config() const noexcept { return config_; }
  bool active() const noexcept;  // enabled, valid and with a usable control directory
  io::ControlFiles& control() noexcept { return control_; }
  InstanceStatus status() const { return status_.snapshot(); }
  StatusCell& status_cell() noexcept { return status_; }
  std::filesystem::path instance_dir() const;

  // Start-up, before start(): provisions the system volume (image or directory) and the
  // control directory, recovers a stale .processing (§10.1, every role), finishes or undoes
  // an interrupted apply, and clears scratch leftovers.
  boost::asio::awaitable<void> prepare();
  // Spawns the lifecycle loop (and, for a remote consumer, its poll timer) in the group.
  void start();
  // Something may have changed: run the lifecycle soon. Pokes coalesce (bounded to one).
  void poke() noexcept;

  // A publish without a file. reserve_publish() is thread-safe and refuses a second one
  // while one is pending or running; publish() then queues it (on the executor).
  bool reserve_publish() noexcept;
  void publish(std::string body, PublishCompletion done);
  // Clears a durable halt (on the executor); the next record is applied again.
  void unhalt(Completion done);

  // Ends the instance: no new work; the running request gets `grace` to finish, then it is
  // cancelled (the machines undo or finish) and the clean-up gets its own bound. `restore`
  // (removal): a container the first-boot gate holds is started again.
  boost::asio::awaitable<void> stop(std::chrono::steady_clock::duration grace, bool restore);
  // After stop(): unmounts and detaches a system-volume image; deletes host-private state
  // when asked. History, state and the image's contents otherwise stay.
  boost::asio::awaitable<void> release(bool delete_state);

  Role role() const noexcept { return config_.sync.role; }
  const std::string& sync_key() const noexcept { return config_.sync.key; }
  bool drained() const noexcept { return tasks_.empty(); }

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<void> poll_loop();
  boost::asio::awaitable<void> gate_timer();
  boost::asio::awaitable<void> gate_start();
  boost::asio::awaitable<void> gate_timeout();
  boost::asio::awaitable<void> run_publish();
  boost::asio::awaitable<void> clear_halt();
  boost::asio::awaitable<bool> applied_any();
  void set_disabled(Stage stage, const std::string& why);
  Result<void> load_keys();

  InstanceConfig config_;
  NodeServices& services_;
  std::unique_ptr<backend::ContainerRuntime> container_;
  io::ControlFiles control_;
  io::HistoryStore history_;
  StatusCell status_;
  InstanceContext ctx_;
  bool provisioned_ = false;
  bool keys_unusable_ = false;  // a signing key file could not be read: sync stays off
  bool image_mounted_ = false;
  bool halted_ = false;
  bool closing_ = false;
  bool cancelled_ = false;
  ConsumerState consumer_;
  core::InitialSyncGate gate_;
  bool gate_fired_ = false;
  std::atomic<bool> publish_reserved_{false};
  std::optional<std::pair<std::string, PublishCompletion>> pending_publish_;
  std::optional<Completion> pending_unhalt_;
  boost::asio::steady_timer gate_timer_;
  boost::asio::steady_timer poll_timer_;
  boost::asio::experimental::channel<void(boost::system::error_code)> wake_;
  TaskGroup tasks_;
};

}  // namespace carsync::runtime
