#include "io/archive_scan.hpp"

#include "io/archive_source.hpp"
#include "io/secure_fs.hpp"
#include "io/unique_fd.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>
#include <unordered_map>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;

// Sparse members only (the rest are written straight from the decompressed buffers): one
// read buffer for their data, so the archive is never held whole.
constexpr std::size_t block_bytes = 256 * 1024;
// Decompressed bytes the scan still decodes after the tar end marker (tar pads to its record
// size, 10 KiB by default) so the last member's checksum is verified; the rest of the file is
// only read and hashed, so a bomb behind the end marker costs no decompression.
constexpr std::uint64_t trailing_budget_bytes = 1u << 20;
// Below this much file content the expansion ratio is not judged: a small snapshot of
// empty or repetitive files compresses extremely well and is harmless.
constexpr std::uint64_t ratio_floor_bytes = 1u << 20;
constexpr int max_eagain_retries = 64;
// What libarchive reports (as ARCHIVE_ERRNO_FILE_FORMAT, a private name) when no format
// reader recognises the content; decompression failures use other codes.
constexpr int unrecognised_format_errno = EILSEQ;

Error rejected(std::string message) { return make_error(errc::path_rejected, std::move(message)); }

Error escapes(const std::string& container_path) {
  return make_error(errc::escapes_root, "tar member target escapes volume root: " + container_path);
}

Error limit(std::string message) { return make_error(errc::limit_exceeded, std::move(message)); }

Error corrupt(struct archive* a) {
  const char* detail = archive_error_string(a);
  return make_error(errc::corrupt_archive,
                    std::string("corrupt archive: ") + (detail ? detail : "unknown libarchive error"));
}

Error cancelled() { return make_error(errc::cancelled, "archive scan cancelled"); }

// libarchive's read callback: raw tar from the decompressing reader thread.
la_ssize_t read_tar(struct archive* a, void* client, const void** buffer) {
  auto block = static_cast<ArchiveSource*>(client)->next();
  if (!block) {
    // The scanner reports the source's own error (ArchiveSource::error), not this copy.
    archive_set_error(a, EIO, "%s", block.error().message.c_str());
    return -1;
  }
  *buffer = block->data();
  return static_cast<la_ssize_t>(block->size());
}

bool has_dotdot_segment(std::string_view p) {
  for (;;) {
    const auto slash = p.find('/');
    if (p.substr(0, slash) == "..") return true;
    if (slash == std::string_view::npos) return false;
    p.remove_prefix(slash + 1);
  }
}

std::size_t longest_segment(std::string_view p) {
  std::size_t longest = 0;
  for (;;) {
    const auto slash = p.find('/');
    longest = std::max(longest, std::min(slash, p.size()));
    if (slash == std::string_view::npos) return longest;
    p.remove_prefix(slash + 1);
  }
}

bool is_not_found(const Error& e) { return e.code == make_error_code(errc::not_found); }

// Follows `rel` (symlinks included) but never out of the root: 0, or the errno of
// openat2, EXDEV meaning the path leads outside. A path too long for one call is followed
// from its anchor (secure_fs), so a link there that climbs above the anchor counts as
// leading outside: stricter, never looser, and only for trees deeper than PATH_MAX.
int resolve_following(int root_fd, const std::string& rel) {
  auto anchored = anchor_beneath(root_fd, rel);
  if (!anchored) {
    // The scan walked these directories already; only a concurrent change lands here.
    const auto& code = anchored.error().code;
    if (code == make_error_code(errc::not_found)) return ENOENT;
    if (code == make_error_code(errc::symlink_rejected) || code == make_error_code(errc::escapes_root)) return EXDEV;
    return EIO;
  }
  const std::string rest(anchored->rest);
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  for (int eagain_left = max_eagain_retries;;) {
    const long fd = ::syscall(SYS_openat2, anchored->fd, rest.c_str(), &how, sizeof how);
    if (fd >= 0) {
      unique_fd owned(static_cast<int>(fd));
      return 0;
    }
    const int err = errno;
    if (err == EINTR || (err == EAGAIN && eagain_left-- > 0)) continue;
    return err;
  }
}

Result<struct stat> stat_fd(const unique_fd& fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return os_error(errno, "stat " + what);
  return st;
}

mode_t normalised_mode(mode_t perm, bool is_dir) {
  // Special bits never survive: a snapshot must not be able to plant setuid programs.
  return (perm & 0777) | (is_dir ? 0755 : 0644);
}

class Scanner {
 public:
  Scanner(const ScanContext& ctx, const std::atomic<bool>* cancel)
      : ctx_(ctx), policy_(ctx.policy ? *ctx.policy : default_policy_), cancel_(cancel) {}

  Result<void> run(const fs::path& archive, const fs::path& staging_dir);
  // Removes every blob this scan created (after a failure).
  void discard_blobs() noexcept;

  ApplyPlan plan;

 private:
  void resolve_manifest();
  Result<void> open_archive(const fs::path& archive);
  Result<void> member(struct archive_entry* e, std::size_t index);
  std::size_t volume_index(const core::ResolvedPath& r);
  Result<void> check_target(const core::ResolvedPath& r, std::size_t volume, bool is_dir);
  Result<void> walk_parent(const core::ResolvedPath& r, std::size_t volume, const std::string& parent);
  Result<void> check_types(const std::string& path, bool is_dir);
  Result<void> check_size(const std::string& name, std::uint64_t size) const;
  Result<std::string> stage(const std::string& name, std::size_t index, std::uint64_t size, bool sparse);
  // After libarchive failed: the reader's own failure if it had one (the first cause).
  Error failure();
  Result<void> verify();
  bool cancel_requested() const noexcept { return cancel_ && cancel_->load(std::memory_order_relaxed); }

  const core::MountPolicy default_policy_{};
  const ScanContext& ctx_;
  const core::MountPolicy& policy_;
  const std::atomic<bool>* cancel_;

  std::unique_ptr<ArchiveSource> source_;  // declared first: libarchive reads from it until freed
  std::unique_ptr<struct archive, decltype(&archive_read_free)> a_{nullptr, archive_read_free};
  std::uint64_t compressed_bytes_ = 0;
  unique_fd staging_fd_;
  std::vector<std::string> blobs_;
  std::unique_ptr<char[]> buf_;

  std::vector<std::string> manifest_;  // normalised archive_paths
  std::vector<unique_fd> roots_;       // parallel to plan.volumes, opened on first use
  // Every member path and every ancestor of one: true for directories. Detects a path that
  // is a file in one member and a directory (or a file's parent) in another.
  std::unordered_map<std::string, bool> seen_;

  // The parent directory of the previous member: archives list siblings together, so most
  // members reuse it instead of walking from the volume root again (§12 item 6).
  struct Parent {
    bool valid = false;
    std::size_t volume = 0;
    std::string rel;
    bool missing = false;  // some component does not exist yet (the commit creates it)
    unique_fd fd;          // O_PATH descriptor when it exists
  } parent_;
};

Result<void> Scanner::run(const fs::path& archive, const fs::path& staging_dir) {
  plan.staging_dir = staging_dir;
  auto staging = open_root_dir(staging_dir);
  if (!staging) return staging.error();
  staging_fd_ = std::move(*staging);

  resolve_manifest();
  if (auto r = open_archive(archive); !r) return r;

  for (std::size_t index = 0;; ++index) {
    if (cancel_requested()) return cancelled();
    struct archive_entry* e = nullptr;
    const int rc = archive_read_next_header(a_.get(), &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc == ARCHIVE_WARN) {
      spdlog::warn("archive {}: {}", archive.string(), archive_error_string(a_.get()));
    } else if (rc != ARCHIVE_OK) {
      return failure();
    }
    if (index >= ctx_.limits.max_members)
      return limit(fmt::format("archive has more than {} members", ctx_.limits.max_members));
    if (auto r = member(e, index); !r) return r;
  }
  if (auto r = verify(); !r) return r;

  if (ctx_.fsync_blobs && !blobs_.empty()) return fsync_dir(staging_fd_.get());
  return {};
}

Error Scanner::failure() {
  if (auto e = source_->error()) return *e;
  return corrupt(a_.get());
}

// The tar stream ended: the rest of the file is read (and hashed) to its end before the
// plan is returned, so a truncated or corrupt tail, or a file that is not the one the
// record names, fails the scan.
Result<void> Scanner::verify() {
  auto digest = source_->finish(trailing_budget_bytes);
  if (!digest) return digest.error();
  if (ctx_.expected_sha256 && *digest != *ctx_.expected_sha256)
    return make_error(errc::corrupt_archive, fmt::format("archive failed verification: sha256 {} expected {}",
                                                         to_hex(*digest), to_hex(*ctx_.expected_sha256)));
  return {};
}

void Scanner::discard_blobs() noexcept {
  for (const auto& blob : blobs_) {
    if (::unlinkat(staging_fd_.get(), blob.c_str(), 0) != 0 && errno != ENOENT)
      spdlog::warn("cannot remove staging blob {}/{}: {}", plan.staging_dir.string(), blob,
                   std::strerror(errno));
  }
  blobs_.clear();
}

void Scanner::resolve_manifest() {
  for (const auto& declared : ctx_.manifest_paths) {
    manifest_.push_back(core::normalize_path("/" + declared));
    // Record validation already refused paths this consumer cannot resolve. Should one get
    // here anyway it gets no mirror scope (nothing is removed for it), and any member below
    // it fails its own resolution.
    if (auto r = core::resolve_mount(manifest_.back(), ctx_.mounts, policy_))
      plan.mirror_scopes.push_back({volume_index(*r), r->rel});
  }
}

Result<void> Scanner::open_archive(const fs::path& archive) {
  // The source refuses anything but gzip or zstd by its magic bytes and decompresses on a
  // thread of its own; libarchive only parses the tar it hands over.
  auto source = ArchiveSource::open(archive, {.cancel = cancel_});
  if (!source) return source.error();
  source_ = std::move(*source);
  compressed_bytes_ = source_->file_size();

  a_.reset(archive_read_new());
  if (!a_) return make_error(errc::io_failure, "archive: out of memory");
  struct archive* a = a_.get();
  if (archive_read_support_format_tar(a) != ARCHIVE_OK)
    return make_error(errc::io_failure, "libarchive lacks tar support");
  // Opening also checks the format, from the first decompressed bytes.
  if (archive_read_open2(a, source_.get(), nullptr, read_tar, nullptr, nullptr) != ARCHIVE_OK) {
    if (auto e = source_->error()) return *e;
    // Only "no reader recognised it" means not-tar; anything else is corrupt.
    if (archive_errno(a) != unrecognised_format_errno) return corrupt(a);
    const char* detail = archive_error_string(a);
    return make_error(errc::corrupt_archive, "not a tar archive: " + archive.string() + " (" +
                                                 (detail ? detail : "unrecognised content") + ")");
  }
  return {};
}

Result<void> Scanner::member(struct archive_entry* e, std::size_t index) {
  const char* raw_name = archive_entry_pathname(e);
  const std::string raw = raw_name ? raw_name : "";
  const auto type = archive_entry_filetype(e);

  if (archive_entry_hardlink(e) || type == AE_IFLNK) {
    // Links could point anywhere; the provider writes full members for real content.
    spdlog::warn("skipping {} member {} of sync archive", type == AE_IFLNK ? "symlink" : "hard-link", raw);
    return {};
  }
  if (raw.empty()) return make_error(errc::corrupt_archive, fmt::format("tar member {} has no name", index));
  if (has_dotdot_segment(raw)) return rejected("tar member name contains '..': " + raw);
  // A path of any length can be applied (the commit walks it in pieces); a single name
  // longer than the filesystem allows cannot, so it is refused here, before any disruption.
  if (auto longest = longest_segment(raw); longest > NAME_MAX)
    return rejected(fmt::format("tar member has a name of {} bytes (at most {}): {}", longest, NAME_MAX, raw));

  const std::string name = core::normalize_path("/" + raw);
  if (std::none_of(manifest_.begin(), manifest_.end(),
                   [&](const std::string& declared) { return core::path_within(name, declared); }))
    return rejected("tar member outside manifest archive_paths: " + name);

  auto resolved = core::resolve_mount(name, ctx_.mounts, policy_);
  if (!resolved) return resolved.error();

  const bool is_dir = type == AE_IFDIR;
  const std::size_t volume = volume_index(*resolved);
  if (auto r = check_target(*resolved, volume, is_dir); !r) return r;

  if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK)
    return make_error(errc::not_regular, "tar member is a device or FIFO: " + name);
  if (!is_dir && type != AE_IFREG)
    return make_error(errc::not_regular, "tar member has an unsupported type: " + name);

  if (auto r = check_types(name, is_dir); !r) return r;

  PlannedEntry entry;
  entry.container_path = name;
  entry.volume = volume;
  entry.rel = resolved->rel;
  entry.is_dir = is_dir;
  entry.mode = normalised_mode(archive_entry_perm(e), is_dir);
  entry.mtime_sec = archive_entry_mtime(e);
  entry.mtime_nsec = archive_entry_mtime_nsec(e);

  if (!is_dir) {
    const la_int64_t declared = archive_entry_size(e);
    if (!archive_entry_size_is_set(e) || declared < 0)
      return make_error(errc::corrupt_archive, "tar member has no valid size: " + name);
    entry.size = static_cast<std::uint64_t>(declared);
    if (auto r = check_size(name, entry.size); !r) return r;
    auto blob = stage(name, index, entry.size, archive_entry_sparse_count(e) > 0);
    if (!blob) return blob.error();
    entry.blob = std::move(*blob);
    plan.total_bytes += entry.size;
  }
  plan.entries.push_back(std::move(entry));
  return {};
}

std::size_t Scanner::volume_index(const core::ResolvedPath& r) {
  for (std::size_t i = 0; i < plan.volumes.size(); ++i)
    if (plan.volumes[i].host_root == r.host_root) return i;
  plan.volumes.push_back({r.host_root, r.bind});
  roots_.emplace_back();
  return plan.volumes.size() - 1;
}

// §6.4, fd-relative: nothing already in the volume may redirect the commit's writes.
Result<void> Scanner::check_target(const core::ResolvedPath& r, std::size_t volume, bool is_dir) {
  if (!roots_[volume]) {
    auto root = open_root_dir(plan.volumes[volume].host_root);
    if (!root) return root.error();
    roots_[volume] = std::move(*root);
  }
  if (r.rel.empty()) {
    if (!is_dir) return rejected("cannot replace directory with file: " + r.container_path);
    return {};
  }

  const auto slash = r.rel.rfind('/');
  const std::string parent = slash == std::string::npos ? std::string() : r.rel.substr(0, slash);
  const std::string leaf = slash == std::string::npos ? r.rel : r.rel.substr(slash + 1);
  if (!parent_.valid || parent_.volume != volume || parent_.rel != parent) {
    parent_.valid = false;
    if (auto walked = walk_parent(r, volume, parent); !walked) return walked;
  }
  if (parent_.missing) return {};

  auto fd = open_beneath(parent_.fd.get(), leaf, O_PATH | O_NOFOLLOW);
  if (!fd) return is_not_found(fd.error()) ? Result<void>() : Result<void>(fd.error());
  auto st = stat_fd(*fd, r.container_path);
  if (!st) return st.error();

  if (S_ISLNK(st->st_mode)) {
    // The commit replaces the link, never writes through it; one that leads out of the
    // volume is still refused (§6.4), as a sign of a tampered volume.
    const int err = resolve_following(roots_[volume].get(), r.rel);
    if (err == EXDEV) return escapes(r.container_path);
    if (err != 0 && err != ENOENT && err != ELOOP) return os_error(err, "resolve " + r.container_path);
    return {};
  }
  if (S_ISDIR(st->st_mode) && !is_dir) return rejected("cannot replace directory with file: " + r.container_path);
  if (!S_ISDIR(st->st_mode) && is_dir) return rejected("cannot replace file with directory: " + r.container_path);
  return {};
}

Result<void> Scanner::walk_parent(const core::ResolvedPath& r, std::size_t volume, const std::string& parent) {
  auto cur = open_beneath(roots_[volume].get(), "", O_PATH | O_DIRECTORY);
  if (!cur) return cur.error();
  parent_.missing = false;

  std::string_view rest = parent;
  std::size_t done = 0;  // length of `parent` walked so far
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    const std::string name(rest.substr(0, slash));
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    done += name.size() + (done ? 1 : 0);

    auto next = open_beneath(cur->get(), name, O_PATH | O_NOFOLLOW);
    if (!next) {
      if (!is_not_found(next.error())) return next.error();
      parent_.missing = true;
      break;
    }
    auto st = stat_fd(*next, r.container_path);
    if (!st) return st.error();
    if (S_ISLNK(st->st_mode)) return escapes(r.container_path);
    if (!S_ISDIR(st->st_mode))
      return rejected("cannot create directory over file: " + r.bind + "/" + parent.substr(0, done));
    *cur = std::move(*next);
  }

  parent_.fd = parent_.missing ? unique_fd() : std::move(*cur);
  parent_.volume = volume;
  parent_.rel = parent;
  parent_.valid = true;
  return {};
}

Result<void> Scanner::check_types(const std::string& path, bool is_dir) {
  // Ancestors deepest first; one already known as a directory had its own ancestors
  // recorded when it was, so the walk stops there.
  std::string_view ancestor = path;
  for (auto slash = ancestor.rfind('/'); slash != 0 && slash != std::string_view::npos;
       slash = ancestor.rfind('/')) {
    ancestor = ancestor.substr(0, slash);
    const auto [it, inserted] = seen_.try_emplace(std::string(ancestor), true);
    if (!it->second) return rejected("tar member type conflict: " + path);
    if (!inserted) break;
  }
  const auto [it, inserted] = seen_.try_emplace(path, is_dir);
  if (!inserted && it->second != is_dir) return rejected("tar member type conflict: " + path);
  return {};
}

Result<void> Scanner::check_size(const std::string& name, std::uint64_t size) const {
  const auto& lim = ctx_.limits;
  if (size > lim.max_member_bytes)
    return limit(fmt::format("tar member {} declares {} bytes, above the per-member limit of {} bytes", name,
                             size, lim.max_member_bytes));
  if (size > lim.max_total_bytes || plan.total_bytes > lim.max_total_bytes - size)
    return limit(fmt::format("archive content exceeds the limit of {} bytes at tar member {}",
                             lim.max_total_bytes, name));
  const std::uint64_t total = plan.total_bytes + size;
  if (total > ratio_floor_bytes &&
      static_cast<double>(total) > lim.max_expansion_ratio * static_cast<double>(compressed_bytes_))
    return limit(fmt::format("archive expands beyond {}x its compressed size of {} bytes at tar member {}",
                             lim.max_expansion_ratio, compressed_bytes_, name));
  return {};
}

Result<std::string> Scanner::stage(const std::string& name, std::size_t index, std::uint64_t size, bool sparse) {
  std::string blob = fmt::format("{:06}.blob", index);
  auto fd = open_beneath(staging_fd_.get(), blob, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (!fd) return fd.error();
  blobs_.push_back(blob);

  std::uint64_t got = 0;
  for (;;) {
    if (cancel_requested()) return cancelled();
    const char* data = nullptr;
    std::size_t n = 0;
    if (sparse) {
      // libarchive fills the holes with zeros here; a rare case, copied through a buffer.
      if (!buf_) buf_ = std::make_unique<char[]>(block_bytes);
      const la_ssize_t r = archive_read_data(a_.get(), buf_.get(), block_bytes);
      if (r < 0) return failure();
      data = buf_.get();
      n = static_cast<std::size_t>(r);
    } else {
      // Straight from the decompressed buffer: no copy through a buffer of our own.
      const void* block = nullptr;
      la_int64_t offset = 0;
      const int rc = archive_read_data_block(a_.get(), &block, &n, &offset);
      if (rc == ARCHIVE_EOF) break;
      if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) return failure();
      if (offset != static_cast<la_int64_t>(got))
        return make_error(errc::corrupt_archive,
                          fmt::format("tar member {} has data at offset {} where {} was expected", name, offset, got));
      data = static_cast<const char*>(block);
    }
    if (n == 0) {
      if (sparse) break;
      continue;
    }
    got += static_cast<std::uint64_t>(n);
    if (got > size) break;  // reported below; libarchive should never hand out more
    if (ctx_.progress) ctx_.progress->fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    if (auto w = write_all(fd->get(), std::string_view(data, n)); !w) return w.error();
  }
  if (got != size)
    return make_error(errc::corrupt_archive,
                      fmt::format("tar member {} holds {} bytes, its header declares {}", name, got, size));
  if (ctx_.fsync_blobs && ::fsync(fd->get()) != 0) return os_error(errno, "fsync " + blob);
  return blob;
}

}  // namespace

Result<ApplyPlan> scan_and_stage(const fs::path& archive, const ScanContext& ctx, const fs::path& staging_dir,
                                 const std::atomic<bool>* cancel) {
  Scanner scanner(ctx, cancel);
  if (auto r = scanner.run(archive, staging_dir); !r) {
    scanner.discard_blobs();
    return r.error();
  }
  return std::move(scanner.plan);
}

}  // namespace carsync::io
