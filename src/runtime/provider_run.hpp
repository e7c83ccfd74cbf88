#pragma once
// Drives core::ProviderLifecycle for one request: performs each action against the
// instance's stores, container and control directory, with a deadline on every await.
#include "core/provider_lifecycle.hpp"
#include "runtime/instance_context.hpp"

#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>

namespace carsync::runtime {

struct ProviderRunOutcome {
  bool claimed = false;     // false: nothing was pending (or the claim rename failed)
  bool succeeded = false;
  std::string cid;
  std::optional<core::ProviderStage> failed_stage;
  std::string error;
};

// One claim attempt and, if a request was claimed, its whole lifecycle.
boost::asio::awaitable<ProviderRunOutcome> run_provider_once(InstanceContext& ctx);

}  // namespace carsync::runtime
