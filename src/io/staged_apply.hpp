#pragma once
// The crash-safe commit of a consumer apply (spec §8.5, §8.8, §10.2, §10.3 items 8-11,
// §12 items 9, 11, 13, 19-21), driven by a write-ahead journal in host-private state:
//
//  Phase A "prepared" (reversible; nothing existing in a volume is modified): the journal
//  lists every temp name and every directory that will be created, then each file is
//  written to `.<basename>.carsync-<applyid>.tmp` beside its target (hard-linked from the
//  staged blob when on the same filesystem, else copied) with its final owner (the volume
//  root's), mode and mtime; missing directories are created (root's owner, 0755). Mirror
//  removals are computed now and journaled. Any failure undoes all of it.
//
//  Durability point, then the journal is rewritten as "committed": the commit point.
//
//  Phase B (roll forward only, idempotent): rename every temp over its target, apply the
//  mirror removals, set planned directory metadata (deepest first), make it durable,
//  remove the journal.
//
// recover_apply() finishes or undoes whatever a crash interrupted, from the journal alone.
#include "carsync/config.hpp"
#include "core/error.hpp"
#include "io/apply_plan.hpp"

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::io {

enum class ApplyDurability {
  syncfs,      // one syncfs(2) per volume at each durability point
  fsync_each,  // fsync of every temp file and every touched directory
};

// Test hook, called before each mutating step with the step's name and the index of the
// operation among those of the same step; an error injects a failure at that point.
// Steps: "journal", "mkdir", "file", "sync", "commit" (phase A); "rename", "remove",
// "dir_meta" (phase B, also during recovery); "undo_file", "undo_mkdir" (rollback, also
// during recovery).
using ApplyFaultHook = std::function<Result<void>(std::string_view step, std::size_t index)>;

struct ApplyOptions {
  ApplySemantics semantics = ApplySemantics::overlay;
  ApplyDurability durability = ApplyDurability::syncfs;
  std::string cid;
  ApplyFaultHook fault;
  // Bytes of file content placed so far, for status readers on other threads (nullptr: not counted).
  std::atomic<std::uint64_t>* progress = nullptr;
};

struct ApplyOutcome {
  bool success = false;
  bool restart_safe = true;
  std::string state;  // applied | failed_rolled_back | uncertain
  // Container paths of the planned entries in plan order (directories without '/', §8.6);
  // empty when the volumes were left as before.
  std::vector<std::string> extracted_paths;
  // Why the apply failed; after a success, a note about a journal that could not be
  // removed (recovery then finds an already complete apply and just removes it).
  std::string error;
  double durable_seconds = 0;  // time spent in fsync/syncfs
};

// Applies `plan` to its volumes. Must only run while the container is stopped, and after
// recover_apply() found nothing pending (a pending journal is refused, nothing touched).
// `cancel` is polled before each file of phase A; once committed, the apply completes.
// Outcomes: applied; failed_rolled_back (volumes exactly as before, restart safe);
// uncertain (an undo or roll-forward step failed: the journal is kept so recover_apply
// can finish the job; not restart safe).
ApplyOutcome commit_plan(const ApplyPlan& plan, const std::filesystem::path& journal, const ApplyOptions& opts,
                         const std::atomic<bool>* cancel = nullptr);

enum class RecoveryAction { none, rolled_back, rolled_forward };

// Run before the container starts: no journal -> none; "prepared" -> delete the temps and
// the directories the apply created; "committed" -> finish the renames, removals and
// directory metadata. The journal is removed once that succeeded; on error it stays, and
// calling again is always safe (also after a crash during recovery).
Result<RecoveryAction> recover_apply(const std::filesystem::path& journal, const ApplyFaultHook& fault = {});

// True when a journal exists: an apply is in flight or awaits recovery.
bool apply_pending(const std::filesystem::path& journal);

}  // namespace carsync::io
