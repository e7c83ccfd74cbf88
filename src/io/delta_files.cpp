#include "io/delta_files.hpp"

#include "core/delta_error.hpp"
#include "io/secure_fs.hpp"
#include "io/unique_fd.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

namespace carsync::io {
namespace {

using core::delta_errc;

// Copies go through one buffer of this size; decompression checks through one of the other.
constexpr std::size_t copy_buffer_bytes = 1 << 20;
constexpr std::size_t scratch_bytes = 64 << 10;
// The largest index file a valid index can be.
constexpr std::uint64_t max_index_bytes =
    core::delta_index_header_bytes + core::max_delta_chunks * core::delta_index_entry_bytes;

Error delta_error(delta_errc e, std::string text) { return Error{make_error_code(e), std::move(text)}; }

std::string quoted(const std::filesystem::path& p) { return "\"" + p.string() + "\""; }

// Reads exactly `n` bytes at `offset`; returns how many it got (fewer only at end of file).
Result<std::size_t> pread_full(int fd, std::byte* buf, std::size_t n, std::uint64_t offset, std::string_view what) {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, buf + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return os_error(errno, what);
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return got;
}

Result<void> write_bytes(int fd, std::span<const std::byte> bytes, const std::filesystem::path& file) {
  auto w = write_all(fd, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  if (!w) return os_error(w.error().code.value(), "write " + quoted(file));
  return {};
}

Result<unique_fd> create_exclusive(const std::filesystem::path& file) {
  unique_fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return os_error(errno, "create " + quoted(file));
  return fd;
}

// Opens a regular file for reading (a symlink is refused) and returns it with its size.
struct OpenedFile {
  unique_fd fd;
  std::uint64_t size = 0;
};
Result<OpenedFile> open_regular(const std::filesystem::path& file) {
  OpenedFile f;
  f.fd.reset(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!f.fd) return os_error(errno, "open " + quoted(file));
  struct stat st {};
  if (::fstat(f.fd.get(), &st) != 0) return os_error(errno, "stat " + quoted(file));
  if (!S_ISREG(st.st_mode)) return make_error(errc::not_regular, quoted(file) + " is not a regular file");
  f.size = static_cast<std::uint64_t>(st.st_size);
  return f;
}

// Removes `file` when the operation that created it did not finish.
class RemoveUnlessKept {
 public:
  explicit RemoveUnlessKept(const std::filesystem::path& file) : file_(file) {}
  ~RemoveUnlessKept() {
    if (!kept_) ::unlink(file_.c_str());
  }
  RemoveUnlessKept(const RemoveUnlessKept&) = delete;
  RemoveUnlessKept& operator=(const RemoveUnlessKept&) = delete;
  void keep() noexcept { kept_ = true; }

 private:
  const std::filesystem::path& file_;
  bool kept_ = false;
};

Result<void> fsync_parent(const std::filesystem::path& file) {
  auto parent = file.parent_path();
  if (parent.empty()) parent = ".";
  unique_fd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return os_error(errno, "open " + quoted(parent));
  return fsync_dir(dir.get());
}

// Decompresses one frame as it is fed, counting its plain bytes into a reused scratch buffer
// and never producing more than `limit` of them: a frame that would expand further stops
// there. Exactly one gzip member or zstd frame, with no byte after it.
class FrameChecker {
 public:
  explicit FrameChecker(core::FrameCodec codec) : codec_(codec), scratch_(scratch_bytes) {
    if (codec_ == core::FrameCodec::gzip) {
      if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) throw std::bad_alloc();
    } else {
      zd_ = ZSTD_createDCtx();
      if (!zd_) throw std::bad_alloc();
      // A chunk is at most 16 MiB (valid_chunker_params): a larger window is refused
      // rather than allocated.
      ZSTD_DCtx_setParameter(zd_, ZSTD_d_windowLogMax, 25);
    }
  }
  ~FrameChecker() {
    if (codec_ == core::FrameCodec::gzip) inflateEnd(&z_);
    else ZSTD_freeDCtx(zd_);
  }
  FrameChecker(const FrameChecker&) = delete;
  FrameChecker& operator=(const FrameChecker&) = delete;

  void start(std::uint64_t limit) {
    limit_ = limit;
    produced_ = 0;
    ended_ = false;
    header_seen_ = false;
    fault_.clear();
    if (codec_ == core::FrameCodec::gzip) inflateReset(&z_);
    else ZSTD_DCtx_reset(zd_, ZSTD_reset_session_only);
  }

  // Feeds the frame's next bytes; false once the frame is known bad (fault() says why).
  bool feed(std::span<const std::byte> in) {
    if (!fault_.empty()) return false;
    if (codec_ == core::FrameCodec::gzip) return feed_gzip(in);
    return feed_zstd(in);
  }

  // After the last bytes: the plain size, or the fault.
  bool finish() {
    if (!fault_.empty()) return false;
    if (!ended_) fault_ = "ends inside its compressed stream";
    return fault_.empty();
  }
  std::uint64_t produced() const noexcept { return produced_; }
  const std::string& fault() const noexcept { return fault_; }

 private:
  std::size_t room() const noexcept {
    return static_cast<std::size_t>(std::min<std::uint64_t>(scratch_.size(), limit_ - produced_));
  }
  bool over_limit() {
    if (produced_ < limit_) return false;
    fault_ = "decompresses past " + std::to_string(limit_ - 1) + " bytes";
    return true;
  }

  bool feed_gzip(std::span<const std::byte> in) {
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    while (z_.avail_in > 0) {
      if (ended_) {
        fault_ = "holds bytes after its gzip member";
        return false;
      }
      z_.next_out = reinterpret_cast<Bytef*>(scratch_.data());
      z_.avail_out = static_cast<uInt>(room());
      const uInt before = z_.avail_out;
      const int rc = inflate(&z_, Z_NO_FLUSH);
      produced_ += before - z_.avail_out;
      if (over_limit()) return false;
      if (rc == Z_STREAM_END) {
        ended_ = true;
        continue;
      }
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        fault_ = std::string("is not a valid gzip member (") + (z_.msg ? z_.msg : "zlib error") + ")";
        return false;
      }
      if (rc == Z_BUF_ERROR && z_.avail_in > 0 && z_.avail_out > 0) {
        fault_ = "is not a valid gzip member";  // no progress with room on both sides
        return false;
      }
    }
    return true;
  }

  bool feed_zstd(std::span<const std::byte> bytes) {
    if (produced_ == 0 && !ended_ && !header_seen_) {
      // The frame's header may declare its content size: the streaming decoder does not
      // hold the frame to it (a one-shot decoder, or another consumer, would refuse it).
      header_seen_ = true;
      const unsigned long long declared = ZSTD_getFrameContentSize(bytes.data(), bytes.size());
      if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != ZSTD_CONTENTSIZE_ERROR && declared != limit_ - 1) {
        fault_ = "declares " + std::to_string(declared) + " bytes of content";
        return false;
      }
    }
    ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
    while (in.pos < in.size) {
      if (ended_) {
        fault_ = "holds bytes after its zstd frame";
        return false;
      }
      ZSTD_outBuffer out{scratch_.data(), room(), 0};
      const std::size_t rc = ZSTD_decompressStream(zd_, &out, &in);
      produced_ += out.pos;
      if (over_limit()) return false;
      if (ZSTD_isError(rc)) {
        fault_ = std::string("is not a valid zstd frame (") + ZSTD_getErrorName(rc) + ")";
        return false;
      }
      if (rc == 0) {
        ended_ = true;
        continue;
      }
    }
    // Input used up: the frame may still hold output in the decoder; drain it.
    while (!ended_) {
      ZSTD_outBuffer out{scratch_.data(), room(), 0};
      ZSTD_inBuffer none{nullptr, 0, 0};
      const std::size_t rc = ZSTD_decompressStream(zd_, &out, &none);
      produced_ += out.pos;
      if (over_limit()) return false;
      if (ZSTD_isError(rc)) {
        fault_ = std::string("is not a valid zstd frame (") + ZSTD_getErrorName(rc) + ")";
        return false;
      }
      if (rc == 0) ended_ = true;
      else if (out.pos == 0) break;  // needs more input
    }
    return true;
  }

  core::FrameCodec codec_;
  std::vector<std::byte> scratch_;
  z_stream z_{};
  ZSTD_DCtx* zd_ = nullptr;
  std::uint64_t limit_ = 0;
  std::uint64_t produced_ = 0;
  bool ended_ = false;
  bool header_seen_ = false;
  std::string fault_;
};

// Hashes the whole of an open file (a fetched pack, before it is trusted).
Result<Sha256Digest> hash_file(int fd, std::uint64_t size, std::vector<std::byte>& buf, std::string_view what) {
  Sha256 h;
  for (std::uint64_t at = 0; at < size;) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - at));
    auto got = pread_full(fd, buf.data(), want, at, what);
    if (!got) return got.error();
    if (*got != want) return delta_error(delta_errc::pack_mismatch, std::string(what) + ": shorter than it was");
    h.update(std::span(buf.data(), want));
    at += want;
  }
  return h.finish();
}

Result<void> copy_file_contents(int from, std::uint64_t size, int to, const std::filesystem::path& to_name) {
  std::vector<std::byte> buf(copy_buffer_bytes);
  for (std::uint64_t at = 0; at < size;) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - at));
    auto got = pread_full(from, buf.data(), want, at, "read the archive");
    if (!got) return got.error();
    if (*got != want) return make_error(errc::io_failure, "the archive shrank while it was copied");
    if (auto w = write_bytes(to, std::span(buf.data(), want), to_name); !w) return w.error();
    at += want;
  }
  return {};
}

}  // namespace

// ---- provider ----------------------------------------------------------------------------

Result<FileSeal> write_pack(const std::filesystem::path& archive, std::span<const core::PackPiece> pieces,
                            const std::filesystem::path& pack) {
  auto src = open_regular(archive);
  if (!src) return src.error();
  auto out = create_exclusive(pack);
  if (!out) return out.error();
  RemoveUnlessKept guard(pack);
  std::vector<std::byte> buf(copy_buffer_bytes);
  Sha256 h;
  FileSeal seal;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const auto& p = pieces[i];
    if (p.archive_offset > src->size || p.size > src->size - p.archive_offset)
      return make_error(errc::io_failure, "pack piece " + std::to_string(i) + " (bytes " +
                                              std::to_string(p.archive_offset) + "+" + std::to_string(p.size) +
                                              ") lies beyond the archive's " + std::to_string(src->size) + " bytes");
    for (std::uint64_t done = 0; done < p.size;) {
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), p.size - done));
      auto got = pread_full(src->fd.get(), buf.data(), want, p.archive_offset + done, "read " + quoted(archive));
      if (!got) return got.error();
      if (*got != want) return make_error(errc::io_failure, quoted(archive) + " shrank while the pack was written");
      const std::span<const std::byte> bytes(buf.data(), want);
      if (auto w = write_bytes(out->get(), bytes, pack); !w) return w.error();
      h.update(bytes);
      done += want;
    }
    seal.size += p.size;
  }
  seal.sha256 = h.finish();
  guard.keep();
  return seal;
}

Result<FileSeal> write_file_sealed(const std::filesystem::path& file, std::span<const std::byte> bytes,
                                   bool durable) {
  auto out = create_exclusive(file);
  if (!out) return out.error();
  RemoveUnlessKept guard(file);
  if (auto w = write_bytes(out->get(), bytes, file); !w) return w.error();
  if (durable) {
    if (::fsync(out->get()) != 0) return os_error(errno, "fsync " + quoted(file));
    if (auto s = fsync_parent(file); !s) return s.error();
  }
  Sha256 h;
  h.update(bytes);
  guard.keep();
  return FileSeal{bytes.size(), h.finish()};
}

Result<core::DeltaIndex> read_index(const std::filesystem::path& file, const std::optional<ExpectedBytes>& expected) {
  auto f = open_regular(file);
  if (!f) return f.error();
  if (expected && f->size != expected->size)
    return delta_error(delta_errc::index_mismatch, "delta index " + quoted(file) + " has " + std::to_string(f->size) +
                                                       " bytes, the record says " + std::to_string(expected->size));
  // Refused before a byte is read or allocated.
  if (f->size > max_index_bytes)
    return delta_error(delta_errc::malformed_index, "delta index " + quoted(file) + " has " +
                                                        std::to_string(f->size) + " bytes, above the largest valid " +
                                                        std::to_string(max_index_bytes));
  std::vector<std::byte> bytes(static_cast<std::size_t>(f->size) + 1);  // one more: growth shows
  auto got = pread_full(f->fd.get(), bytes.data(), bytes.size(), 0, "read " + quoted(file));
  if (!got) return got.error();
  if (*got != f->size)
    return delta_error(delta_errc::index_mismatch, "delta index " + quoted(file) + " changed while it was read");
  bytes.resize(*got);
  if (expected) {
    Sha256 h;
    h.update(bytes);
    if (h.finish() != expected->sha256)
      return delta_error(delta_errc::index_mismatch,
                         "delta index " + quoted(file) + " does not hash to the SHA-256 the record names");
  }
  return core::parse_index(bytes);
}

// ---- consumer ----------------------------------------------------------------------------

Result<FileSeal> reassemble(const AssembleInput& in, const std::filesystem::path& out) {
  if (!in.next || !in.plan || in.plan->mode != core::FetchMode::delta ||
      in.plan->sources.size() != in.next->chunks.size())
    return make_error(errc::invalid_request, "reassemble: the plan is not a delta plan of this index");
  const core::DeltaIndex& next = *in.next;
  const core::FetchPlan& plan = *in.plan;
  std::vector<std::byte> buf(copy_buffer_bytes);
  auto cancelled = [&] { return in.cancel && in.cancel->load(std::memory_order_relaxed); };

  // Every pack: the file fetched for it, its size and its SHA-256, before anything is written.
  struct OpenPack {
    std::uint64_t serial;
    OpenedFile file;
  };
  std::vector<OpenPack> packs;
  packs.reserve(plan.packs.size());
  for (const auto& ref : plan.packs) {
    if (cancelled()) return make_error(errc::cancelled, "reassembly cancelled");
    const std::string name = "pack " + std::to_string(ref.serial);
    auto path = in.packs.find(ref.serial);
    if (path == in.packs.end()) return delta_error(delta_errc::pack_mismatch, name + " was not fetched");
    auto f = open_regular(path->second);
    if (!f) return delta_error(delta_errc::pack_mismatch, name + ": " + f.error().message);
    if (f->size != ref.size)
      return delta_error(delta_errc::pack_mismatch, name + " has " + std::to_string(f->size) +
                                                        " bytes, the record says " + std::to_string(ref.size));
    auto sha = hash_file(f->fd.get(), f->size, buf, "read " + name);
    if (!sha) return delta_error(delta_errc::pack_mismatch, sha.error().message);
    if (*sha != ref.sha256)
      return delta_error(delta_errc::pack_mismatch, name + " does not hash to the SHA-256 the record names");
    packs.push_back(OpenPack{ref.serial, std::move(*f)});
  }
  auto pack_of = [&](std::uint64_t serial) -> const OpenPack* {
    auto it = std::find_if(packs.begin(), packs.end(), [&](const OpenPack& p) { return p.serial == serial; });
    return it == packs.end() ? nullptr : &*it;
  };

  // Every frame's place, checked against the files before the output exists.
  OpenedFile base;
  bool need_base = std::any_of(plan.sources.begin(), plan.sources.end(), [](const auto& s) { return s.from_base; });
  if (need_base) {
    if (!in.base_archive) return delta_error(delta_errc::base_unusable, "no base archive to take frames from");
    auto f = open_regular(*in.base_archive);
    if (!f) return delta_error(delta_errc::base_unusable, "base archive: " + f.error().message);
    base = std::move(*f);
  }
  for (std::size_t i = 0; i < plan.sources.size(); ++i) {
    const auto& s = plan.sources[i];
    const std::uint64_t size = next.chunks[i].frame_size;
    if (s.from_base) {
      if (s.offset > base.size || size > base.size - s.offset)
        return delta_error(delta_errc::base_unusable, "frame " + std::to_string(i) + " lies beyond the base archive's " +
                                                          std::to_string(base.size) + " bytes");
      continue;
    }
    const OpenPack* p = pack_of(s.pack_serial);
    if (!p)
      return delta_error(delta_errc::pack_mismatch,
                         "frame " + std::to_string(i) + " is in pack " + std::to_string(s.pack_serial) +
                             ", which the plan does not fetch");
    if (s.offset > p->file.size || size > p->file.size - s.offset)
      return delta_error(delta_errc::pack_mismatch, "frame " + std::to_string(i) + " (bytes " +
                                                        std::to_string(s.offset) + "+" + std::to_string(size) +
                                                        ") lies beyond pack " + std::to_string(s.pack_serial) +
                                                        "'s " + std::to_string(p->file.size) + " bytes");
  }

  auto created = create_exclusive(out);
  if (!created) return created.error();
  unique_fd dst = std::move(*created);
  RemoveUnlessKept guard(out);
  FrameChecker checker(next.codec);
  Sha256 whole;
  std::uint64_t written = 0;
  for (std::size_t i = 0; i < plan.sources.size(); ++i) {
    if (cancelled()) return make_error(errc::cancelled, "reassembly cancelled");
    const auto& s = plan.sources[i];
    const auto& entry = next.chunks[i];
    const std::string name = "frame " + std::to_string(i);
    const int src = s.from_base ? base.fd.get() : pack_of(s.pack_serial)->file.fd.get();
    Sha256 frame_hash;
    if (!s.from_base) checker.start(std::uint64_t{entry.plain_size} + 1);
    for (std::uint64_t done = 0; done < entry.frame_size;) {
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), entry.frame_size - done));
      auto got = pread_full(src, buf.data(), want, s.offset + done, "read " + name);
      if (!got)
        return delta_error(s.from_base ? delta_errc::base_unusable : delta_errc::pack_mismatch, got.error().message);
      if (*got != want)
        return delta_error(s.from_base ? delta_errc::base_unusable : delta_errc::pack_mismatch,
                           name + ": its " + (s.from_base ? std::string("base archive") : "pack " + std::to_string(s.pack_serial)) +
                               " shrank while it was read");
      const std::span<const std::byte> bytes(buf.data(), want);
      if (!s.from_base) {
        // A frame that fails to decompress is read to its end all the same: one whose bytes
        // are not its id's is a frame_mismatch first (checked below), whatever they hold.
        frame_hash.update(bytes);
        (void)checker.feed(bytes);
      }
      if (auto w = write_bytes(dst.get(), bytes, out); !w) return w.error();
      whole.update(bytes);
      done += want;
    }
    if (!s.from_base) {
      if (frame_hash.finish() != entry.id)
        return delta_error(delta_errc::frame_mismatch, name + " (pack " + std::to_string(s.pack_serial) + ", offset " +
                                                           std::to_string(s.offset) + ") does not hash to its chunk id");
      if (!checker.finish())
        return delta_error(delta_errc::frame_size_mismatch,
                           name + " (pack " + std::to_string(s.pack_serial) + ") " + checker.fault());
      if (checker.produced() != entry.plain_size)
        return delta_error(delta_errc::frame_size_mismatch,
                           name + " (pack " + std::to_string(s.pack_serial) + ") decompresses to " +
                               std::to_string(checker.produced()) + " bytes, its entry says " +
                               std::to_string(entry.plain_size));
    }
    written += entry.frame_size;
  }
  const Sha256Digest digest = whole.finish();
  if (digest != in.expected)
    return delta_error(delta_errc::archive_mismatch, "reassembled archive hashes to " + to_hex(digest) +
                                                         ", the record says " + to_hex(in.expected));
  if (::close(dst.release()) != 0) return os_error(errno, "close " + quoted(out));
  guard.keep();
  return FileSeal{written, digest};
}

// ---- the consumer's base -----------------------------------------------------------------

namespace {
constexpr const char* base_archive_name = "base.archive";
constexpr const char* base_index_name = "base.index";
constexpr std::string_view temp_prefix = ".base-";

// Temporaries an interrupted install left behind.
void remove_temps(const std::filesystem::path& dir) noexcept {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().starts_with(temp_prefix)) {
      std::error_code ignored;
      std::filesystem::remove(it->path(), ignored);
    }
  }
}
}  // namespace

DeltaBase::DeltaBase(std::filesystem::path dir) : dir_(std::move(dir)) {}

std::optional<DeltaBase::Loaded> DeltaBase::load(std::string* why) const {
  auto say = [&](std::string text) {
    if (why) *why = std::move(text);
    return std::nullopt;
  };
  auto index = read_index(dir_ / base_index_name, std::nullopt);
  if (!index) return say("base index: " + index.error().message);
  Loaded loaded{std::move(*index), dir_ / base_archive_name};
  struct stat st {};
  if (::lstat(loaded.archive.c_str(), &st) != 0) return say("base archive: " + std::string(std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) return say("base archive is not a regular file");
  if (static_cast<std::uint64_t>(st.st_size) != loaded.index.archive_size)
    return say("base archive has " + std::to_string(st.st_size) + " bytes, its index says " +
               std::to_string(loaded.index.archive_size));
  return loaded;
}

Result<void> DeltaBase::install(const std::filesystem::path& archive, std::span<const std::byte> index_bytes) {
  auto index = core::parse_index(index_bytes);
  if (!index) return index.error();
  auto src = open_regular(archive);
  if (!src) return src.error();
  if (src->size != index->archive_size)
    return delta_error(delta_errc::index_mismatch, quoted(archive) + " has " + std::to_string(src->size) +
                                                       " bytes, its index says " + std::to_string(index->archive_size));
  std::error_code ec;
  std::filesystem::create_directories(dir_.parent_path(), ec);
  if (ec) return os_error(ec.value(), "create " + quoted(dir_.parent_path()));
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) return os_error(errno, "mkdir " + quoted(dir_));
  remove_temps(dir_);

  const auto tmp_archive = dir_ / random_name(temp_prefix, ".archive");
  const auto tmp_index = dir_ / random_name(temp_prefix, ".index");
  RemoveUnlessKept archive_guard(tmp_archive);
  RemoveUnlessKept index_guard(tmp_index);
  if (::link(archive.c_str(), tmp_archive.c_str()) != 0) {
    // Another filesystem (EXDEV), or one without hard links (EPERM): a copy.
    if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != ENOTSUP)
      return os_error(errno, "link " + quoted(archive) + " into " + quoted(dir_));
    auto dst = create_exclusive(tmp_archive);
    if (!dst) return dst.error();
    if (auto c = copy_file_contents(src->fd.get(), src->size, dst->get(), tmp_archive); !c) return c.error();
    if (::fsync(dst->get()) != 0) return os_error(errno, "fsync " + quoted(tmp_archive));
  }
  if (auto w = write_file_sealed(tmp_index, index_bytes, true); !w) return w.error();
  // Index first: an index naming an archive of another size makes load refuse the pair,
  // and every reassembly's whole-archive hash catches the rest.
  if (::rename(tmp_index.c_str(), (dir_ / base_index_name).c_str()) != 0)
    return os_error(errno, "rename " + quoted(tmp_index));
  index_guard.keep();
  if (::rename(tmp_archive.c_str(), (dir_ / base_archive_name).c_str()) != 0)
    return os_error(errno, "rename " + quoted(tmp_archive));
  // Not kept: the guard's unlink finds nothing, except when `archive` was the base archive
  // itself (rename between two links of one file does nothing), where it drops the extra link.
  unique_fd dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return os_error(errno, "open " + quoted(dir_));
  return fsync_dir(dir.get());
}

void DeltaBase::clear() noexcept {
  std::error_code ec;
  std::filesystem::remove(dir_ / base_index_name, ec);
  std::filesystem::remove(dir_ / base_archive_name, ec);
  remove_temps(dir_);
}

}  // namespace carsync::io
