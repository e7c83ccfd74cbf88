#pragma once
// Drives core::ProviderLifecycle for one request: performs each action against the
// instance's stores, container and control directory, with a deadline on every await.
#include "core/provider_lifecycle.hpp"
#include "runtime/instance_context.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
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

// The public stage of a provider failure.
Stage public_stage(core::ProviderStage s) noexcept;

}  // namespace carsync::runtime
