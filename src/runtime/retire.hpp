#pragma once
// §9.3: retire the previous CID of a history directory after a successful operation.
#include "core/history.hpp"
#include "runtime/instance_context.hpp"

#include <boost/asio/awaitable.hpp>

namespace carsync::runtime {

// Deletes every un-retired earlier CID but the current one (core::retirement_targets, newest
// first: one that a crash or a failed delete left behind goes with the next pass) with the
// role's flags and records each outcome in its history file; likewise the delta indexes and
// packs the newest record no longer names (core::delta_retirement_targets). Never fails the
// operation that called it. Then prunes the directory (prune_history).
boost::asio::awaitable<void> retire_previous(InstanceContext& ctx, core::HistoryDir dir,
                                             bool unpin_remote, bool cleanup_local_files);

// Keeps the history directory bounded: limits.history_keep retired entries (core::prunable).
boost::asio::awaitable<void> prune_history(InstanceContext& ctx, core::HistoryDir dir);

}  // namespace carsync::runtime
