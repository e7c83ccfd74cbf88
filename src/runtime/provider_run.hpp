#pragma once
// Drives core::ProviderLifecycle for one request: performs each action against the
// instance's stores, container and control directory, with a deadline on every await.
#include "core/provider_lifecycle.hpp"
#include "runtime/instance_context.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace carsync::runtime {

struct ProviderRunOutcome {
  bool claimed = false;     // false: nothing was pending (or the claim rename failed)
  bool succeeded = false;
  bool cancelled = false;   // ended by cancellation before the acknowledgement
  std::string cid;
  std::int64_t version = 0;
  double published_at = 0;
  std::uint64_t archive_size = 0;
  std::optional<core::ProviderStage> failed_stage;
  std::string error;
};

// One claim attempt and, if a request was claimed, its whole lifecycle. With `api_body` (a
// publish through Node::publish) there is no claim: that body is the request, and the
// control directory is not touched.
//
// Cancellation of the awaiting coroutine is fed to the machine as an input (see
// core/provider_lifecycle.hpp); the clean-up steps that follow run with
// limits.cleanup_timeout as their deadline. The caller sets throw_if_cancelled(false).
boost::asio::awaitable<ProviderRunOutcome> run_provider_once(InstanceContext& ctx,
                                                             const std::string* api_body = nullptr);

// Between a successful upload and the sent-history entry naming its CID, the provider keeps
// a durable record of that CID here. A kill in between would otherwise leave the blob
// referenced by nothing carsync keeps, never retired.
std::filesystem::path upload_in_flight_path(const InstanceContext& ctx);
// Start-up: turns a left-over record into a sent-history entry ("recovered_upload": true)
// unless history already names its CID, so the next publish retires it; removes the
// record. True when an entry was added.
Result<bool> adopt_upload_in_flight(InstanceContext& ctx);

// The public stage of a provider failure.
Stage public_stage(core::ProviderStage s) noexcept;

}  // namespace carsync::runtime
