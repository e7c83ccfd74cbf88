#include "io/staged_apply.hpp"

#include "io/apply_journal.hpp"
#include "support/temp_dir.hpp"
#include "support/tree_snapshot.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <limits.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
using carsync::test::read_file;
using carsync::test::snapshot_tree;
using carsync::test::TempDir;
using carsync::test::TreeSnapshot;
using carsync::test::write_file;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uid_t kOwner = 1234;
constexpr gid_t kGroup = 1234;
constexpr const char* kBind = "/app/data";

struct stat lstat_of(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) throw std::runtime_error("lstat failed: " + p.string());
  return st;
}

bool present(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

ApplyOptions options(ApplySemantics semantics, ApplyDurability durability = ApplyDurability::syncfs,
                     ApplyFaultHook fault = {}) {
  ApplyOptions o;
  o.semantics = semantics;
  o.durability = durability;
  o.fault = std::move(fault);
  return o;
}

ApplyOptions failing(ApplyFaultHook fault) {
  return options(ApplySemantics::overlay, ApplyDurability::syncfs, std::move(fault));
}

// Paths whose name is one of the commit's temp names.
std::vector<std::string> temp_names(const TreeSnapshot& tree) {
  std::vector<std::string> out;
  for (const auto& [rel, _] : tree) {
    const auto name = fs::path(rel).filename().string();
    if (name.find(".carsync-") != std::string::npos && name.ends_with(".tmp")) out.push_back(rel);
  }
  return out;
}

// Owner and mtime of every path, for the checks the tree snapshot does not cover.
std::map<std::string, std::tuple<uid_t, gid_t, std::int64_t, long>> owners_and_mtimes(const fs::path& root) {
  std::map<std::string, std::tuple<uid_t, gid_t, std::int64_t, long>> out;
  for (const auto& [rel, _] : snapshot_tree(root)) {
    const auto st = lstat_of(root / rel);
    out[rel] = {st.st_uid, st.st_gid, st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
  }
  return out;
}

// What the archive scan would have produced: entries plus the staged blobs behind them.
struct Spec {
  struct Entry {
    std::string rel;
    bool dir = false;
    mode_t mode = 0;
    std::string bytes;
    std::int64_t mtime_sec = 0;
    std::int64_t mtime_nsec = 0;
  };
  std::vector<Entry> entries;
  std::vector<std::string> mirror_scopes;

  Spec& dir(std::string rel, mode_t mode = 0755) {
    entries.push_back({std::move(rel), true, mode, {}, 1'600'000'000 + static_cast<std::int64_t>(entries.size()), 250});
    return *this;
  }
  Spec& file(std::string rel, std::string bytes, mode_t mode = 0644) {
    entries.push_back({std::move(rel), false, mode, std::move(bytes),
                       1'650'000'000 + static_cast<std::int64_t>(entries.size()), 123'456'789});
    return *this;
  }

  // Writes the blobs into `staging` (created fresh) and returns the plan for volume `root`.
  ApplyPlan plan(const fs::path& root, const fs::path& staging) const {
    // Fresh: an earlier apply hard-linked its blobs into the volume, so rewriting them in
    // place would change the files it applied.
    fs::remove_all(staging);
    fs::create_directories(staging);
    ApplyPlan p;
    p.volumes.push_back({root.string(), kBind});
    p.staging_dir = staging;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const auto& e = entries[i];
      PlannedEntry pe;
      pe.container_path = e.rel.empty() ? kBind : std::string(kBind) + "/" + e.rel;
      pe.rel = e.rel;
      pe.is_dir = e.dir;
      pe.mode = e.mode;
      pe.mtime_sec = e.mtime_sec;
      pe.mtime_nsec = e.mtime_nsec;
      if (!e.dir) {
        char name[32];
        std::snprintf(name, sizeof name, "%06zu.blob", i);
        pe.blob = name;
        pe.size = e.bytes.size();
        write_file(staging / name, e.bytes);
        p.total_bytes += pe.size;
      }
      p.entries.push_back(std::move(pe));
    }
    for (const auto& s : mirror_scopes) p.mirror_scopes.push_back({0, s});
    return p;
  }
};

class StagedApply : public ::testing::Test {
 protected:
  // A volume root owned by the app user, as the runtime provisions it.
  fs::path make_volume(const std::string& name) {
    const auto root = tmp / name;
    fs::create_directories(root);
    EXPECT_EQ(::chown(root.c_str(), kOwner, kGroup), 0);
    EXPECT_EQ(::chmod(root.c_str(), 0755), 0);
    return root;
  }

  ApplyOutcome apply(const Spec& spec, ApplyOptions opts = {}, const fs::path& root = {}) {
    const auto& r = root.empty() ? vol : root;
    const auto plan = spec.plan(r, tmp / ("staging-" + r.filename().string()));
    return commit_plan(plan, journal, opts);
  }

  TempDir tmp;
  fs::path vol = make_volume("vol");
  fs::path journal = tmp / "state/sync_history/state/apply_journal.json";
};

Result<void> fail_at(std::string_view step, std::size_t index, std::string_view want_step, std::size_t want_index) {
  if (step == want_step && index == want_index)
    return make_error(errc::io_failure, "injected failure at " + std::string(step));
  return {};
}

TEST_F(StagedApply, RoundTripWritesBytesModesMtimesAndRootOwner) {
  Spec spec;
  spec.dir("", 0775).dir("sub").dir("sub/deep", 0775)
      .file("top.txt", "top bytes", 0664)
      .file("sub/deep/weights.bin", std::string(100'000, '\x7f'), 0644)
      .file("sub/note.txt", "", 0666);

  const auto out = apply(spec);

  ASSERT_TRUE(out.success) << out.error;
  EXPECT_TRUE(out.restart_safe);
  EXPECT_EQ(out.state, "applied");
  EXPECT_THAT(out.extracted_paths, ElementsAre("/app/data", "/app/data/sub", "/app/data/sub/deep",
                                               "/app/data/top.txt", "/app/data/sub/deep/weights.bin",
                                               "/app/data/sub/note.txt"));
  EXPECT_EQ(read_file(vol / "top.txt"), "top bytes");
  EXPECT_EQ(read_file(vol / "sub/deep/weights.bin"), std::string(100'000, '\x7f'));
  EXPECT_EQ(read_file(vol / "sub/note.txt"), "");

  for (const auto& e : spec.entries) {
    const auto st = lstat_of(vol / e.rel);
    SCOPED_TRACE(e.rel);
    EXPECT_EQ(e.dir, S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, e.mode);
    EXPECT_EQ(st.st_uid, kOwner);
    EXPECT_EQ(st.st_gid, kGroup);
    EXPECT_EQ(st.st_mtim.tv_sec, e.mtime_sec);
    EXPECT_EQ(st.st_mtim.tv_nsec, e.mtime_nsec);
  }
  EXPECT_FALSE(apply_pending(journal));
  EXPECT_THAT(temp_names(snapshot_tree(vol)), ::testing::IsEmpty());
}

TEST_F(StagedApply, PreexistingParentsThatAreNotMembersKeepModeAndOwner) {
  fs::create_directories(vol / "private");
  ASSERT_EQ(::chmod((vol / "private").c_str(), 0700), 0);  // owned by root (0:0)
  Spec spec;
  spec.file("private/nested/file.txt", "x");

  const auto out = apply(spec);

  ASSERT_TRUE(out.success) << out.error;
  const auto priv = lstat_of(vol / "private");
  EXPECT_EQ(priv.st_mode & 07777, 0700u);
  EXPECT_EQ(priv.st_uid, 0u);
  const auto created = lstat_of(vol / "private/nested");
  EXPECT_EQ(created.st_mode & 07777, 0755u);
  EXPECT_EQ(created.st_uid, kOwner);
  EXPECT_EQ(created.st_gid, kGroup);
  EXPECT_EQ(read_file(vol / "private/nested/file.txt"), "x");
}

// Mirror and overlay on the same starting tree: extra entries in scope, a symlink in scope
// pointing outside, and a file outside the scope.
class StagedApplyScopes : public StagedApply {
 protected:
  void SetUp() override {
    write_file(vol / "data/keep.txt", "old keep");
    write_file(vol / "data/stale.txt", "stale");
    write_file(vol / "data/olddir/a/b.txt", "old nested");
    write_file(tmp / "outside/secret.txt", "secret");
    fs::create_symlink(tmp / "outside/secret.txt", vol / "data/link");
    fs::create_directory_symlink(tmp / "outside", vol / "data/dirlink");
    write_file(vol / "other/untouched.txt", "other");
    spec.dir("data").file("data/keep.txt", "new keep").dir("data/newdir").file("data/newdir/n.txt", "n");
    spec.mirror_scopes = {"data"};
  }
  Spec spec;
};

TEST_F(StagedApplyScopes, OverlayKeepsFilesNotInThePlan) {
  const auto out = apply(spec, options(ApplySemantics::overlay));

  ASSERT_TRUE(out.success) << out.error;
  EXPECT_EQ(read_file(vol / "data/keep.txt"), "new keep");
  EXPECT_EQ(read_file(vol / "data/newdir/n.txt"), "n");
  EXPECT_EQ(read_file(vol / "data/stale.txt"), "stale");
  EXPECT_EQ(read_file(vol / "data/olddir/a/b.txt"), "old nested");
  EXPECT_TRUE(fs::is_symlink(vol / "data/link"));
  EXPECT_EQ(read_file(vol / "other/untouched.txt"), "other");
}

TEST_F(StagedApplyScopes, MirrorRemovesOnlyWhatTheScopeNoLongerHas) {
  const auto out = apply(spec, options(ApplySemantics::mirror));

  ASSERT_TRUE(out.success) << out.error;
  const auto tree = snapshot_tree(vol);
  std::vector<std::string> paths;
  for (const auto& [rel, _] : tree) paths.push_back(rel);
  EXPECT_THAT(paths, ElementsAre(".", "data", "data/keep.txt", "data/newdir", "data/newdir/n.txt", "other",
                                 "other/untouched.txt"));
  EXPECT_EQ(read_file(vol / "data/keep.txt"), "new keep");
  // The symlinks were removed, not followed.
  EXPECT_EQ(read_file(tmp / "outside/secret.txt"), "secret");
  EXPECT_TRUE(present(tmp / "outside"));
}

TEST_F(StagedApply, J125_FailureOnSecondFileLeavesVolumeAsBefore) {
  write_file(vol / "a.txt", "old a");
  const auto before = snapshot_tree(vol);
  Spec spec;
  spec.file("a.txt", "new a").file("b.txt", "new b");

  const auto out = apply(spec, failing([](auto step, auto i) { return fail_at(step, i, "file", 1); }));

  EXPECT_FALSE(out.success);
  EXPECT_TRUE(out.restart_safe);
  EXPECT_EQ(out.state, "failed_rolled_back");
  EXPECT_THAT(out.error, HasSubstr("injected failure at file"));
  EXPECT_TRUE(out.extracted_paths.empty());
  EXPECT_EQ(read_file(vol / "a.txt"), "old a");
  EXPECT_FALSE(present(vol / "b.txt"));
  EXPECT_EQ(snapshot_tree(vol), before);  // no temps either
  EXPECT_FALSE(apply_pending(journal));
}

TEST_F(StagedApply, J126_ExistingDirectoryModeUnchangedAfterFailure) {
  fs::create_directories(vol / "keep");
  ASSERT_EQ(::chmod((vol / "keep").c_str(), 0700), 0);
  Spec spec;
  spec.dir("keep").file("keep/new.txt", "new");

  const auto out = apply(spec, failing([](auto step, auto i) { return fail_at(step, i, "commit", 0); }));

  EXPECT_EQ(out.state, "failed_rolled_back");
  EXPECT_TRUE(out.restart_safe);
  EXPECT_EQ(lstat_of(vol / "keep").st_mode & 07777, 0700u);
  EXPECT_FALSE(present(vol / "keep/new.txt"));
  EXPECT_THAT(temp_names(snapshot_tree(vol)), ::testing::IsEmpty());
}

TEST_F(StagedApply, J127_CreatedParentsRemovedAfterFailure) {
  const auto before = snapshot_tree(vol);
  Spec spec;
  spec.file("p1/p2/file.txt", "f");

  const auto out = apply(spec, failing([](auto step, auto i) { return fail_at(step, i, "sync", 0); }));

  EXPECT_EQ(out.state, "failed_rolled_back");
  EXPECT_FALSE(present(vol / "p1"));
  EXPECT_EQ(snapshot_tree(vol), before);
}

TEST_F(StagedApply, J128_FailedUndoIsUncertainUntilRecoveryCleansUp) {
  write_file(vol / "a.txt", "old a");
  const auto before = snapshot_tree(vol);
  Spec spec;
  spec.file("a.txt", "new a").file("dir/b.txt", "new b");
  ApplyOptions opts;
  opts.fault = [](std::string_view step, std::size_t i) -> Result<void> {
    if (auto r = fail_at(step, i, "file", 1); !r) return r;
    return fail_at(step, i, "undo_file", 0);
  };

  const auto out = apply(spec, opts);

  EXPECT_FALSE(out.success);
  EXPECT_FALSE(out.restart_safe);
  EXPECT_EQ(out.state, "uncertain");
  EXPECT_THAT(out.error, HasSubstr("rollback incomplete"));
  EXPECT_TRUE(apply_pending(journal));
  EXPECT_EQ(read_file(vol / "a.txt"), "old a");  // an existing file is never touched before commit
  EXPECT_THAT(temp_names(snapshot_tree(vol)), ::testing::SizeIs(1));

  // A new apply refuses to run over the pending one.
  const auto refused = apply(spec);
  EXPECT_EQ(refused.state, "uncertain");
  EXPECT_THAT(refused.error, HasSubstr("awaits recovery"));

  auto rec = recover_apply(journal);
  ASSERT_TRUE(rec) << rec.error().message;
  EXPECT_EQ(*rec, RecoveryAction::rolled_back);
  EXPECT_EQ(snapshot_tree(vol), before);
  EXPECT_FALSE(apply_pending(journal));
}

TEST_F(StagedApply, SymlinkAtTargetIsReplacedAndItsTargetUntouched) {
  write_file(tmp / "outside/secret.txt", "secret");
  fs::create_symlink(tmp / "outside/secret.txt", vol / "link.txt");
  Spec spec;
  spec.file("link.txt", "regular now");

  const auto out = apply(spec);

  ASSERT_TRUE(out.success) << out.error;
  EXPECT_TRUE(S_ISREG(lstat_of(vol / "link.txt").st_mode));
  EXPECT_EQ(read_file(vol / "link.txt"), "regular now");
  EXPECT_EQ(read_file(tmp / "outside/secret.txt"), "secret");
  EXPECT_EQ(lstat_of(tmp / "outside/secret.txt").st_uid, 0u);
}

TEST_F(StagedApply, SymlinkedParentIsRefusedBeforeAnythingIsWritten) {
  fs::create_directories(tmp / "outside");
  fs::create_directory_symlink(tmp / "outside", vol / "escape");
  const auto before = snapshot_tree(vol);
  Spec spec;
  spec.file("escape/planted.txt", "x");

  const auto out = apply(spec);

  EXPECT_EQ(out.state, "failed_rolled_back");
  EXPECT_TRUE(out.restart_safe);
  EXPECT_THAT(out.error, HasSubstr("symlink"));
  EXPECT_FALSE(present(tmp / "outside/planted.txt"));
  EXPECT_EQ(snapshot_tree(vol), before);
  EXPECT_FALSE(apply_pending(journal));
}

TEST_F(StagedApply, FileOverDirectoryIsRefusedBeforeAnythingIsWritten) {
  write_file(vol / "d/inner.txt", "inner");
  const auto before = snapshot_tree(vol);
  Spec spec;
  spec.file("new.txt", "n").file("d", "file now");

  const auto out = apply(spec);

  EXPECT_EQ(out.state, "failed_rolled_back");
  EXPECT_EQ(out.error, "cannot replace directory with file: /app/data/d");
  EXPECT_EQ(snapshot_tree(vol), before);
}

TEST_F(StagedApply, BothDurabilityModesProduceIdenticalTrees) {
  Spec spec;
  spec.dir("").dir("a", 0775).dir("a/b").file("a/b/one", "1", 0664).file("two", std::string(70'000, 't'));
  const auto other = make_volume("vol2");
  for (const auto& root : {vol, other}) write_file(root / "a/old.txt", "old");

  const auto by_syncfs = apply(spec, options(ApplySemantics::overlay, ApplyDurability::syncfs), vol);
  const auto by_fsync = apply(spec, options(ApplySemantics::overlay, ApplyDurability::fsync_each), other);

  ASSERT_TRUE(by_syncfs.success) << by_syncfs.error;
  ASSERT_TRUE(by_fsync.success) << by_fsync.error;
  EXPECT_EQ(by_syncfs.extracted_paths, by_fsync.extracted_paths);
  EXPECT_EQ(snapshot_tree(vol), snapshot_tree(other));
  auto meta = owners_and_mtimes(vol), other_meta = owners_and_mtimes(other);
  meta.erase("a/old.txt");  // written by the test at slightly different times
  other_meta.erase("a/old.txt");
  EXPECT_EQ(meta, other_meta);
  EXPECT_GT(by_fsync.durable_seconds, 0.0);
}

TEST_F(StagedApply, FailureAfterCommitIsUncertainAndRecoveryRollsForward) {
  write_file(vol / "a.txt", "old a");
  write_file(vol / "gone.txt", "gone");
  Spec spec;
  spec.dir("").dir("d").file("a.txt", "new a").file("d/b.txt", "new b").file("c.txt", "new c");
  spec.mirror_scopes = {""};
  const auto reference = make_volume("reference");
  write_file(reference / "a.txt", "old a");
  write_file(reference / "gone.txt", "gone");
  ASSERT_TRUE(apply(spec, options(ApplySemantics::mirror), reference).success);

  const auto out = apply(spec, options(ApplySemantics::mirror, ApplyDurability::syncfs,
                                   [](auto step, auto i) { return fail_at(step, i, "rename", 1); }));

  EXPECT_FALSE(out.success);
  EXPECT_FALSE(out.restart_safe);
  EXPECT_EQ(out.state, "uncertain");
  EXPECT_THAT(out.error, HasSubstr("recovery will finish it"));
  EXPECT_EQ(out.extracted_paths.size(), spec.entries.size());
  EXPECT_TRUE(apply_pending(journal));

  auto rec = recover_apply(journal);
  ASSERT_TRUE(rec) << rec.error().message;
  EXPECT_EQ(*rec, RecoveryAction::rolled_forward);
  EXPECT_EQ(snapshot_tree(vol), snapshot_tree(reference));
  EXPECT_EQ(owners_and_mtimes(vol), owners_and_mtimes(reference));
  EXPECT_FALSE(apply_pending(journal));
  auto again = recover_apply(journal);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, RecoveryAction::none);
}

TEST_F(StagedApply, CancelBeforeCommitRollsBack) {
  const auto before = snapshot_tree(vol);
  Spec spec;
  spec.file("x/y.txt", "y");
  std::atomic<bool> cancel{true};

  const auto out = commit_plan(spec.plan(vol, tmp / "staging"), journal, {}, &cancel);

  EXPECT_EQ(out.state, "failed_rolled_back");
  EXPECT_THAT(out.error, HasSubstr("cancelled"));
  EXPECT_EQ(snapshot_tree(vol), before);
}

TEST_F(StagedApply, ABlobUsedTwiceIsCopiedSoTargetsNeverShareAnInode) {
  Spec spec;
  spec.file("one.txt", "same").file("two.txt", "same");
  auto plan = spec.plan(vol, tmp / "staging");
  plan.entries[1].blob = plan.entries[0].blob;

  const auto out = commit_plan(plan, journal, {});

  ASSERT_TRUE(out.success) << out.error;
  EXPECT_EQ(read_file(vol / "two.txt"), "same");
  EXPECT_NE(lstat_of(vol / "one.txt").st_ino, lstat_of(vol / "two.txt").st_ino);
}

TEST_F(StagedApply, StagingOnAnotherFilesystemIsCopied) {
  if (!present("/dev/shm") || lstat_of("/dev/shm").st_dev == lstat_of(vol).st_dev)
    GTEST_SKIP() << "needs /dev/shm on a filesystem other than the test volume";
  char tmpl[] = "/dev/shm/carsync-staging.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const fs::path staging = tmpl;
  Spec spec;
  spec.file("copied.bin", std::string(300'000, 'c'), 0640 | 0644);

  const auto out = commit_plan(spec.plan(vol, staging), journal, {});
  fs::remove_all(staging);

  ASSERT_TRUE(out.success) << out.error;
  EXPECT_EQ(read_file(vol / "copied.bin"), std::string(300'000, 'c'));
  const auto st = lstat_of(vol / "copied.bin");
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(st.st_uid, kOwner);
}

// A read-only volume: nothing can be written, so nothing was — the undo must see that (unlink
// answers EROFS even for names that do not exist) and roll back cleanly instead of halting
// the instance as `uncertain`.
TEST_F(StagedApply, ReadOnlyVolumeRollsBackCleanly) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a read-only bind mount";
  write_file(vol / "keep.txt", "old");
  ASSERT_EQ(::mount(vol.c_str(), vol.c_str(), nullptr, MS_BIND, nullptr), 0) << std::strerror(errno);
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{vol};
  ASSERT_EQ(::mount(nullptr, vol.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr), 0)
      << std::strerror(errno);
  const auto before = snapshot_tree(vol);
  for (const char* target : {"new.txt", "p1/p2/new.txt", "keep.txt"}) {
    SCOPED_TRACE(target);
    Spec spec;
    spec.file(target, "new bytes");
    const auto out = apply(spec);
    EXPECT_FALSE(out.success);
    EXPECT_TRUE(out.restart_safe) << out.error;
    EXPECT_EQ(out.state, "failed_rolled_back") << out.error;
    EXPECT_THAT(out.error, HasSubstr("Read-only file system"));
    EXPECT_EQ(snapshot_tree(vol), before);
    EXPECT_FALSE(apply_pending(journal));
  }
}

// 25 nested 200-character names: about 5,000 bytes, beyond PATH_MAX (4,096). A provider
// can publish such a tree; the commit, its rollback and recovery must all walk it in pieces.
std::string deep_rel(char fill) {
  std::string rel;
  for (int i = 0; i < 25; ++i) {
    if (!rel.empty()) rel += '/';
    rel += std::string(199, fill) + static_cast<char>('a' + i);
  }
  return rel;
}

TEST_F(StagedApply, MemberPathBeyondPathMaxCommitsRollsBackAndRecovers) {
  const auto deep = deep_rel('x');
  ASSERT_GT(deep.size(), std::size_t{PATH_MAX});
  Spec spec;
  spec.file(deep + "/f.txt", "deep bytes").file("top.txt", "top");
  const auto out = apply(spec);
  ASSERT_TRUE(out.success) << out.error;
  auto tree = snapshot_tree(vol);
  EXPECT_EQ(tree.at(deep + "/f.txt").data, "deep bytes");

  // A failure before the commit point removes the deep directories it created.
  const auto before = snapshot_tree(vol);
  Spec other;
  other.file(deep_rel('y') + "/g.txt", "g").file(deep + "/f.txt", "changed");
  const auto failed = apply(other, failing([](auto step, auto i) { return fail_at(step, i, "sync", 0); }));
  EXPECT_EQ(failed.state, "failed_rolled_back") << failed.error;
  EXPECT_EQ(snapshot_tree(vol), before);
  EXPECT_FALSE(apply_pending(journal));

  // A failure after it leaves the journal, and recovery rolls forward along the long paths.
  const auto uncertain = apply(other, failing([](auto step, auto i) { return fail_at(step, i, "rename", 1); }));
  EXPECT_EQ(uncertain.state, "uncertain") << uncertain.error;
  auto rec = recover_apply(journal);
  ASSERT_TRUE(rec) << rec.error().message;
  EXPECT_EQ(*rec, RecoveryAction::rolled_forward);
  tree = snapshot_tree(vol);
  EXPECT_EQ(tree.at(deep_rel('y') + "/g.txt").data, "g");
  EXPECT_EQ(tree.at(deep + "/f.txt").data, "changed");
  EXPECT_TRUE(temp_names(tree).empty());
}

TEST_F(StagedApply, MirrorRemovesAnEntryBeyondPathMax) {
  const auto deep = deep_rel('m');
  Spec first;
  first.dir("").file(deep + "/old.txt", "old").file("keep.txt", "keep");
  first.mirror_scopes = {""};
  ASSERT_TRUE(apply(first, options(ApplySemantics::mirror)).success);
  Spec second;
  second.dir("").file("keep.txt", "keep");
  second.mirror_scopes = {""};
  const auto out = apply(second, options(ApplySemantics::mirror));
  ASSERT_TRUE(out.success) << out.error;
  const auto tree = snapshot_tree(vol);
  EXPECT_EQ(tree.size(), 2u);  // "." and keep.txt
  EXPECT_EQ(tree.at("keep.txt").data, "keep");
}

TEST_F(StagedApply, RecoveryWithoutJournalDoesNothing) {
  EXPECT_FALSE(apply_pending(journal));
  auto rec = recover_apply(journal);
  ASSERT_TRUE(rec);
  EXPECT_EQ(*rec, RecoveryAction::none);
}

TEST_F(StagedApply, CorruptJournalIsReportedAndNothingIsDeleted) {
  write_file(vol / "precious.txt", "keep me");
  ApplyJournal j;
  j.apply_id = "00112233aabbccdd";
  j.volumes = {vol.string()};
  j.files = {{0, "precious.txt", "precious.txt"}};  // not a temp of this apply
  ASSERT_TRUE(write_journal(journal, j));

  auto rec = recover_apply(journal);

  ASSERT_FALSE(rec);
  EXPECT_THAT(rec.error().message, HasSubstr("corrupt apply journal"));
  EXPECT_EQ(read_file(vol / "precious.txt"), "keep me");
  EXPECT_TRUE(apply_pending(journal));
}

// --- Crash safety -----------------------------------------------------------------------

// Starting tree and plan for the crash tests: replaced files, new files in new nested
// directories, and (mirror) removals, across `files` planned files.
void write_old_tree(const fs::path& root, std::size_t files) {
  for (std::size_t i = 0; i < files; i += 2)
    write_file(root / ("d" + std::to_string(i % 7)) / ("f" + std::to_string(i)), "old " + std::to_string(i));
  for (std::size_t i = 0; i < files / 10; ++i)
    write_file(root / "d0/obsolete" / ("x" + std::to_string(i)), "obsolete");
}

Spec crash_spec(std::size_t files) {
  Spec spec;
  spec.dir("");
  for (int d = 0; d < 7; ++d) spec.dir("d" + std::to_string(d), 0775);
  spec.dir("fresh/nested");
  for (std::size_t i = 0; i < files; ++i) {
    const std::string dir = i % 5 == 4 ? "fresh/nested" : "d" + std::to_string(i % 7);
    spec.file(dir + "/f" + std::to_string(i), std::string(64 + (i * 37) % 2000, static_cast<char>('a' + i % 26)));
  }
  spec.mirror_scopes = {""};
  return spec;
}

// The hook throws to simulate a crash at exactly one step: the stack unwinds without any
// of the commit's own cleanup, like a process that died there (fds are closed either way).
struct SimulatedCrash {};

ApplyFaultHook crash_at(std::size_t at) {
  return [at, n = std::size_t{0}](std::string_view, std::size_t) mutable -> Result<void> {
    if (n++ == at) throw SimulatedCrash{};
    return {};
  };
}

// A killed process loses nothing from the page cache, so durability plays no part in what
// the crash tests check: they run on tmpfs when there is one, where fsync costs nothing.
class StagedApplyCrash : public ::testing::Test {
 protected:
  StagedApplyCrash() {
    struct stat st {};
    std::string tmpl = (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0
                            ? fs::path("/dev/shm")
                            : fs::temp_directory_path()) / "carsync-crash.XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    scratch = tmpl;
    journal = scratch / "state/apply_journal.json";
  }
  ~StagedApplyCrash() override {
    std::error_code ec;
    fs::remove_all(scratch, ec);
  }

  // A fresh volume holding the old tree, and the plan (with freshly staged blobs) for it.
  std::pair<fs::path, ApplyPlan> setup(const Spec& spec, std::size_t files, const std::string& name) {
    const auto root = scratch / name;
    fs::remove_all(root);
    fs::remove_all(scratch / ("staging-" + name));
    fs::create_directories(root);
    EXPECT_EQ(::chown(root.c_str(), kOwner, kGroup), 0);
    write_old_tree(root, files);
    return {root, spec.plan(root, scratch / ("staging-" + name))};
  }

  void expect_old_or_new(const fs::path& root, const TreeSnapshot& old_tree, const TreeSnapshot& new_tree) {
    const auto tree = snapshot_tree(root);
    EXPECT_TRUE(tree == old_tree || tree == new_tree) << "recovered tree is neither the old nor the new one";
    EXPECT_THAT(temp_names(tree), ::testing::IsEmpty());
    EXPECT_FALSE(apply_pending(journal));
  }

  fs::path scratch;
  fs::path journal;  // inside scratch: set once scratch exists
};

TEST_F(StagedApplyCrash, CrashAtEveryStepRecoversToOldOrNewTree) {
  const Spec spec = crash_spec(6);

  auto [reference, reference_plan] = setup(spec, 6, "reference");
  const auto old_tree = snapshot_tree(reference);
  std::size_t steps = 0;
  auto counting = options(ApplySemantics::mirror, ApplyDurability::syncfs, [&](auto, auto) -> Result<void> {
    ++steps;
    return {};
  });
  ASSERT_TRUE(commit_plan(reference_plan, journal, counting).success);
  const auto new_tree = snapshot_tree(reference);
  ASSERT_NE(old_tree, new_tree);

  // Crash at commit step k, then (m > 0) again at recovery step m - 1, then recover.
  int rolled_back = 0, rolled_forward = 0;
  for (std::size_t k = 0; k < steps; ++k) {
    for (std::size_t m = 0; m < 4; ++m) {
      SCOPED_TRACE("commit crash at step " + std::to_string(k) + ", recovery crash at " + std::to_string(m));
      auto [root, plan] = setup(spec, 6, "crash");
      const auto durability = (k + m) % 2 ? ApplyDurability::fsync_each : ApplyDurability::syncfs;
      EXPECT_THROW(commit_plan(plan, journal, options(ApplySemantics::mirror, durability, crash_at(k))),
                   SimulatedCrash);
      if (m > 0) {
        try {
          (void)recover_apply(journal, crash_at(m - 1));
        } catch (const SimulatedCrash&) {
        }
      }
      auto rec = recover_apply(journal);
      ASSERT_TRUE(rec) << rec.error().message;
      expect_old_or_new(root, old_tree, new_tree);
      if (*rec == RecoveryAction::rolled_back) ++rolled_back;
      if (*rec == RecoveryAction::rolled_forward) ++rolled_forward;
    }
  }
  // Crashes before the commit point roll back, crashes after it roll forward.
  EXPECT_GT(rolled_back, 0);
  EXPECT_GT(rolled_forward, 0);
}

TEST_F(StagedApplyCrash, KilledAtRandomMomentRecoversToOldOrNewTree) {
  constexpr std::size_t kFiles = 500;
  constexpr int kIterations = 60;
  const Spec spec = crash_spec(kFiles);

  // Runs one commit in a child process, killed after `delay` unless negative; returns the
  // time from fork to reaping.
  auto run_child = [&](const ApplyPlan& plan, const ApplyOptions& opts, long long delay) {
    const auto start = std::chrono::steady_clock::now();
    const pid_t child = ::fork();
    if (child < 0) throw std::runtime_error("fork failed");
    if (child == 0) _exit(commit_plan(plan, journal, opts).success ? 0 : 1);
    if (delay >= 0) {
      const timespec ts{static_cast<time_t>(delay / 1'000'000'000), static_cast<long>(delay % 1'000'000'000)};
      ::nanosleep(&ts, nullptr);
      ::kill(child, SIGKILL);
    }
    int status = 0;
    EXPECT_EQ(::waitpid(child, &status, 0), child);
    if (WIFEXITED(status)) {
      EXPECT_EQ(WEXITSTATUS(status), 0) << "uninterrupted commit failed";
    }
    return std::chrono::steady_clock::now() - start;
  };

  // The reference run gives both snapshots and how long an uninterrupted commit takes,
  // measured the same way as the runs that are killed.
  auto [reference, reference_plan] = setup(spec, kFiles, "reference");
  const auto old_tree = snapshot_tree(reference);
  const auto commit_time = run_child(reference_plan, options(ApplySemantics::mirror), -1);
  ASSERT_FALSE(apply_pending(journal));
  const auto new_tree = snapshot_tree(reference);
  ASSERT_NE(old_tree, new_tree);

  std::mt19937_64 rng(20240503);
  const auto max_delay_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(commit_time).count() * 6 / 5;
  std::uniform_int_distribution<long long> delay(0, max_delay_ns);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  int rolled_back = 0, rolled_forward = 0, not_started = 0, finished = 0, iterations = 0;

  for (; iterations < kIterations && std::chrono::steady_clock::now() < deadline; ++iterations) {
    SCOPED_TRACE("iteration " + std::to_string(iterations));
    auto [root, plan] = setup(spec, kFiles, "kill");
    const auto opts =
        options(ApplySemantics::mirror, iterations % 2 ? ApplyDurability::fsync_each : ApplyDurability::syncfs);
    run_child(plan, opts, delay(rng));

    auto rec = recover_apply(journal);
    ASSERT_TRUE(rec) << rec.error().message;
    expect_old_or_new(root, old_tree, new_tree);
    if (*rec == RecoveryAction::rolled_back) ++rolled_back;
    else if (*rec == RecoveryAction::rolled_forward) ++rolled_forward;
    else if (snapshot_tree(root) == old_tree) ++not_started;
    else ++finished;
  }
  std::printf("[ crash    ] %d kills over a %.1f ms commit: rolled back %d, rolled forward %d, "
              "not started %d, finished %d\n",
              iterations, std::chrono::duration<double, std::milli>(commit_time).count(), rolled_back,
              rolled_forward, not_started, finished);
}

}  // namespace
}  // namespace carsync::io
