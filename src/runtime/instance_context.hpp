#pragma once
// Everything one instance's lifecycles reach the world through. Owned by the instance's
// supervisor; tests build one from fakes.
#include "backend/container_runtime.hpp"
#include "backend/stores.hpp"
#include "carsync/config.hpp"
#include "carsync/status.hpp"
#include "core/clock.hpp"
#include "core/path_rules.hpp"
#include "io/control_files.hpp"
#include "io/file_engine.hpp"
#include "io/history_store.hpp"
#include "runtime/blocking_pool.hpp"

#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

namespace carsync::runtime {

// Status shared with Node::status() callers on other threads.
class StatusCell {
 public:
  template <class F>
  void update(F f) {
    std::lock_guard lock(mu_);
    f(status_);
  }
  InstanceStatus snapshot() const {
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  mutable std::mutex mu_;
  InstanceStatus status_;
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
  const core::Clock& clock;
  std::filesystem::path scratch_dir;  // host-private, per instance
  std::filesystem::path state_dir;    // host-private: current_apply.json, quarantine/, staging/, journal
  io::EngineKind engine = io::EngineKind::portable;
  RuntimeLimits limits;
  StatusCell* status = nullptr;
};

}  // namespace carsync::runtime
