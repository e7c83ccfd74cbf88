#include "io/archive_source.hpp"

#include "io/signal_blocker.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace carsync::io {
namespace {

Error corrupt(std::string message) { return make_error(errc::corrupt_archive, "corrupt archive: " + std::move(message)); }
Error cancelled() { return make_error(errc::cancelled, "archive scan cancelled"); }

// What the reader does with one chunk of compressed input.
struct Step {
  std::size_t consumed = 0;
  std::size_t produced = 0;
  bool member_end = false;  // a gzip member or zstd frame ended (all its output produced)
};

// One gzip member after another (pigz, bgzip and concatenated files are several members).
class GzipDecoder {
 public:
  GzipDecoder() {
    // 16 + 15: gzip framing only (no zlib or raw deflate), the largest window; the trailer's
    // CRC-32 and length are checked by inflate itself.
    if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) throw std::bad_alloc();
  }
  ~GzipDecoder() { inflateEnd(&z_); }
  GzipDecoder(const GzipDecoder&) = delete;
  GzipDecoder& operator=(const GzipDecoder&) = delete;

  static bool starts_member(std::byte b) { return b == std::byte{0x1f}; }
  void next_member() { inflateReset(&z_); }

  Result<Step> decode(const std::byte* in, std::size_t in_len, std::byte* out, std::size_t out_len) {
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in));
    z_.avail_in = static_cast<uInt>(std::min<std::size_t>(in_len, UINT_MAX));
    z_.next_out = reinterpret_cast<Bytef*>(out);
    z_.avail_out = static_cast<uInt>(std::min<std::size_t>(out_len, UINT_MAX));
    const uInt avail_in = z_.avail_in, avail_out = z_.avail_out;
    const int rc = inflate(&z_, Z_NO_FLUSH);
    Step s{avail_in - z_.avail_in, avail_out - z_.avail_out, rc == Z_STREAM_END};
    if (rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR) return s;
    if (rc == Z_MEM_ERROR) return make_error(errc::io_failure, "gzip decompression: out of memory");
    return corrupt(std::string("gzip data error: ") + (z_.msg ? z_.msg : "invalid data"));
  }
  static const char* truncated() { return "truncated gzip input"; }

 private:
  z_stream z_{};
};

// Any number of zstd frames, skippable frames included (libzstd handles those itself).
class ZstdDecoder {
 public:
  ZstdDecoder() : d_(ZSTD_createDStream()) {
    if (!d_) throw std::bad_alloc();
  }
  ~ZstdDecoder() { ZSTD_freeDStream(d_); }
  ZstdDecoder(const ZstdDecoder&) = delete;
  ZstdDecoder& operator=(const ZstdDecoder&) = delete;

  // Frame magic 28 b5 2f fd or a skippable frame's 5? 2a 4d 18 (little-endian).
  static bool starts_member(std::byte b) {
    return b == std::byte{0x28} || (static_cast<unsigned>(b) & 0xf0) == 0x50;
  }
  void next_member() {}

  Result<Step> decode(const std::byte* in, std::size_t in_len, std::byte* out, std::size_t out_len) {
    ZSTD_inBuffer ib{in, in_len, 0};
    ZSTD_outBuffer ob{out, out_len, 0};
    const std::size_t rc = ZSTD_decompressStream(d_, &ob, &ib);
    // The text is libarchive's, whose zstd filter this replaces (callers match on it).
    if (ZSTD_isError(rc)) return corrupt(std::string("Zstd decompression failed: ") + ZSTD_getErrorName(rc));
    return Step{ib.pos, ob.pos, rc == 0};
  }
  static const char* truncated() { return "truncated zstd input"; }

 private:
  ZSTD_DStream* d_;
};

std::string describe_start(int fd, std::uint64_t size) {
  if (size == 0) return "the file is empty";
  unsigned char head[4]{};
  const ssize_t n = ::pread(fd, head, sizeof head, 0);
  std::string hex;
  for (ssize_t i = 0; i < n; ++i) hex += fmt::format("{}{:02x}", i ? " " : "", head[i]);
  char ustar[5]{};
  if (size >= 262 && ::pread(fd, ustar, sizeof ustar, 257) == 5 && std::memcmp(ustar, "ustar", 5) == 0)
    return "an uncompressed tar archive";
  return "it starts with " + hex;
}

}  // namespace

Result<std::unique_ptr<ArchiveSource>> ArchiveSource::open(const std::filesystem::path& archive,
                                                           ArchiveSourceOptions options) {
  unique_fd fd(::open(archive.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return os_error(errno, "open " + archive.string());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return os_error(errno, "stat " + archive.string());
  if (!S_ISREG(st.st_mode))
    return make_error(errc::corrupt_archive, "not a tar archive: " + archive.string() + " is not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);

  unsigned char magic[4]{};
  ssize_t got = 0;
  while ((got = ::pread(fd.get(), magic, sizeof magic, 0)) < 0 && errno == EINTR) {
  }
  if (got < 0) return os_error(errno, "read " + archive.string());
  std::optional<ArchiveCompression> c;
  if (got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) c = ArchiveCompression::gzip;
  if (got >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd)
    c = ArchiveCompression::zstd;
  if (!c)
    return make_error(errc::corrupt_archive, "not a tar archive compressed with gzip or zstd: " + archive.string() +
                                                 " (" + describe_start(fd.get(), size) + ")");
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);  // a hint only: failure is harmless
  options.buffers = std::max<std::size_t>(options.buffers, 2);
  options.buffer_bytes = std::max<std::size_t>(options.buffer_bytes, 4096);
  options.read_bytes = std::max<std::size_t>(options.read_bytes, 4096);
  try {
    return std::unique_ptr<ArchiveSource>(new ArchiveSource(std::move(fd), archive.string(), size, *c, options));
  } catch (const std::system_error& e) {  // no thread to be had (a resource limit)
    return make_error(errc::io_failure, "archive reader thread: " + std::string(e.what()));
  } catch (const std::bad_alloc&) {
    return make_error(errc::io_failure, "archive read-ahead buffers: out of memory");
  }
}

ArchiveSource::ArchiveSource(unique_fd fd, std::string name, std::uint64_t size, ArchiveCompression c,
                             ArchiveSourceOptions o)
    : fd_(std::move(fd)), name_(std::move(name)), file_size_(size), compression_(c), options_(o) {
  storage_.resize(options_.buffers);
  for (auto& b : storage_) {
    b.resize(options_.buffer_bytes);
    free_.push_back(&b);
  }
  const SignalBlocker no_signals;  // the reader inherits it: signals stay with the application
  reader_ = std::jthread([this](std::stop_token stop) { run(std::move(stop)); });
}

ArchiveSource::~ArchiveSource() {
  // request_stop wakes a reader waiting for a buffer (condition_variable_any + stop_token).
  reader_.request_stop();
  if (reader_.joinable()) reader_.join();
}

void ArchiveSource::run(std::stop_token stop) {
  Sha256 hash;
  Result<void> r = [&]() -> Result<void> {
    try {
      return pump(stop, hash);
    } catch (const std::bad_alloc&) {
      return make_error(errc::io_failure, "archive decompression: out of memory");
    }
  }();
  std::lock_guard lk(mu_);
  if (!r) {
    if (!error_) error_ = std::move(r.error());
  } else {
    digest_ = hash.finish();
    ended_ = true;
  }
  cv_.notify_all();
}

std::vector<std::byte>* ArchiveSource::acquire(std::stop_token& stop) {
  std::unique_lock lk(mu_);
  if (!cv_.wait(lk, stop, [&] { return !free_.empty(); })) return nullptr;
  auto* b = free_.back();
  free_.pop_back();
  return b;
}

void ArchiveSource::publish(std::vector<std::byte>* buf, std::size_t used) {
  std::lock_guard lk(mu_);
  filled_.push_back({buf, used});
  cv_.notify_all();
}

Result<void> ArchiveSource::pump(std::stop_token& stop, Sha256& hash) {
  const bool is_gz = compression_ == ArchiveCompression::gzip;
  std::optional<GzipDecoder> gzip;
  std::optional<ZstdDecoder> zstd;
  if (is_gz) gzip.emplace();
  else zstd.emplace();
  auto decode = [&](const std::byte* in, std::size_t n, std::byte* out, std::size_t m) {
    return is_gz ? gzip->decode(in, n, out, m) : zstd->decode(in, n, out, m);
  };
  auto starts_member = [&](std::byte b) { return is_gz ? GzipDecoder::starts_member(b) : ZstdDecoder::starts_member(b); };
  const char* truncated = is_gz ? GzipDecoder::truncated() : ZstdDecoder::truncated();

  std::vector<std::byte> in(options_.read_bytes);
  std::vector<std::byte>* out = nullptr;
  std::size_t used = 0;
  const std::size_t cap = options_.buffer_bytes;
  bool open = true;        // inside a member/frame (the file starts with one: the magic matched)
  bool boundary = false;   // a member ended: the next input byte decides what follows
  bool decoding = true;    // false past the last member (trailing bytes) or once skipped
  std::uint64_t offset = 0;  // of the current chunk in the file

  auto flush = [&] {
    if (out && used > 0) {
      publish(out, used);
      out = nullptr;
    }
  };

  for (;;) {
    if (stop.stop_requested()) return cancelled();
    if (options_.cancel && options_.cancel->load(std::memory_order_relaxed)) return cancelled();
    ssize_t n = ::read(fd_.get(), in.data(), in.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(errno, "read " + name_);
    }
    if (n == 0) break;
    const auto len = static_cast<std::size_t>(n);
    hash.update({in.data(), len});
    const std::uint64_t chunk_offset = offset;
    offset += len;
    if (decoding && skip_decoding_.load(std::memory_order_relaxed)) decoding = false;
    if (!decoding) continue;

    const std::byte* p = in.data();
    const std::byte* const end = p + len;
    while (p < end) {
      if (boundary) {
        if (!starts_member(*p)) {
          // Libarchive and Python's tarfile stop reading at the tar end marker, so bytes
          // after the last member never mattered to them; they are hashed, not decoded.
          spdlog::warn("archive {}: {} bytes after the last {} at offset {} are not compressed data; ignored",
                       name_, file_size_ - (chunk_offset + static_cast<std::uint64_t>(p - in.data())),
                       is_gz ? "gzip member" : "zstd frame", chunk_offset + static_cast<std::uint64_t>(p - in.data()));
          decoding = false;
          break;
        }
        if (is_gz) gzip->next_member();
        boundary = false;
        open = true;
      }
      if (!out) {
        out = acquire(stop);
        if (!out) return cancelled();
        used = 0;
      }
      auto step = decode(p, static_cast<std::size_t>(end - p), out->data() + used, cap - used);
      if (!step) {
        auto e = step.error();
        e.message += fmt::format(" (near compressed byte {} of {})",
                                 chunk_offset + static_cast<std::uint64_t>(p - in.data()), name_);
        return e;
      }
      p += step->consumed;
      used += step->produced;
      if (step->member_end) {
        open = false;
        boundary = true;
      } else if (step->consumed == 0 && step->produced == 0 && used < cap) {
        return corrupt(fmt::format("{} decoder made no progress at byte {}", is_gz ? "gzip" : "zstd",
                                   chunk_offset + static_cast<std::uint64_t>(p - in.data())));
      }
      if (used == cap) {
        publish(out, used);
        out = nullptr;
      }
    }
  }

  // End of file: what the decoder still holds is flushed; a member still open is truncated.
  while (decoding && open && !skip_decoding_.load(std::memory_order_relaxed)) {
    if (stop.stop_requested()) return cancelled();
    if (!out) {
      out = acquire(stop);
      if (!out) return cancelled();
      used = 0;
    }
    auto step = decode(nullptr, 0, out->data() + used, cap - used);
    if (!step) return step.error();
    used += step->produced;
    if (step->member_end) open = false;
    else if (step->produced == 0) return corrupt(std::string(truncated) + " (" + name_ + ")");
    if (used == cap) {
      publish(out, used);
      out = nullptr;
    }
  }
  flush();
  return {};
}

Result<std::span<const std::byte>> ArchiveSource::next() {
  std::unique_lock lk(mu_);
  if (held_) {
    free_.push_back(held_);
    held_ = nullptr;
    cv_.notify_all();
  }
  cv_.wait(lk, [&] { return error_ || !filled_.empty() || ended_; });
  if (error_) return *error_;
  if (filled_.empty()) return std::span<const std::byte>{};
  const auto f = filled_.front();
  filled_.pop_front();
  held_ = f.buf;
  return std::span<const std::byte>(f.buf->data(), f.used);
}

std::optional<Error> ArchiveSource::error() const {
  std::lock_guard lk(mu_);
  return error_;
}

Result<Sha256Digest> ArchiveSource::finish(std::uint64_t trailing_budget) {
  std::uint64_t drained = 0;
  for (;;) {
    auto block = next();
    if (!block) return block.error();
    if (block->empty()) break;
    drained += block->size();
    if (drained > trailing_budget) skip_decoding_.store(true, std::memory_order_relaxed);
  }
  std::lock_guard lk(mu_);
  return *digest_;
}

}  // namespace carsync::io
