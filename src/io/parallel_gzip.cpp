#include "io/parallel_gzip.hpp"

#include "io/compute_pool.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <condition_variable>
#include <mutex>
#include <new>
#include <string>
#include <utility>

namespace carsync::io {

namespace {

// deflate's window: a block primed with this much of the stream before it finds every match
// the single-stream compressor would.
constexpr std::size_t dictionary_bytes = 32 * 1024;

}  // namespace

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

// One block's input and, once compressed, its output. The compressing thread writes the
// results before it sets `done` (under Shared::mu); the writer reads them only after.
struct ParallelGzip::Block {
  std::vector<std::byte> in;  // [dictionary | data]
  std::size_t dict = 0;
  std::size_t length = 0;  // of the data, after the dictionary
  bool last = false;
  std::vector<std::byte> out;
  std::uint32_t crc = 0;
  std::string error;  // empty: compressed
  bool done = false;

  std::size_t size() const noexcept { return length; }

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
    const auto* data = reinterpret_cast<const Bytef*>(in.data() + dict);
    crc = static_cast<std::uint32_t>(crc32_z(0, data, size()));
    z_stream s{};
    // Stored (level 0) when deflate could not gain: the stream stays standard, and the
    // decision depends on the bytes alone, so the output stays the same at any thread count.
    const bool store = level > 0 && looks_incompressible(std::span(in).subspan(dict, size()));
    // Raw deflate (-15): the gzip header and trailer are written once, around all blocks.
    if (deflateInit2(&s, store ? 0 : level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      error = s.msg ? s.msg : "cannot initialise deflate";
      return;
    }
    struct End {
      z_stream* s;
      ~End() { deflateEnd(s); }
    } end{&s};
    if (dict > 0 && !store && deflateSetDictionary(&s, reinterpret_cast<const Bytef*>(in.data()),
                                         static_cast<uInt>(dict)) != Z_OK) {
      error = "cannot set the deflate dictionary";
      return;
    }
    out.resize(deflateBound(&s, static_cast<uLong>(size())) + 16);  // + the sync marker
    s.next_in = const_cast<Bytef*>(data);
    s.avail_in = static_cast<uInt>(size());
    const int flush = last ? Z_FINISH : Z_SYNC_FLUSH;
    for (;;) {
      if (s.avail_out == 0) out.resize(out.size() * 2);
      s.next_out = reinterpret_cast<Bytef*>(out.data()) + s.total_out;
      s.avail_out = static_cast<uInt>(out.size() - s.total_out);
      const int rc = deflate(&s, flush);
      if (rc == Z_STREAM_ERROR) {
        error = "deflate failed";
        return;
      }
      if (last ? rc == Z_STREAM_END : (s.avail_in == 0 && s.avail_out != 0)) break;
    }
    out.resize(s.total_out);
  }
};

// What the writer and the pool's jobs share. Jobs hold it by shared_ptr, so a job that
// starts after the writer is gone finds the queue empty and returns.
struct ParallelGzip::Shared {
  explicit Shared(int l) : level(l) {}

  const int level;
  std::mutex mu;
  std::condition_variable changed;  // a block is done, or a job ended
  std::deque<std::shared_ptr<Block>> queued;  // not yet started, oldest first
  unsigned running = 0;

  // A pool job: compresses the oldest queued block, if any is left.
  void run_one() {
    std::shared_ptr<Block> b;
    {
      std::lock_guard lk(mu);
      if (queued.empty()) return;  // the writer took it, or abandoned the stream
      b = std::move(queued.front());
      queued.pop_front();
      ++running;
    }
    run(*b);
  }

  // Compresses a block taken from the queue (running already counts it).
  void run(Block& b) {
    b.compress(level);
    {
      std::lock_guard lk(mu);
      b.done = true;
      --running;
    }
    changed.notify_all();
  }
};

ParallelGzip::ParallelGzip(const ParallelGzipOptions& opts, ByteSink sink)
    : shared_(std::make_shared<Shared>(std::clamp(opts.level, 0, 9))),
      compute_(opts.compute),
      sink_(std::move(sink)),
      block_size_(std::max(opts.block_size, dictionary_bytes)),
      window_(opts.window ? opts.window : compute_ ? 4 * std::size_t{compute_->size()} + 4 : 1),
      crc_(static_cast<std::uint32_t>(crc32_z(0, nullptr, 0))) {
  next_.reserve(dictionary_bytes + block_size_);
}

ParallelGzip::~ParallelGzip() {
  std::unique_lock lk(shared_->mu);
  shared_->queued.clear();
  // Only blocks being compressed right now are waited for (one block's work each), so no job
  // of this stream runs once it is gone.
  shared_->changed.wait(lk, [&] { return shared_->running == 0; });
}

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
  in_flight_.push_back(b);
  if (compute_) {
    {
      std::lock_guard lk(shared_->mu);
      shared_->queued.push_back(b);
    }
    compute_->post([s = shared_] { s->run_one(); });
  } else {
    {
      std::lock_guard lk(shared_->mu);
      ++shared_->running;
    }
    shared_->run(*b);
  }
  return drain(last ? 0 : window_ - 1);
}

Result<void> ParallelGzip::drain(std::size_t keep) {
  for (;;) {
    while (!in_flight_.empty()) {
      {
        std::lock_guard lk(shared_->mu);
        if (!in_flight_.front()->done) break;
      }
      if (auto r = emit(*in_flight_.front()); !r) return r;
      in_flight_.pop_front();
    }
    if (in_flight_.size() <= keep) return {};
    // The window is full: wait for the oldest block. While pool threads work on this stream
    // one of them ends soon (and takes the oldest next, the queue being FIFO); the writer
    // only waits, so it refills the window at once and the pool never runs dry (helping
    // then would leave the pool idle while the writer compresses, as measured). When no pool
    // thread works on this stream (the pool is busy with other builds, or has no thread
    // free), the writer compresses the oldest block itself: a build never depends on the pool.
    std::shared_ptr<Block> help;
    {
      std::unique_lock lk(shared_->mu);
      const auto& oldest = in_flight_.front();
      // Not done and nothing running: the oldest is still queued (at the front).
      shared_->changed.wait(lk, [&] { return oldest->done || shared_->running == 0; });
      if (!oldest->done) {
        help = std::move(shared_->queued.front());
        shared_->queued.pop_front();
        ++shared_->running;
      }
    }
    if (help) shared_->run(*help);
  }
}

Result<void> ParallelGzip::emit(const Block& b) {
  if (!b.error.empty()) return fail(make_error(errc::io_failure, "gzip: " + b.error));
  if (!header_sent_) {
    // ID1 ID2 CM=deflate FLG=0 MTIME=0 (not stored: the bytes depend on the input only)
    // XFL (2: slowest, 4: fastest, as gzip sets it) OS=3 (Unix).
    const int level = shared_->level;
    const std::array<std::uint8_t, 10> header{0x1f, 0x8b, 8, 0, 0, 0, 0, 0,
                                              static_cast<std::uint8_t>(level == 9 ? 2 : level == 1 ? 4 : 0), 3};
    if (auto r = output(std::as_bytes(std::span(header))); !r) return r;
    header_sent_ = true;
  }
  if (auto r = output(b.out); !r) return r;
  crc_ = static_cast<std::uint32_t>(crc32_combine(crc_, b.crc, static_cast<z_off_t>(b.size())));
  if (b.last) {
    // CRC-32 and the input size modulo 2^32, little-endian.
    std::array<std::uint8_t, 8> trailer{};
    for (int i = 0; i < 4; ++i) {
      trailer[i] = static_cast<std::uint8_t>(crc_ >> (8 * i));
      trailer[4 + i] = static_cast<std::uint8_t>(total_in_ >> (8 * i));
    }
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
