#include "io/staged_apply.hpp"

#include "io/apply_journal.hpp"
#include "io/secure_fs.hpp"
#include "io/unique_fd.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

namespace carsync::io {
namespace {

// After unlinkat failed: whether there was nothing to remove. A read-only filesystem answers
// EROFS even for a name that does not exist, and an undo must not call that a failure when
// the apply never got to create it. errno is kept for the caller's message.
bool absent_after_failed_unlink(int dir_fd, const std::string& name) {
  const int err = errno;
  if (err == ENOENT) return true;
  struct stat st;
  const bool absent = ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT;
  errno = err;
  return absent;
}

using Key = std::pair<std::size_t, std::string>;  // (volume index, rel)

std::string_view parent_of(std::string_view rel) {
  const auto slash = rel.rfind('/');
  return slash == std::string_view::npos ? std::string_view{} : rel.substr(0, slash);
}

std::string_view base_of(std::string_view rel) {
  const auto slash = rel.rfind('/');
  return slash == std::string_view::npos ? rel : rel.substr(slash + 1);
}

std::string join(std::string_view dir, std::string_view name) {
  std::string out(dir);
  if (!out.empty()) out += '/';
  out += name;
  return out;
}

std::size_t depth_of(std::string_view rel) {
  return rel.empty() ? 0 : 1 + static_cast<std::size_t>(std::count(rel.begin(), rel.end(), '/'));
}

// Every proper ancestor of `rel` below the root, outermost first ("a", "a/b" for "a/b/c").
std::vector<std::string_view> ancestors(std::string_view rel) {
  std::vector<std::string_view> out;
  for (auto slash = rel.find('/'); slash != std::string_view::npos; slash = rel.find('/', slash + 1))
    out.push_back(rel.substr(0, slash));
  return out;
}

bool is_not_found(const Error& e) { return e.code == make_error_code(errc::not_found); }

Error prefixed(std::string_view prefix, const Error& e) { return {e.code, std::string(prefix) + e.message}; }

// A volume opened for the commit: every operation is fd-relative to `fd`.
struct Volume {
  unique_fd fd;
  uid_t uid = 0;
  gid_t gid = 0;
  dev_t dev = 0;
};

Result<std::vector<Volume>> open_volumes(const std::vector<std::string>& roots) {
  std::vector<Volume> out;
  for (const auto& root : roots) {
    auto fd = open_root_dir(root);
    if (!fd) return fd.error();
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0) return os_error(errno, "stat volume root " + root);
    out.push_back({std::move(*fd), st.st_uid, st.st_gid, st.st_dev});
  }
  return out;
}

// The fault hook and the durability calls (with their cost), shared by commit and recovery.
class Ctx {
 public:
  Ctx(const ApplyFaultHook& fault, bool fsync_each) : fault_(fault), fsync_each_(fsync_each) {}

  Result<void> step(std::string_view name, std::size_t index) const {
    if (fault_) return fault_(name, index);
    return {};
  }
  bool fsync_each() const { return fsync_each_; }
  double durable_seconds() const { return durable_seconds_; }

  Result<void> fsync(int fd, std::string_view what) {
    return timed([fd] { return ::fsync(fd); }, "fsync", what);
  }
  Result<void> syncfs(int fd, std::string_view what) {
    return timed([fd] { return ::syncfs(fd); }, "syncfs", what);
  }

 private:
  template <class F>
  Result<void> timed(F call, std::string_view name, std::string_view what) {
    const auto start = std::chrono::steady_clock::now();
    const int rc = call();
    const int err = errno;
    durable_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (rc != 0) return os_error(err, std::string(name) + " " + std::string(what));
    return {};
  }

  const ApplyFaultHook& fault_;
  bool fsync_each_;
  double durable_seconds_ = 0;
};

// The directory fd used last: a plan's files arrive grouped by directory, so most steps
// reuse it instead of resolving the path again.
class DirCache {
 public:
  Result<int> get(const std::vector<Volume>& vols, std::size_t volume, std::string_view rel) {
    if (fd_ && volume == volume_ && rel == rel_) return fd_.get();
    auto fd = open_beneath(vols[volume].fd.get(), rel, O_RDONLY | O_DIRECTORY);
    if (!fd) {
      fd_.reset();
      return fd.error();
    }
    fd_ = std::move(*fd);
    volume_ = volume;
    rel_ = rel;
    return fd_.get();
  }
  // After a directory was removed: its fd must not be handed out for a path again.
  void forget() { fd_.reset(); }

 private:
  unique_fd fd_;
  std::size_t volume_ = 0;
  std::string rel_;
};

// Collects the first error of a best-effort sequence that keeps going after failures.
class FirstError {
 public:
  void note(Error e) {
    if (!error_) error_ = std::move(e);
  }
  template <class T>
  bool failed(const Result<T>& r) {
    if (r) return false;
    note(r.error());
    return true;
  }
  Result<void> result() const {
    if (error_) return *error_;
    return {};
  }

 private:
  std::optional<Error> error_;
};

// Makes the directory entries and metadata changed so far durable: fsync of each touched
// directory that still exists, or one syncfs per volume involved.
Result<void> make_durable(Ctx& ctx, const std::vector<Volume>& vols, const std::set<Key>& touched) {
  FirstError errors;
  if (ctx.fsync_each()) {
    for (const auto& [volume, rel] : touched) {
      auto fd = open_beneath(vols[volume].fd.get(), rel, O_RDONLY | O_DIRECTORY);
      if (!fd) {
        if (!is_not_found(fd.error())) errors.note(fd.error());
        continue;
      }
      errors.failed(ctx.fsync(fd->get(), "'" + rel + "'"));
    }
  } else {
    std::set<std::size_t> volumes;
    for (const auto& key : touched) volumes.insert(key.first);
    for (const auto v : volumes) errors.failed(ctx.syncfs(vols[v].fd.get(), "volume"));
  }
  return errors.result();
}

// ---------------------------------------------------------------------------------------
// Rollback and roll-forward: driven by the journal alone, idempotent, so the same code
// serves a failed commit and recovery after a crash (including a crash during recovery).

// Phase "prepared": deletes every temp and every directory the apply created (deepest
// first; only when empty). Keeps going after a failure and reports the first one.
Result<void> roll_back(const ApplyJournal& j, const std::vector<Volume>& vols, Ctx& ctx) {
  FirstError errors;
  DirCache dirs;
  std::set<Key> touched;

  for (std::size_t i = 0; i < j.files.size(); ++i) {
    const auto& f = j.files[i];
    if (errors.failed(ctx.step("undo_file", i))) continue;
    const auto parent = parent_of(f.rel);
    auto pfd = dirs.get(vols, f.volume, parent);
    if (!pfd) {
      if (!is_not_found(pfd.error())) errors.note(pfd.error());  // no parent: no temp either
      continue;
    }
    touched.emplace(f.volume, parent);
    if (::unlinkat(*pfd, f.temp.c_str(), 0) != 0 && !absent_after_failed_unlink(*pfd, f.temp))
      errors.note(os_error(errno, "remove temp '" + join(parent, f.temp) + "'"));
  }

  for (std::size_t i = j.created_dirs.size(); i-- > 0;) {
    const auto& d = j.created_dirs[i];
    if (errors.failed(ctx.step("undo_mkdir", i))) continue;
    const auto parent = parent_of(d.rel);
    auto pfd = dirs.get(vols, d.volume, parent);
    if (!pfd) {
      if (!is_not_found(pfd.error())) errors.note(pfd.error());
      continue;
    }
    touched.emplace(d.volume, parent);
    const std::string name(base_of(d.rel));
    if (::unlinkat(*pfd, name.c_str(), AT_REMOVEDIR) != 0) {
      if (!absent_after_failed_unlink(*pfd, name))
        errors.note(os_error(errno, "remove created directory '" + d.rel + "'"));
      continue;
    }
    dirs.forget();
  }

  // Every directory involved is synced, also where this pass found the work already done:
  // an earlier, interrupted pass may have left it only in the page cache. Without this a
  // crash after the journal is gone could bring deleted temps back.
  if (auto r = make_durable(ctx, vols, touched); !r) errors.note(r.error());
  return errors.result();
}

Result<void> set_dir_metadata(const JournalDir& d, const Volume& vol, Ctx& ctx) {
  auto fd = open_beneath(vol.fd.get(), d.rel, O_RDONLY | O_DIRECTORY);
  if (!fd) return fd.error();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return os_error(errno, "stat '" + d.rel + "'");
  // The volume root takes the member's mode but keeps its owner: it defines the owner.
  if (!d.rel.empty() && (st.st_uid != vol.uid || st.st_gid != vol.gid) &&
      ::fchown(fd->get(), vol.uid, vol.gid) != 0)
    return os_error(errno, "chown '" + d.rel + "'");
  if ((st.st_mode & 07777) != d.mode && ::fchmod(fd->get(), d.mode) != 0)
    return os_error(errno, "chmod '" + d.rel + "'");
  const timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(d.mtime_sec), static_cast<long>(d.mtime_nsec)}};
  if (::futimens(fd->get(), times) != 0) return os_error(errno, "set mtime of '" + d.rel + "'");
  if (ctx.fsync_each()) return ctx.fsync(fd->get(), "'" + d.rel + "'");
  return {};
}

// Phase "committed": renames every remaining temp over its target (a missing temp was
// renamed already), applies the mirror removals (deepest first; missing = done) and the
// planned directories' metadata (deepest first, after everything that changes their
// mtimes), then makes it all durable.
Result<void> roll_forward(const ApplyJournal& j, const std::vector<Volume>& vols, Ctx& ctx) {
  FirstError errors;
  DirCache dirs;
  std::set<Key> touched;

  for (std::size_t i = 0; i < j.files.size(); ++i) {
    const auto& f = j.files[i];
    if (errors.failed(ctx.step("rename", i))) continue;
    const auto parent = parent_of(f.rel);
    auto pfd = dirs.get(vols, f.volume, parent);
    if (errors.failed(pfd)) continue;
    touched.emplace(f.volume, parent);
    // renameat replaces whatever is at the target, a symlink included, without following
    // it. A missing temp was renamed by an earlier pass.
    if (::renameat(*pfd, f.temp.c_str(), *pfd, std::string(base_of(f.rel)).c_str()) != 0 && errno != ENOENT)
      errors.note(os_error(errno, "rename temp over '" + f.rel + "'"));
  }

  for (std::size_t i = j.removals.size(); i-- > 0;) {
    const auto& r = j.removals[i];
    if (errors.failed(ctx.step("remove", i))) continue;
    const auto parent = parent_of(r.rel);
    auto pfd = dirs.get(vols, r.volume, parent);
    if (!pfd) {
      if (!is_not_found(pfd.error())) errors.note(pfd.error());
      continue;
    }
    touched.emplace(r.volume, parent);
    const std::string name(base_of(r.rel));
    struct stat st {};
    if (::fstatat(*pfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) errors.note(os_error(errno, "stat '" + r.rel + "'"));
      continue;
    }
    const bool dir = S_ISDIR(st.st_mode);
    if (::unlinkat(*pfd, name.c_str(), dir ? AT_REMOVEDIR : 0) != 0) {
      if (errno != ENOENT) errors.note(os_error(errno, "remove '" + r.rel + "'"));
      continue;
    }
    if (dir) dirs.forget();
  }

  std::vector<std::size_t> order(j.dirs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return depth_of(j.dirs[a].rel) > depth_of(j.dirs[b].rel); });
  for (const auto i : order) {
    const auto& d = j.dirs[i];
    if (errors.failed(ctx.step("dir_meta", i))) continue;
    if (errors.failed(set_dir_metadata(d, vols[d.volume], ctx))) continue;
    if (!ctx.fsync_each()) touched.emplace(d.volume, d.rel);  // for the syncfs below
  }

  // As in roll_back: durable also where an earlier pass did the work.
  if (auto r = make_durable(ctx, vols, touched); !r) errors.note(r.error());
  return errors.result();
}

// ---------------------------------------------------------------------------------------
// Planning: everything decided before the journal is written, so the journal can name
// every temp and every directory the apply may create.

std::string container_path(const ApplyPlan& plan, std::size_t volume, std::string_view rel) {
  std::string out = plan.volumes[volume].bind;
  if (rel.empty()) return out.empty() ? "/" : out;
  if (out.empty() || out.back() != '/') out += '/';
  out += rel;
  return out;
}

enum class Kind { missing, dir, symlink, other };

struct Planner {
  const ApplyPlan& plan;
  const std::vector<Volume>& vols;
  std::map<Key, Kind> kinds;
  std::set<Key> created;

  // lstat beneath the root, at most once per path; below a missing directory everything
  // is missing without asking.
  Result<Kind> kind_of(std::size_t volume, std::string_view rel) {
    if (rel.empty()) return Kind::dir;
    Key key{volume, std::string(rel)};
    if (auto it = kinds.find(key); it != kinds.end()) return it->second;
    Kind kind;
    if (auto parent = kinds.find(Key{volume, std::string(parent_of(rel))});
        parent != kinds.end() && parent->second == Kind::missing) {
      kind = Kind::missing;
    } else {
      auto st = lstat_beneath(vols[volume].fd.get(), rel);
      if (!st) {
        if (!is_not_found(st.error())) return st.error();
        kind = Kind::missing;
      } else {
        kind = S_ISDIR(st->st_mode) ? Kind::dir : S_ISLNK(st->st_mode) ? Kind::symlink : Kind::other;
      }
    }
    kinds.emplace(std::move(key), kind);
    return kind;
  }

  // Checks that `rel` can be (or already is) a directory; records it for creation if missing.
  Result<void> need_dir(ApplyJournal& j, std::size_t volume, std::string_view rel) {
    auto kind = kind_of(volume, rel);
    if (!kind) return kind.error();
    switch (*kind) {
      case Kind::dir:
        return {};
      case Kind::missing:
        if (created.emplace(volume, std::string(rel)).second) j.created_dirs.push_back({volume, std::string(rel)});
        return {};
      case Kind::symlink:
        return make_error(errc::symlink_rejected,
                          "refusing to follow symlink at " + container_path(plan, volume, rel));
      case Kind::other:
        break;
    }
    return make_error(errc::path_rejected, "cannot replace file with directory: " + container_path(plan, volume, rel));
  }

  // Mirror: every path below the scope directory that the plan neither contains nor needs
  // as a parent, parents listed before their contents. Symlinks are entries like any other
  // (removed, never followed); another filesystem mounted inside is not this volume's.
  Result<void> collect_removals(ApplyJournal& j, const MirrorScope& scope, const std::set<Key>& keep,
                                std::set<Key>& listed) {
    auto kind = kind_of(scope.volume, scope.rel);
    if (!kind) return kind.error();
    if (*kind != Kind::dir) return {};
    const auto& vol = vols[scope.volume];
    std::deque<std::string> pending{scope.rel};
    while (!pending.empty()) {
      const std::string rel = std::move(pending.front());
      pending.pop_front();
      auto fd = open_beneath(vol.fd.get(), rel, O_RDONLY | O_DIRECTORY);
      if (!fd) return fd.error();
      const int dfd = fd->get();
      std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(dfd), &::closedir);
      if (!dir) return os_error(errno, "open directory '" + rel + "'");
      fd->release();  // owned by `dir` now
      for (;;) {
        errno = 0;
        const dirent* e = ::readdir(dir.get());
        if (!e) {
          if (errno != 0) return os_error(errno, "read directory '" + rel + "'");
          break;
        }
        const std::string_view name = e->d_name;
        if (name == "." || name == "..") continue;
        struct stat st {};
        if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
          if (errno == ENOENT) continue;
          return os_error(errno, "stat '" + join(rel, name) + "'");
        }
        if (st.st_dev != vol.dev) continue;
        Key child{scope.volume, join(rel, name)};
        const bool is_dir = S_ISDIR(st.st_mode);
        if (!keep.contains(child) && !listed.contains(child)) {
          listed.insert(child);
          j.removals.push_back({scope.volume, child.second});
        }
        if (is_dir) pending.push_back(std::move(child.second));
      }
    }
    return {};
  }
};

struct Built {
  ApplyJournal journal;
  std::vector<const PlannedEntry*> file_entries;  // parallel to journal.files
  bool any_files = false;
};

Result<Built> build(const ApplyPlan& plan, const std::vector<Volume>& vols, const ApplyOptions& opts) {
  Built b;
  auto& j = b.journal;
  j.apply_id = random_name("", "");
  j.cid = opts.cid;
  j.fsync_each = opts.durability == ApplyDurability::fsync_each;
  for (const auto& v : plan.volumes) j.volumes.push_back(v.host_root);

  // Deduplicate by path (a later archive member replaces an earlier one) and reject shapes
  // the plan producer should never emit.
  std::map<Key, std::size_t> file_at, dir_at;
  for (const auto& e : plan.entries) {
    if (e.volume >= plan.volumes.size() || !is_clean_rel(e.rel))
      return make_error(errc::path_rejected, "invalid planned path: " + e.container_path);
    Key key{e.volume, e.rel};
    if (e.is_dir) {
      if (file_at.contains(key))
        return make_error(errc::path_rejected, "cannot replace file with directory: " + e.container_path);
      const JournalDir d{e.volume, e.rel, static_cast<mode_t>((e.mode & 0777) | 0755), e.mtime_sec, e.mtime_nsec};
      if (auto [it, fresh] = dir_at.emplace(key, j.dirs.size()); fresh) j.dirs.push_back(d);
      else j.dirs[it->second] = d;
    } else {
      if (e.rel.empty() || dir_at.contains(key))
        return make_error(errc::path_rejected, "cannot replace directory with file: " + e.container_path);
      if (e.blob.find('/') != std::string::npos || !is_clean_rel(e.blob) || e.blob.empty())
        return make_error(errc::path_rejected, "invalid staged blob for " + e.container_path);
      if (auto [it, fresh] = file_at.emplace(key, j.files.size()); fresh) {
        j.files.push_back({e.volume, e.rel, {}});
        b.file_entries.push_back(&e);
      } else {
        b.file_entries[it->second] = &e;
      }
    }
  }
  b.any_files = !j.files.empty();

  // Paths that stay: planned entries and every directory above them.
  std::set<Key> keep;
  for (const auto& [key, _] : dir_at) keep.insert(key);
  for (const auto& [key, _] : file_at) keep.insert(key);
  for (const auto& key : std::set<Key>(keep))
    for (const auto a : ancestors(key.second)) keep.emplace(key.first, std::string(a));

  Planner p{plan, vols, {}, {}};
  for (const auto& e : plan.entries) {
    for (const auto a : ancestors(e.rel)) {
      if (file_at.contains(Key{e.volume, std::string(a)}))
        return make_error(errc::path_rejected,
                          "cannot replace file with directory: " + container_path(plan, e.volume, a));
      if (auto r = p.need_dir(j, e.volume, a); !r) return r.error();
    }
    if (e.is_dir) {
      if (auto r = p.need_dir(j, e.volume, e.rel); !r) return r.error();
    } else {
      auto kind = p.kind_of(e.volume, e.rel);
      if (!kind) return kind.error();
      if (*kind == Kind::dir)
        return make_error(errc::path_rejected, "cannot replace directory with file: " + e.container_path);
    }
  }

  if (opts.semantics == ApplySemantics::mirror) {
    std::set<Key> listed;
    for (const auto& scope : plan.mirror_scopes) {
      if (scope.volume >= plan.volumes.size() || !is_clean_rel(scope.rel))
        return make_error(errc::path_rejected, "invalid mirror scope '" + scope.rel + "'");
      if (auto r = p.collect_removals(j, scope, keep, listed); !r) return r.error();
    }
  }

  // The exact temp names, decided now so the journal can name them before they exist.
  for (std::size_t i = 0; i < j.files.size(); ++i) {
    auto& f = j.files[i];
    std::string temp = "." + std::string(base_of(f.rel)) + ".carsync-" + j.apply_id + ".tmp";
    if (temp.size() > NAME_MAX) temp = ".carsync-" + j.apply_id + "-" + std::to_string(i) + ".tmp";
    f.temp = std::move(temp);
  }
  return b;
}

// ---------------------------------------------------------------------------------------
// Phase A.

// Copies exactly `size` bytes: copy_file_range where the kernel can, else a bounded buffer.
Result<void> copy_bytes(int in, int out, std::uint64_t size, std::string_view what) {
  std::uint64_t left = size;
  bool kernel_copy = true;
  std::vector<char> buf;
  while (left > 0) {
    ssize_t n;
    if (kernel_copy) {
      n = ::copy_file_range(in, nullptr, out, nullptr, std::min<std::uint64_t>(left, 1u << 30), 0);
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
        kernel_copy = false;
        continue;
      }
    } else {
      if (buf.empty()) buf.resize(256 * 1024);
      n = ::read(in, buf.data(), std::min<std::uint64_t>(left, buf.size()));
      if (n > 0) {
        if (auto r = write_all(out, std::string_view(buf.data(), static_cast<std::size_t>(n))); !r) return r;
      }
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(errno, "copy " + std::string(what));
    }
    if (n == 0)
      return make_error(errc::io_failure, "staged blob for " + std::string(what) + " is shorter than planned");
    left -= static_cast<std::uint64_t>(n);
  }
  return {};
}

struct PhaseA {
  PhaseA(const ApplyPlan& plan, const Built& built, const std::vector<Volume>& vols, Ctx& ctx,
         const std::atomic<bool>* cancel, int staging_fd, std::atomic<std::uint64_t>* progress)
      : plan(plan), built(built), vols(vols), ctx(ctx), cancel(cancel), staging_fd(staging_fd), progress(progress) {}

  const ApplyPlan& plan;
  const Built& built;
  const std::vector<Volume>& vols;
  Ctx& ctx;
  const std::atomic<bool>* cancel;
  int staging_fd;
  std::atomic<std::uint64_t>* progress;
  std::set<Key> touched;
  std::set<std::string> linked_blobs;
  DirCache dirs;

  Result<void> run() {
    const auto& j = built.journal;
    for (std::size_t i = 0; i < j.created_dirs.size(); ++i) {
      if (auto r = ctx.step("mkdir", i); !r) return r;
      if (auto r = make_dir(j.created_dirs[i]); !r) return r;
    }
    for (std::size_t i = 0; i < j.files.size(); ++i) {
      if (cancel && cancel->load(std::memory_order_relaxed)) return make_error(errc::cancelled, "apply cancelled");
      if (auto r = ctx.step("file", i); !r) return r;
      if (auto r = write_temp(j.files[i], *built.file_entries[i]); !r) return r;
      if (progress) progress->fetch_add(built.file_entries[i]->size, std::memory_order_relaxed);
    }
    std::set<std::size_t> volumes;
    for (const auto& key : touched) volumes.insert(key.first);
    for (const auto v : volumes)
      if (auto r = ctx.step("sync", v); !r) return r;
    return make_durable(ctx, vols, touched);
  }

  Result<void> make_dir(const JournalPath& d) {
    const auto& vol = vols[d.volume];
    const auto parent = parent_of(d.rel);
    auto pfd = dirs.get(vols, d.volume, parent);
    if (!pfd) return pfd.error();
    const std::string name(base_of(d.rel));
    const auto where = container_path(plan, d.volume, d.rel);
    // EEXIST included: planning saw nothing here, so something else is changing the volume.
    if (::mkdirat(*pfd, name.c_str(), 0755) != 0) return os_error(errno, "mkdir " + where);
    touched.emplace(d.volume, parent);
    auto fd = open_beneath(*pfd, name, O_RDONLY | O_DIRECTORY);
    if (!fd) return fd.error();
    if (::fchown(fd->get(), vol.uid, vol.gid) != 0) return os_error(errno, "chown " + where);
    if (::fchmod(fd->get(), 0755) != 0) return os_error(errno, "chmod " + where);  // no umask
    if (ctx.fsync_each()) return ctx.fsync(fd->get(), where);
    return {};
  }

  Result<void> write_temp(const JournalFile& f, const PlannedEntry& e) {
    const auto& vol = vols[f.volume];
    const auto parent = parent_of(f.rel);
    auto pfd = dirs.get(vols, f.volume, parent);
    if (!pfd) return pfd.error();
    const auto& where = e.container_path;

    auto blob = open_beneath(staging_fd, e.blob, O_RDONLY | O_NOFOLLOW);
    if (!blob) return prefixed("staged blob for " + where + ": ", blob.error());
    struct stat bst {};
    if (::fstat(blob->get(), &bst) != 0) return os_error(errno, "stat staged blob for " + where);
    if (!S_ISREG(bst.st_mode) || static_cast<std::uint64_t>(bst.st_size) != e.size)
      return make_error(errc::io_failure, "staged blob for " + where + " does not match the plan");

    // Same filesystem: the staged inode itself becomes the file (no second copy, §12 item
    // 5). A blob already used once is copied, so two targets never share an inode.
    unique_fd tmp;
    if (bst.st_dev == vol.dev && linked_blobs.insert(e.blob).second) {
      if (::linkat(staging_fd, e.blob.c_str(), *pfd, f.temp.c_str(), 0) == 0) {
        auto fd = open_beneath(*pfd, f.temp, O_RDONLY | O_NOFOLLOW);
        if (!fd) return fd.error();
        struct stat tst {};
        if (::fstat(fd->get(), &tst) != 0) return os_error(errno, "stat temp for " + where);
        if (tst.st_ino != bst.st_ino || tst.st_dev != bst.st_dev)
          return make_error(errc::io_failure, "staged blob for " + where + " changed while linking");
        tmp = std::move(*fd);
      } else if (errno != EXDEV && errno != EPERM && errno != EMLINK) {
        return os_error(errno, "link temp for " + where);
      }
    }
    if (!tmp) {
      tmp = unique_fd(::openat(*pfd, f.temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!tmp) return os_error(errno, "create temp for " + where);
      if (auto r = copy_bytes(blob->get(), tmp.get(), e.size, where); !r) return r;
    }
    touched.emplace(f.volume, parent);

    // Owner before mode: chown may clear mode bits.
    if (::fchown(tmp.get(), vol.uid, vol.gid) != 0) return os_error(errno, "chown " + where);
    if (::fchmod(tmp.get(), (e.mode & 0777) | 0644) != 0) return os_error(errno, "chmod " + where);
    const timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(e.mtime_sec), static_cast<long>(e.mtime_nsec)}};
    if (::futimens(tmp.get(), times) != 0) return os_error(errno, "set mtime of " + where);
    if (ctx.fsync_each()) return ctx.fsync(tmp.get(), where);
    return {};
  }
};

}  // namespace

ApplyOutcome commit_plan(const ApplyPlan& plan, const std::filesystem::path& journal, const ApplyOptions& opts,
                         const std::atomic<bool>* cancel) {
  ApplyOutcome out;
  out.state = "failed_rolled_back";
  auto untouched = [&](std::string error) {
    out.error = std::move(error);
    return out;
  };

  // A pending journal means an earlier apply may have left the volumes half-updated.
  if (apply_pending(journal)) {
    out.restart_safe = false;
    out.state = "uncertain";
    return untouched("an earlier apply awaits recovery: " + journal.string());
  }
  auto vols = open_volumes([&] {
    std::vector<std::string> roots;
    for (const auto& v : plan.volumes) roots.push_back(v.host_root);
    return roots;
  }());
  if (!vols) return untouched(vols.error().message);
  auto built = build(plan, *vols, opts);
  if (!built) return untouched(built.error().message);
  auto& j = built->journal;

  unique_fd staging;
  if (built->any_files) {
    auto fd = open_root_dir(plan.staging_dir);
    if (!fd) return untouched("staging directory: " + fd.error().message);
    staging = std::move(*fd);
  }

  Ctx ctx(opts.fault, j.fsync_each);
  auto finish = [&] {
    out.durable_seconds = ctx.durable_seconds();
    return out;
  };

  if (auto r = ctx.step("journal", 0); !r) return untouched(r.error().message);
  if (auto r = write_journal(journal, j); !r) {
    (void)remove_journal(journal);  // the rename may have happened before a failed fsync
    return untouched(r.error().message);
  }

  // Undoes phase A after `error`; the journal goes only once the undo is complete.
  auto roll_back_after = [&](const Error& error) {
    out.error = error.message;
    if (auto r = roll_back(j, *vols, ctx); !r) {
      out.state = "uncertain";
      out.restart_safe = false;
      out.error += "; rollback incomplete: " + r.error().message;
    } else if (auto rm = remove_journal(journal); !rm) {
      out.error += "; apply journal not removed: " + rm.error().message;
    }
    return finish();
  };

  PhaseA phase_a(plan, *built, *vols, ctx, cancel, staging.get(), opts.progress);
  if (auto r = phase_a.run(); !r) return roll_back_after(r.error());
  staging.reset();

  // The commit point.
  if (auto r = ctx.step("commit", 0); !r) return roll_back_after(r.error());
  j.phase = JournalPhase::committed;
  if (auto r = write_journal(journal, j); !r) {
    // The journal on disk is "prepared" or "committed", and either is consistent with the
    // volumes until something is undone. Undo only once it surely says "prepared".
    j.phase = JournalPhase::prepared;
    if (auto again = write_journal(journal, j); !again) {
      out.state = "uncertain";
      out.restart_safe = false;
      out.error = r.error().message + "; journal state unknown, left for recovery";
      return finish();
    }
    return roll_back_after(r.error());
  }

  for (const auto& e : plan.entries) out.extracted_paths.push_back(e.container_path);
  if (auto r = roll_forward(j, *vols, ctx); !r) {
    out.state = "uncertain";
    out.restart_safe = false;
    out.error = "apply committed but not completed (recovery will finish it): " + r.error().message;
    return finish();
  }
  out.success = true;
  out.state = "applied";
  if (auto r = remove_journal(journal); !r) out.error = "apply journal not removed: " + r.error().message;
  return finish();
}

Result<RecoveryAction> recover_apply(const std::filesystem::path& journal, const ApplyFaultHook& fault) {
  auto read = read_journal(journal);
  if (!read) return read.error();
  if (!*read) return RecoveryAction::none;
  const auto& j = **read;

  auto vols = open_volumes(j.volumes);
  if (!vols) return prefixed("apply recovery: ", vols.error());
  Ctx ctx(fault, j.fsync_each);
  const bool forward = j.phase == JournalPhase::committed;
  auto r = forward ? roll_forward(j, *vols, ctx) : roll_back(j, *vols, ctx);
  if (!r) return prefixed("apply recovery incomplete: ", r.error());
  if (auto rm = remove_journal(journal); !rm) return rm.error();
  return forward ? RecoveryAction::rolled_forward : RecoveryAction::rolled_back;
}

bool apply_pending(const std::filesystem::path& journal) { return journal_exists(journal); }

}  // namespace carsync::io
