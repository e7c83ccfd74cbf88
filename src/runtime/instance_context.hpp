#pragma once
// Everything one instance's lifecycles reach the world through. Owned by the instance's
// supervisor; tests build one from fakes.
#include "backend/container_runtime.hpp"
#include "backend/stores.hpp"
#include "carsync/config.hpp"
#include "carsync/status.hpp"
#include "core/clock.hpp"
#include "core/path_rules.hpp"
#include "core/signing_key.hpp"
#include "io/compute_pool.hpp"
#include "io/control_files.hpp"
#include "io/file_engine.hpp"
#include "io/history_store.hpp"
#include "runtime/blocking_pool.hpp"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace carsync::runtime {

class NodeMetrics;

// Status shared with Node::status() callers on other threads. Updates happen on the
// instance's executor and are announced to the node (which stamps a generation and tells
// subscribers); the progress counters are bumped from worker threads and only read.
class StatusCell {
 public:
  using Notify = std::function<void(InstanceStatus&)>;

  void on_change(Notify notify) { notify_ = std::move(notify); }

  template <class F>
  void update(F f) {
    InstanceStatus copy;
    {
      std::lock_guard lock(mu_);
      f(status_);
      if (!notify_) return;
      copy = status_;
      copy.progress = current_progress();
    }
    notify_(copy);  // stamps copy.generation
    std::lock_guard lock(mu_);
    status_.generation = copy.generation;
  }
  InstanceStatus snapshot() const {
    std::lock_guard lock(mu_);
    InstanceStatus s = status_;
    s.progress = current_progress();
    return s;
  }

  // A new step: its phase, announced only when it changes, with the progress counters reset.
  void enter(Phase phase) {
    {
      std::lock_guard lock(mu_);
      if (status_.phase == phase) return;
    }
    reset_progress();
    update([&](InstanceStatus& s) { s.phase = phase; });
  }

  // The current step's bytes; total 0 = unknown. Reset at each phase change.
  std::atomic<std::uint64_t>& progress_done() noexcept { return progress_done_; }
  void reset_progress(std::uint64_t total = 0) noexcept {
    progress_done_.store(0, std::memory_order_relaxed);
    progress_total_.store(total, std::memory_order_relaxed);
  }

 private:
  Progress current_progress() const noexcept {
    return {progress_done_.load(std::memory_order_relaxed), progress_total_.load(std::memory_order_relaxed)};
  }

  mutable std::mutex mu_;
  InstanceStatus status_;
  Notify notify_;
  std::atomic<std::uint64_t> progress_done_{0};
  std::atomic<std::uint64_t> progress_total_{0};
};

struct InstanceContext {
  const InstanceConfig& config;
  core::MountPolicy policy;
  std::optional<std::string> node_id;
  io::ControlFiles& control;
  io::HistoryStore& history;
  backend::ContentStore& cas;
  backend::KvStore& kv;
  backend::ContainerRuntime& container;
  BlockingPool& io_pool;   // short filesystem jobs
  BlockingPool& cpu_pool;  // archive build / extraction
  io::ComputePool* compute = nullptr;  // the node's compression threads; nullptr: a build compresses inline
  const core::Clock& clock;
  std::filesystem::path scratch_dir;  // host-private, per instance
  std::filesystem::path state_dir;    // host-private: current_apply.json, quarantine/, staging/, journal
  io::EngineKind engine = io::EngineKind::portable;
  RuntimeLimits limits;
  StatusCell* status = nullptr;
  NodeMetrics* metrics = nullptr;  // the node's Prometheus series (none in unit tests)
  // Provider "signing": the keys, read when the instance starts, and the last sequence it
  // signed (from the sent history at start, then kept here across requests).
  std::vector<core::SecretKey> signing_keys;
  std::int64_t last_signed_sequence = 0;
  // Consumer "trust": the keys records must be signed with (none: records are not checked).
  std::vector<core::PublicKey> trusted_keys;
};

}  // namespace carsync::runtime
