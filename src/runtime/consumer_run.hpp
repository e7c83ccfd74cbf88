#pragma once
// Drives core::ConsumerLifecycle for the record currently published under the instance's
// key: fetch, dedupe, quarantine, prepare, stop, crash-safe commit, finalise, restart.
#include "core/consumer_lifecycle.hpp"
#include "core/signature_error.hpp"
#include "core/hsync_gate.hpp"
#include "runtime/instance_context.hpp"

#include <boost/asio/awaitable.hpp>

#include <filesystem>
#include <optional>

namespace carsync::runtime {

// What survives between ticks of one consumer.
struct ConsumerState {
  explicit ConsumerState(double hsync_interval) : hsync(hsync_interval) {}
  core::HsyncGate hsync;
  std::optional<core::ApplyModeResolution> last_resolution;
};

struct ConsumerRunOutcome {
  core::ConsumerOutcome outcome = core::ConsumerOutcome::no_record;
  std::string cid;
  std::string error;
  bool restart_safe = true;
  // With trusted keys: why the record's signature did not verify (unset: it did, or no
  // check ran). Refused under policy enforce, applied under warn.
  std::optional<core::signature_errc> signature_error;
};

// Host-private files of the consumer.
std::filesystem::path current_apply_path(const InstanceContext& ctx);
std::filesystem::path apply_journal_path(const InstanceContext& ctx);

// Start-up: finishes or undoes an apply a crash interrupted (§12 item 13) before anything
// else may touch the volumes. Returns whether the instance is halted (leave stopped).
boost::asio::awaitable<bool> recover_consumer(InstanceContext& ctx);

// Blocking (run it on a pool): clears the durable halt in current_apply.json
// (core::clear_halt). Returns whether the instance was halted.
Result<bool> clear_halt_state(const InstanceContext& ctx, double now);

// One tick: fetch (with hsync gating for remote stores), decide, and apply if needed.
// Cancellation of the awaiting coroutine is an input of the machine (see
// core/consumer_lifecycle.hpp); the steps after it run with limits.cleanup_timeout as their
// deadline. The caller sets throw_if_cancelled(false).
boost::asio::awaitable<ConsumerRunOutcome> run_consumer_once(InstanceContext& ctx, ConsumerState& state);

// The public stage of a consumer failure.
Stage public_stage(core::ConsumerStage s) noexcept;

}  // namespace carsync::runtime
