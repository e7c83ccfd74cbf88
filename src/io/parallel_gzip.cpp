#include "io/parallel_gzip.hpp"

#include "io/compute_pool.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <new>
#include <string>
#include <utility>

namespace carsync::io {

namespace {

// deflate's window: a block primed with this much of the stream before it finds every match
// the single-stream compressor would.
constexpr std::size_t dictionary_bytes = 32 * 1024;

}  // namespace

std::array<std::uint8_t, 10> gzip_header(int level) noexcept {
  // ID1 ID2 CM=deflate FLG=0 MTIME=0, XFL (2: slowest, 4: fastest), OS=3.
  return {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, static_cast<std::uint8_t>(level == 9 ? 2 : level == 1 ? 4 : 0), 3};
}

std::array<std::uint8_t, 8> gzip_trailer(std::uint32_t crc, std::uint64_t size) noexcept {
  std::array<std::uint8_t, 8> t{};  // little-endian
  for (int i = 0; i < 4; ++i) {
    t[i] = static_cast<std::uint8_t>(crc >> (8 * i));
    t[4 + i] = static_cast<std::uint8_t>(size >> (8 * i));
  }
  return t;
}

bool looks_incompressible(std::span<const std::byte> block) noexcept {
  constexpr double threshold = 7.995;
  if (block.size() < 64 * 1024) return false;
  std::array<std::uint32_t, 256> count{};
  for (const std::byte b : block) ++count[std::to_integer<unsigned>(b)];
  double bits = 0;
  const double total = static_cast<double>(block.size());
  for (const auto c : count) {
    if (c == 0) continue;
    const double q = static_cast<double>(c) / total;
    bits -= q * std::log2(q);
  }
  return bits >= threshold;
}

std::string deflate_raw(int level, std::span<const std::byte> dictionary, std::span<const std::byte> data, bool finish,
                        std::vector<std::byte>& out) {
  // Stored (level 0) when deflate could not gain: the stream stays standard, and the decision
  // depends on the bytes alone, so the output stays the same at any thread count.
  const bool store = level > 0 && looks_incompressible(data);
  z_stream s{};
  if (deflateInit2(&s, store ? 0 : level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return s.msg ? s.msg : "cannot initialise deflate";
  struct End {
    z_stream* s;
    ~End() { deflateEnd(s); }
  } end{&s};
  if (!dictionary.empty() && !store &&
      deflateSetDictionary(&s, reinterpret_cast<const Bytef*>(dictionary.data()), static_cast<uInt>(dictionary.size())) !=
          Z_OK)
    return "cannot set the deflate dictionary";
  const std::size_t start = out.size();
  out.resize(start + deflateBound(&s, static_cast<uLong>(data.size())) + 16);  // + a sync marker
  s.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(data.data()));
  s.avail_in = static_cast<uInt>(data.size());
  const int flush = finish ? Z_FINISH : Z_SYNC_FLUSH;
  for (;;) {
    if (out.size() - start == s.total_out) out.resize(start + 2 * (out.size() - start));
    s.next_out = reinterpret_cast<Bytef*>(out.data() + start + s.total_out);
    s.avail_out = static_cast<uInt>(out.size() - start - s.total_out);
    const int rc = deflate(&s, flush);
    if (rc == Z_STREAM_ERROR) return "deflate failed";
    if (finish ? rc == Z_STREAM_END : (s.avail_in == 0 && s.avail_out != 0)) break;
  }
  out.resize(start + s.total_out);
  return {};
}

// One block's input and, once compressed, its output. The window runs it on one thread and
// the writer reads the results only after (io/ordered_window.hpp).
struct ParallelGzip::Block final : OrderedWindow::Job {
  std::vector<std::byte> in;  // [dictionary | data]
  std::size_t dict = 0;
  std::size_t length = 0;  // of the data, after the dictionary
  bool last = false;
  int level = 6;
  std::vector<std::byte> out;
  std::uint32_t crc = 0;
  std::string error;  // empty: compressed

  std::size_t size() const noexcept { return length; }

  void run() noexcept override { compress(level); }

  void compress(int level) noexcept {
    try {
      deflate_block(level);
    } catch (const std::bad_alloc&) {
      error = "out of memory";
    }
    // The input is no longer needed; freeing it now keeps the window's memory to its outputs.
    std::vector<std::byte>().swap(in);
  }

 private:
  void deflate_block(int level) {
    const auto data = std::span<const std::byte>(in).subspan(dict, size());
    crc = static_cast<std::uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(data.data()), data.size()));
    // Raw deflate: the gzip header and trailer are written once, around all blocks.
    error = deflate_raw(level, std::span<const std::byte>(in).first(dict), data, last, out);
  }
};

ParallelGzip::ParallelGzip(const ParallelGzipOptions& opts, ByteSink sink)
    : level_(std::clamp(opts.level, 0, 9)),
      sink_(std::move(sink)),
      block_size_(std::max(opts.block_size, dictionary_bytes)),
      crc_(static_cast<std::uint32_t>(crc32_z(0, nullptr, 0))),
      window_(opts.compute, opts.window        ? opts.window
                            : opts.compute ? 4 * std::size_t{opts.compute->size()} + 4
                                           : 1) {
  next_.reserve(dictionary_bytes + block_size_);
}

// The window (destroyed first) drops the queued blocks and waits for those running.
ParallelGzip::~ParallelGzip() = default;

Error ParallelGzip::fail(Error e) {
  failed_ = e;
  return e;
}

Result<void> ParallelGzip::write(std::span<const std::byte> data) {
  if (failed_) return *failed_;
  if (finished_) return make_error(errc::io_failure, "gzip: write after the end of the stream");
  while (!data.empty()) {
    const std::size_t room = next_dict_ + block_size_ - next_.size();
    const std::size_t n = std::min(room, data.size());
    next_.insert(next_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
    data = data.subspan(n);
    if (n == room)
      if (auto r = submit(false); !r) return r;
  }
  return {};
}

Result<void> ParallelGzip::finish() {
  if (failed_) return *failed_;
  if (finished_) return make_error(errc::io_failure, "gzip: stream already finished");
  finished_ = true;
  return submit(true);
}

Result<void> ParallelGzip::submit(bool last) {
  auto b = std::make_shared<Block>();
  b->dict = next_dict_;
  b->last = last;
  b->level = level_;
  b->in = std::move(next_);
  b->length = b->in.size() - b->dict;
  total_in_ += b->size();
  if (!last) {
    // The next block is primed with the last 32 KiB of the stream before it.
    const std::size_t keep = std::min(dictionary_bytes, b->in.size());
    next_ = std::vector<std::byte>();
    next_.reserve(dictionary_bytes + block_size_);
    next_.assign(b->in.end() - static_cast<std::ptrdiff_t>(keep), b->in.end());
    next_dict_ = keep;
  }
  return window_.submit(std::move(b), last ? 0 : window_.window() - 1,
                        [this](OrderedWindow::Job& j) { return emit(static_cast<const Block&>(j)); });
}

Result<void> ParallelGzip::emit(const Block& b) {
  if (!b.error.empty()) return fail(make_error(errc::io_failure, "gzip: " + b.error));
  if (!header_sent_) {
    const auto header = gzip_header(level_);
    if (auto r = output(std::as_bytes(std::span(header))); !r) return r;
    header_sent_ = true;
  }
  if (auto r = output(b.out); !r) return r;
  crc_ = static_cast<std::uint32_t>(crc32_combine(crc_, b.crc, static_cast<z_off_t>(b.size())));
  if (b.last) {
    const auto trailer = gzip_trailer(crc_, total_in_);
    if (auto r = output(std::as_bytes(std::span(trailer))); !r) return r;
  }
  return {};
}

Result<void> ParallelGzip::output(std::span<const std::byte> bytes) {
  if (bytes.empty()) return {};
  if (auto r = sink_(bytes); !r) return fail(r.error());
  return {};
}

}  // namespace carsync::io
