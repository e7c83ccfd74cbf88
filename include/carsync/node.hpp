#pragma once
// carsync::Node: the sync lifecycles of a set of instances in one process, on one event loop
// with bounded worker pools. A node supervisor embeds it; carsyncd is a thin main over it.
//
//   boost::asio::io_context ioc;
//   carsync::Node node(carsync::load_node_config("node.json"), ioc.get_executor());
//   auto sub = node.subscribe([](const carsync::StatusEvent& e) { ... });   // on ioc's thread
//   node.start();
//   node.add_instance(instance);                  // any time, from any thread
//   ...
//   node.stop();                                  // two-phase: grace, then cancellation
//   ioc.run();                                    // returns once the node has stopped
//
// Threading: every public member is thread-safe. Callbacks (completions, subscriptions) run
// on the node's executor, which must not run handlers concurrently (an io_context run by one
// thread, or a strand). Blocking work runs on the node's own worker pools.
#include "carsync/config.hpp"
#include "carsync/error.hpp"
#include "carsync/status.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace carsync {

// Completion of an asynchronous change, called once on the node's executor.
using Completion = std::function<void(Result<void>)>;
using PublishCompletion = std::function<void(Result<SyncPoint>)>;

struct RemoveOptions {
  // Also delete the instance's host-private state (history, apply state, quarantine).
  // By default it stays on disk so that adding the instance again resumes where it was.
  bool delete_state = false;
};

// Unsubscribes when destroyed (or reset()); movable. Once reset() has returned the callback
// is not running and is never called again: from another thread, reset() waits for a call
// in progress (so that call must not wait for the resetting thread); a callback may reset
// its own subscription.
class Subscription {
 public:
  Subscription() = default;
  Subscription(Subscription&&) noexcept = default;
  Subscription& operator=(Subscription&&) noexcept = default;
  ~Subscription();
  void reset();
  explicit operator bool() const noexcept { return static_cast<bool>(cancel_); }

 private:
  friend class Node;
  explicit Subscription(std::function<void()> cancel) : cancel_(std::move(cancel)) {}
  std::function<void()> cancel_;
};

class Node {
 public:
  // Validates the node configuration (a bad one throws ConfigError), takes the exclusive
  // lock on data_dir (held by another process: ConfigError naming the holder's pid), and
  // prepares data_dir. Invalid instances are kept, disabled, with their reason in status().
  //
  // Without an executor the node runs its own io_context: run() on the calling thread, or
  // start() on a thread of its own.
  explicit Node(NodeConfig config);
  Node(NodeConfig config, boost::asio::any_io_executor executor);
  // Stops the node and waits until it has stopped (the executor must still be running, or
  // the node must never have been started).
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Starts serving: returns at once. Own io_context: runs it on a new thread.
  void start();
  // Own io_context only: serves on the calling thread until stopped.
  void run();
  // Two-phase shutdown: no new work, waiting work ends at once, running requests get
  // limits.shutdown_grace to finish (containers carsync stopped are started again), then
  // everything is cancelled and cleaned up within a small bound. Returns at once.
  void stop();
  // Blocks until the node has stopped (not on the executor's thread). With a timeout:
  // whether it stopped in time.
  void wait();
  bool wait_for(std::chrono::milliseconds timeout);
  // Called once on the executor when the node has stopped (at once if it already has).
  void on_stopped(std::function<void()> callback);

  // Membership while running (or before start). Validation is immediate and the same as
  // the file's: an instance whose config carries an error is refused with errc::bad_config
  // and Error::field naming the key; the others are untouched. The change itself happens on
  // the executor; `done` reports when it has taken effect.
  Result<void> add_instance(InstanceConfig instance, Completion done = {});
  // Replaces an instance's configuration: its running request (if any) finishes first.
  Result<void> update_instance(InstanceConfig instance, Completion done = {});
  // Removing an instance mid-request finishes or rolls back its work within a bound, leaves
  // its container as it was before carsync touched it and never a half-applied volume.
  Result<void> remove_instance(std::string_view id, RemoveOptions options = {}, Completion done = {});
  // Re-reads a whole configuration (SIGHUP in carsyncd): instances are added, updated and
  // removed to match. Node-level settings that cannot change while running (data_dir,
  // backend, limits) are kept and a warning is logged.
  Result<void> reconfigure(NodeConfig config, Completion done = {});

  // A publish without a file: `request_json` is what request.json would hold, validated the
  // same way (errc::invalid_request with the reason). One at a time per instance (errc::busy).
  Result<void> publish(std::string_view id, std::string_view request_json, PublishCompletion done = {});
  // Clears a durable halt after an uncertain apply (the operator has checked the volumes);
  // the instance runs again and its container is started by the next apply.
  Result<void> unhalt(std::string_view id, Completion done = {});

  NodeStatus status() const;
  // One instance's status, without copying every other's; nullopt: no such instance.
  std::optional<InstanceStatus> status(std::string_view id) const;
  // Every status change from now on, in generation order, on the executor.
  [[nodiscard]] Subscription subscribe(std::function<void(const StatusEvent&)> callback);

  // The node's metrics in the Prometheus text exposition format 0.0.4 (what carsyncd serves
  // at GET /metrics): counters, histograms and gauges named carsync_*, listed in README.md
  // ("Metrics"). Per-instance series carry an `instance` label and go away with the instance.
  std::string metrics_text() const;

  boost::asio::any_io_executor get_executor() const noexcept;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace carsync
