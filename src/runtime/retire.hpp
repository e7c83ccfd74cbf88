#pragma once
// §9.3: retire the previous CID of a history directory after a successful operation.
#include "core/history.hpp"
#include "runtime/instance_context.hpp"

#include <boost/asio/awaitable.hpp>

namespace carsync::runtime {

// Deletes the newest un-retired earlier CID (not the current one) with the role's flags and
// records the outcome in its history file, then prunes the directory. Never fails the
// operation that called it.
boost::asio::awaitable<void> retire_previous(InstanceContext& ctx, core::HistoryDir dir,
                                             bool unpin_remote, bool cleanup_local_files);

// Keeps the history directory bounded: limits.history_keep retired entries (core::prunable).
boost::asio::awaitable<void> prune_history(InstanceContext& ctx, core::HistoryDir dir);

}  // namespace carsync::runtime
