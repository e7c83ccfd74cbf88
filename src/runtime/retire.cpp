#include "runtime/retire.hpp"

#include "runtime/deadline.hpp"

#include <spdlog/spdlog.h>

namespace carsync::runtime {

namespace {

boost::asio::awaitable<void> retire_one(InstanceContext& ctx, core::HistoryDir dir, bool unpin_remote,
                                        bool cleanup_local_files) {
  auto entries = co_await ctx.io_pool.run([&] { return ctx.history.entries(dir); });
  auto idx = core::retirement_target(entries);
  if (!idx) co_return;
  const auto& body = entries[*idx].body;
  const auto* cid = body.if_contains("cid");
  const auto* version = body.if_contains("version");
  if (!cid || !cid->is_string() || cid->as_string().empty()) co_return;
  std::string target(cid->as_string());
  std::int64_t ver = version && version->is_int64() ? version->as_int64() : 0;

  auto deleted = co_await with_deadline(ctx.cas.delete_file(target, unpin_remote, cleanup_local_files),
                                        ctx.limits.store_timeout, "r1fs delete_file");
  std::optional<double> deleted_at;
  std::optional<std::string> error;
  if (deleted) deleted_at = ctx.clock.now();
  else error = deleted.error().message;
  if (deleted)
    spdlog::info("[{}] retired previous cid={} ({})", ctx.config.id, target, core::to_string(dir));
  else
    spdlog::warn("[{}] retirement of cid={} failed: {}", ctx.config.id, target, *error);

  auto rec = co_await ctx.io_pool.run([&] {
    return ctx.history.record_deletion(dir, ver, target, deleted_at, deleted.has_value(), error);
  });
  if (!rec) spdlog::warn("[{}] could not record retirement of cid={}: {}", ctx.config.id, target,
                         rec.error().message);
}

}  // namespace

boost::asio::awaitable<void> retire_previous(InstanceContext& ctx, core::HistoryDir dir,
                                             bool unpin_remote, bool cleanup_local_files) {
  co_await retire_one(ctx, dir, unpin_remote, cleanup_local_files);
  co_await prune_history(ctx, dir);
}

boost::asio::awaitable<void> prune_history(InstanceContext& ctx, core::HistoryDir dir) {
  auto pruned = co_await ctx.io_pool.run([&] { return ctx.history.prune(dir, ctx.limits.history_keep); });
  if (!pruned) spdlog::warn("[{}] could not prune {} history: {}", ctx.config.id, core::to_string(dir),
                            pruned.error().message);
  else if (*pruned) spdlog::debug("[{}] pruned {} {} history entries", ctx.config.id, *pruned, core::to_string(dir));
}

}  // namespace carsync::runtime
