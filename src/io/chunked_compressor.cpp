#include "io/chunked_compressor.hpp"

#include "io/compute_pool.hpp"
#include "io/ordered_window.hpp"
#include "io/frame_id.hpp"
#include "io/parallel_gzip.hpp"  // deflate_raw, the gzip member framing
#include "io/sha256.hpp"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <utility>

namespace carsync::io {
namespace {

// zstd contexts for one stream's frames, reused from frame to frame: creating one costs more
// than compressing a small chunk at low levels. At most one per thread compressing at once
// (the pool's threads and the writer), all freed with the stream, so a level-19 build does
// not leave its large contexts behind on the pool's threads. ZSTD_compress2's output depends
// only on the parameters and the input, never on what a context compressed before, so frames
// stay the same at any thread count.
struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
};
using CCtxPtr = std::unique_ptr<ZSTD_CCtx, CCtxFree>;

class CCtxCache {
 public:
  CCtxPtr take() {
    {
      std::lock_guard lk(mu_);
      if (!free_.empty()) {
        CCtxPtr c = std::move(free_.back());
        free_.pop_back();
        return c;
      }
    }
    return CCtxPtr(ZSTD_createCCtx());
  }
  void give(CCtxPtr c) noexcept {
    std::lock_guard lk(mu_);
    try {
      free_.push_back(std::move(c));
    } catch (const std::bad_alloc&) {
      // Not kept: `c` still owns the context and frees it.
    }
  }

 private:
  std::mutex mu_;
  std::vector<CCtxPtr> free_;
};

// One chunk of plain tar and, once compressed, its frame and the frame's id.
struct Frame final : OrderedWindow::Job {
  std::vector<std::byte> in;
  core::FrameCodec codec = core::FrameCodec::gzip;
  int level = 6;
  std::uint32_t plain = 0;
  std::shared_ptr<CCtxCache> cctx;  // zstd only
  std::vector<std::byte> out;
  core::ChunkId id{};
  std::string error;  // empty: compressed

  void run() noexcept override {
    try {
      if (codec == core::FrameCodec::zstd)
        zstd_frame();
      else
        gzip_member();
      if (error.empty()) {
        // Named here, beside the compression, so the writer's thread only writes.
        id = frame_id(out);
      }
    } catch (const std::bad_alloc&) {
      error = "out of memory";
    } catch (const std::exception& e) {
      error = e.what();
    }
    // The input is no longer needed; freeing it now keeps the window's memory to its outputs.
    std::vector<std::byte>().swap(in);
  }

 private:
  // A whole gzip member (RFC 1952): the header parallel_gzip writes (no name, MTIME 0, so the
  // bytes depend on the input only), raw deflate ended with Z_FINISH, CRC-32 and size.
  void gzip_member() {
    const auto header = gzip_header(level);
    out.assign(reinterpret_cast<const std::byte*>(header.data()),
               reinterpret_cast<const std::byte*>(header.data()) + header.size());
    // Stored when deflate could not gain, as parallel_gzip decides (on the bytes alone).
    if (error = deflate_raw(level, {}, in, true, out); !error.empty()) return;
    const auto trailer = gzip_trailer(
        static_cast<std::uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(in.data()), in.size())), in.size());
    out.insert(out.end(), reinterpret_cast<const std::byte*>(trailer.data()),
               reinterpret_cast<const std::byte*>(trailer.data()) + trailer.size());
  }

  // One zstd frame with its content size and checksum, as the zstd tool writes them.
  void zstd_frame() {
    CCtxPtr owned = cctx->take();
    if (!owned) {
      error = "out of memory";
      return;
    }
    struct GiveBack {
      CCtxCache& cache;
      CCtxPtr& c;
      ~GiveBack() { cache.give(std::move(c)); }
    } give_back{*cctx, owned};
    ZSTD_CCtx* c = owned.get();
    ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
    for (auto [p, v] : {std::pair{ZSTD_c_compressionLevel, level}, std::pair{ZSTD_c_checksumFlag, 1},
                        std::pair{ZSTD_c_contentSizeFlag, 1}})
      if (auto rc = ZSTD_CCtx_setParameter(c, p, v); ZSTD_isError(rc)) {
        error = std::string("zstd parameter: ") + ZSTD_getErrorName(rc);
        return;
      }
    out.resize(ZSTD_compressBound(in.size()));
    const std::size_t n = ZSTD_compress2(c, out.data(), out.size(), in.data(), in.size());
    if (ZSTD_isError(n)) {
      error = std::string("zstd compression: ") + ZSTD_getErrorName(n);
      return;
    }
    out.resize(n);
  }
};

const char* codec_name(core::FrameCodec c) { return c == core::FrameCodec::zstd ? "zstd" : "gzip"; }

}  // namespace

struct ChunkedCompressor::Impl {
  Impl(const ChunkedOptions& o, ByteSink s)
      : opts(o),
        sink(std::move(s)),
        chunker(o.chunker),
        window(o.compute, o.window ? o.window : o.compute ? 2 * std::size_t{o.compute->size()} + 2 : 1) {}

  ChunkedOptions opts;
  ByteSink sink;
  core::CdcChunker chunker;
  std::shared_ptr<CCtxCache> cctx = std::make_shared<CCtxCache>();
  std::vector<std::byte> current;  // the chunk being filled
  std::vector<core::FrameInfo> frames;
  std::uint64_t plain = 0;
  bool finished = false;
  std::optional<Error> failed;
  // Last: destroyed first, so no chunk is being compressed once the rest goes.
  OrderedWindow window;

  Error fail(Error e) {
    failed = e;
    return e;
  }

  Result<void> emit(Frame& f) {
    if (!f.error.empty())
      return fail(make_error(errc::io_failure, std::string(codec_name(opts.codec)) + " frame: " + f.error));
    if (auto r = sink(f.out); !r) return fail(r.error());
    frames.push_back({.id = f.id, .plain_size = f.plain, .frame_size = static_cast<std::uint32_t>(f.out.size())});
    std::vector<std::byte>().swap(f.out);
    return {};
  }

  Result<void> submit(bool last) {
    auto f = std::make_shared<Frame>();
    f->codec = opts.codec;
    f->level = opts.level;
    if (opts.codec == core::FrameCodec::zstd) f->cctx = cctx;
    f->plain = static_cast<std::uint32_t>(current.size());
    f->in = std::move(current);
    current = std::vector<std::byte>();
    if (!last) current.reserve(opts.chunker.max_size);
    plain += f->plain;
    return window.submit(std::move(f), last ? 0 : window.window() - 1,
                         [this](OrderedWindow::Job& j) { return emit(static_cast<Frame&>(j)); });
  }
};

Result<std::unique_ptr<ChunkedCompressor>> ChunkedCompressor::create(const ChunkedOptions& opts, ByteSink sink) {
  switch (opts.codec) {
    case core::FrameCodec::gzip:
      if (opts.level < 0 || opts.level > 9)
        return make_error(errc::io_failure, "gzip compression level " + std::to_string(opts.level) + " is not 0-9");
      break;
    case core::FrameCodec::zstd:
      if (opts.level < 1 || opts.level > 19)
        return make_error(errc::io_failure, "zstd compression level " + std::to_string(opts.level) + " is not 1-19");
      break;
    default:
      return make_error(errc::io_failure, "unknown frame codec " + std::to_string(static_cast<unsigned>(opts.codec)));
  }
  if (!core::valid_chunker_params(opts.chunker)) return make_error(errc::io_failure, "invalid chunker parameters");
  auto impl = std::make_unique<Impl>(opts, std::move(sink));
  impl->current.reserve(opts.chunker.max_size);
  return std::unique_ptr<ChunkedCompressor>(new ChunkedCompressor(std::move(impl)));
}

ChunkedCompressor::ChunkedCompressor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

// Impl's window (destroyed first) drops the queued chunks and waits for those running.
ChunkedCompressor::~ChunkedCompressor() = default;

Result<void> ChunkedCompressor::write(std::span<const std::byte> data) {
  Impl& m = *impl_;
  if (m.failed) return *m.failed;
  if (m.finished) return make_error(errc::io_failure, "chunked: write after the end of the stream");
  while (!data.empty()) {
    const auto cut = m.chunker.find_cut(data);
    const std::size_t n = cut ? *cut : data.size();
    m.current.insert(m.current.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
    data = data.subspan(n);
    if (cut)
      if (auto r = m.submit(false); !r) return r;
  }
  return {};
}

Result<void> ChunkedCompressor::finish() {
  Impl& m = *impl_;
  if (m.failed) return *m.failed;
  if (m.finished) return make_error(errc::io_failure, "chunked: stream already finished");
  m.finished = true;
  // The last chunk (shorter than the minimum, as it may be). An empty stream still gets one
  // (empty) frame, so the output is a valid .gz / .zst.
  if (!m.current.empty() || m.plain == 0) return m.submit(true);
  return m.window.drain(0, [&m](OrderedWindow::Job& j) { return m.emit(static_cast<Frame&>(j)); });
}

const std::vector<core::FrameInfo>& ChunkedCompressor::frames() const noexcept { return impl_->frames; }

std::uint64_t ChunkedCompressor::plain_size() const noexcept { return impl_->plain; }

}  // namespace carsync::io
