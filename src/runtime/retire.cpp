#include "runtime/retire.hpp"

#include "runtime/deadline.hpp"

#include <spdlog/spdlog.h>

#include <map>

namespace carsync::runtime {

namespace {

struct Outcome {
  std::optional<double> deleted_at;
  std::optional<std::string> error;
};

boost::asio::awaitable<void> retire_all(InstanceContext& ctx, core::HistoryDir dir, bool unpin_remote,
                                        bool cleanup_local_files) {
  auto entries = co_await ctx.io_pool.run([&] { return ctx.history.entries(dir); });
  const auto targets = core::retirement_targets(entries);
  // Entries sharing a CID (a republished snapshot) share one delete.
  std::map<std::string, Outcome> done;
  for (const auto idx : targets) {
    const auto& body = entries[idx].body;
    const auto* cid = body.if_contains("cid");
    const auto* version = body.if_contains("version");
    if (!cid || !cid->is_string() || cid->as_string().empty()) continue;
    const std::string target(cid->as_string());
    const std::int64_t ver = version && version->is_int64() ? version->as_int64() : 0;

    auto it = done.find(target);
    if (it == done.end()) {
      auto deleted = co_await with_deadline(ctx.cas.delete_file(target, unpin_remote, cleanup_local_files),
                                            ctx.limits.store_timeout, "r1fs delete_file");
      Outcome o;
      if (deleted) {
        o.deleted_at = ctx.clock.now();
        spdlog::info("[{}] retired previous cid={} ({})", ctx.config.id, target, core::to_string(dir));
      } else {
        o.error = deleted.error().message;
        spdlog::warn("[{}] retirement of cid={} failed: {}", ctx.config.id, target, *o.error);
      }
      it = done.emplace(target, std::move(o)).first;
    }
    const Outcome& o = it->second;
    auto rec = co_await ctx.io_pool.run([&] {
      return ctx.history.record_deletion(dir, ver, target, o.deleted_at, o.deleted_at.has_value(), o.error);
    });
    if (!rec) spdlog::warn("[{}] could not record retirement of cid={}: {}", ctx.config.id, target,
                           rec.error().message);
  }
}

// Delta transfer: the indexes and packs no longer named by the newest record
// (core::delta_retirement_targets), deleted with the role's flags.
boost::asio::awaitable<void> retire_delta(InstanceContext& ctx, core::HistoryDir dir, bool unpin_remote,
                                          bool cleanup_local_files) {
  auto entries = co_await ctx.io_pool.run([&] { return ctx.history.entries(dir); });
  const auto targets = core::delta_retirement_targets(entries);
  for (const auto& t : targets) {
    auto deleted = co_await with_deadline(ctx.cas.delete_file(t.cid, unpin_remote, cleanup_local_files),
                                          ctx.limits.store_timeout, "r1fs delete_file");
    std::optional<double> at;
    std::optional<std::string> error;
    if (deleted) {
      at = ctx.clock.now();
      spdlog::info("[{}] retired delta {} cid={} ({})", ctx.config.id, t.part, t.cid, core::to_string(dir));
    } else {
      error = deleted.error().message;
      spdlog::warn("[{}] retirement of delta {} cid={} failed: {}", ctx.config.id, t.part, t.cid, *error);
    }
    const auto& name = entries[t.entry].file_name;
    auto rec = co_await ctx.io_pool.run(
        [&] { return ctx.history.record_delta_deletion(dir, name, t.part, at, error); });
    if (!rec) spdlog::warn("[{}] could not record retirement of delta {} cid={}: {}", ctx.config.id, t.part, t.cid,
                           rec.error().message);
  }
}

}  // namespace

boost::asio::awaitable<void> retire_previous(InstanceContext& ctx, core::HistoryDir dir,
                                             bool unpin_remote, bool cleanup_local_files) {
  co_await retire_all(ctx, dir, unpin_remote, cleanup_local_files);
  co_await retire_delta(ctx, dir, unpin_remote, cleanup_local_files);
  co_await prune_history(ctx, dir);
}

boost::asio::awaitable<void> prune_history(InstanceContext& ctx, core::HistoryDir dir) {
  auto pruned = co_await ctx.io_pool.run([&] { return ctx.history.prune(dir, ctx.limits.history_keep); });
  if (!pruned) spdlog::warn("[{}] could not prune {} history: {}", ctx.config.id, core::to_string(dir),
                            pruned.error().message);
  else if (*pruned) spdlog::debug("[{}] pruned {} {} history entries", ctx.config.id, *pruned, core::to_string(dir));
}

}  // namespace carsync::runtime
