#include "io/file_engine.hpp"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace carsync::io {
namespace {

Error changed_while_reading() {
  return make_error(errc::io_failure, "file changed while reading (size differs from its stat)");
}

// One byte past the declared end means the file grew after it was stat'ed.
Result<void> expect_eof(int fd, std::uint64_t size) {
  std::byte probe;
  for (;;) {
    const ssize_t n = ::pread(fd, &probe, 1, static_cast<off_t>(size));
    if (n == 0) return {};
    if (n > 0) return changed_while_reading();
    if (errno != EINTR) return os_error(errno, "read");
  }
}

class PortableReader final : public FileReader {
 public:
  explicit PortableReader(const EngineOptions& opts)
      : buffer_(opts.block_size == 0 ? 1 : opts.block_size) {}

  EngineKind kind() const noexcept override { return EngineKind::portable; }

  Result<void> stream(int fd, std::uint64_t size, const ChunkSink& sink) override {
    std::uint64_t offset = 0;
    while (offset < size) {
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(buffer_.size(), size - offset));
      const ssize_t n = ::pread(fd, buffer_.data(), want, static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        return os_error(errno, "read");
      }
      if (n == 0) return changed_while_reading();
      if (auto r = sink({buffer_.data(), static_cast<std::size_t>(n)}); !r) return r;
      offset += static_cast<std::uint64_t>(n);
    }
    return expect_eof(fd, size);
  }

 private:
  std::vector<std::byte> buffer_;
};

// liburing maps and unmaps a ring's memory with raw syscalls, which ThreadSanitizer does not
// see: a ring mapped where another thread's ring was unmapped keeps that ring's access
// history, and the first write into it is reported as a race with the dead ring's thread.
// The kernel orders the two (an address is reused only after its munmap); these tell
// ThreadSanitizer so, page by page of each mapping. No-ops in other builds.
template <class Annotate>
void each_ring_page(const io_uring& ring, Annotate annotate) {
  const auto pages = [&](const void* base, std::size_t size) {
    if (!base) return;
    const auto start = reinterpret_cast<std::uintptr_t>(base);
    for (std::uintptr_t p = start; p < start + size; p += 4096) annotate(reinterpret_cast<void*>(p));
  };
  pages(ring.sq.ring_ptr, ring.sq.ring_sz);
  pages(ring.cq.ring_ptr, ring.cq.ring_sz);
  pages(ring.sq.sqes, std::size_t{ring.sq.ring_entries} * sizeof(io_uring_sqe));
}

void ring_mapped(const io_uring& ring) {
#if defined(__SANITIZE_THREAD__)
  each_ring_page(ring, [](void* page) { __tsan_acquire(page); });
#else
  (void)ring;
#endif
}

void ring_unmapping(const io_uring& ring) {
#if defined(__SANITIZE_THREAD__)
  each_ring_page(ring, [](void* page) { __tsan_release(page); });
#else
  (void)ring;
#endif
}

// Reads ahead `depth` blocks of the file into a fixed pool, one buffer per block in flight.
// Block b always lives in slot b % depth: at most `depth` blocks separate the oldest
// undelivered block from the newest queued one, so slots never collide and delivery in
// file order is a walk over the slots.
class UringReader final : public FileReader {
 public:
  static Result<std::unique_ptr<FileReader>> create(const EngineOptions& opts) {
    std::unique_ptr<UringReader> r(new UringReader(opts));
    if (const int rc = io_uring_queue_init(r->depth_, &r->ring_, 0); rc < 0)
      return os_error(-rc, "io_uring_queue_init");
    ring_mapped(r->ring_);
    r->ring_ready_ = true;
    r->pool_.resize(static_cast<std::size_t>(r->depth_) * r->block_);
    r->slots_.resize(r->depth_);
    return std::unique_ptr<FileReader>(std::move(r));
  }

  ~UringReader() override {
    if (!ring_ready_) return;
    ring_unmapping(ring_);
    io_uring_queue_exit(&ring_);
  }

  EngineKind kind() const noexcept override { return EngineKind::io_uring; }

  Result<void> stream(int fd, std::uint64_t size, const ChunkSink& sink) override {
    auto result = run(fd, size, sink);
    // After an early return the kernel may still be writing into our buffers: wait those
    // reads out before anyone reuses the pool (next stream) or frees it.
    drain();
    if (!result) return result;
    return expect_eof(fd, size);
  }

 private:
  struct Slot {
    std::uint64_t offset = 0;  // of the block in the file
    std::size_t length = 0;    // of the block
    std::size_t filled = 0;    // bytes read so far
    bool complete = false;
  };

  explicit UringReader(const EngineOptions& opts)
      : depth_(opts.queue_depth == 0 ? 1 : opts.queue_depth),
        block_(opts.block_size == 0 ? 1 : opts.block_size) {}

  std::byte* buffer(unsigned slot) { return pool_.data() + static_cast<std::size_t>(slot) * block_; }

  // Queues the unread rest of a slot's block.
  Result<void> queue(int fd, unsigned slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (!sqe) return make_error(errc::io_failure, "io_uring submission queue full");
    const Slot& s = slots_[slot];
    io_uring_prep_read(sqe, fd, buffer(slot) + s.filled, static_cast<unsigned>(s.length - s.filled),
                       s.offset + s.filled);
    io_uring_sqe_set_data64(sqe, slot);
    ++in_flight_;
    return {};
  }

  Result<void> submit() {
    for (;;) {
      const int rc = io_uring_submit(&ring_);
      if (rc >= 0) return {};
      if (rc != -EINTR && rc != -EAGAIN) return os_error(-rc, "io_uring_submit");
    }
  }

  Result<io_uring_cqe*> wait() {
    for (;;) {
      io_uring_cqe* cqe = nullptr;
      const int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == 0) return cqe;
      if (rc != -EINTR) return os_error(-rc, "io_uring_wait_cqe");
    }
  }

  Result<void> run(int fd, std::uint64_t size, const ChunkSink& sink) {
    const std::uint64_t blocks = (size + block_ - 1) / block_;
    std::uint64_t next_queue = 0;
    std::uint64_t next_deliver = 0;

    while (next_deliver < blocks) {
      bool queued = false;
      while (next_queue < blocks && next_queue < next_deliver + depth_) {
        const unsigned slot = static_cast<unsigned>(next_queue % depth_);
        const std::uint64_t offset = next_queue * block_;
        slots_[slot] = {offset, static_cast<std::size_t>(std::min<std::uint64_t>(block_, size - offset)), 0, false};
        if (auto r = queue(fd, slot); !r) return r;
        ++next_queue;
        queued = true;
      }
      if (queued)
        if (auto r = submit(); !r) return r;

      const unsigned head = static_cast<unsigned>(next_deliver % depth_);
      if (slots_[head].complete) {
        if (auto r = sink({buffer(head), slots_[head].length}); !r) return r;
        ++next_deliver;
        continue;
      }

      auto cqe = wait();
      if (!cqe) return cqe.error();
      const unsigned slot = static_cast<unsigned>(io_uring_cqe_get_data64(*cqe));
      const int res = (*cqe)->res;
      io_uring_cqe_seen(&ring_, *cqe);
      --in_flight_;

      Slot& s = slots_[slot];
      if (res == -EAGAIN || res == -EINTR) {
        // Nothing read; ask again for the same range.
      } else if (res < 0) {
        return os_error(-res, "read");
      } else if (res == 0) {
        return changed_while_reading();  // end of file before the declared size
      } else {
        s.filled += static_cast<std::size_t>(res);
        if (s.filled == s.length) {
          s.complete = true;
          continue;
        }
      }
      if (auto r = queue(fd, slot); !r) return r;  // short read or retry: the remainder
      if (auto r = submit(); !r) return r;
    }
    return {};
  }

  void drain() {
    while (in_flight_ > 0) {
      auto cqe = wait();
      // A ring that cannot report completions leaves reads aimed at memory we are about to
      // reuse; tearing the ring down does not wait for them, so there is no safe way on.
      if (!cqe) std::abort();
      io_uring_cqe_seen(&ring_, *cqe);
      --in_flight_;
    }
  }

  unsigned depth_;
  std::size_t block_;
  std::vector<std::byte> pool_;
  std::vector<Slot> slots_;
  io_uring ring_{};
  bool ring_ready_ = false;
  unsigned in_flight_ = 0;
};

// A ring that can be set up and runs a no-op: seccomp profiles may allow setup yet refuse
// io_uring_enter, so probe the round trip.
bool uring_works() {
  io_uring ring{};
  if (io_uring_queue_init(2, &ring, 0) < 0) return false;
  ring_mapped(ring);
  bool ok = false;
  if (io_uring_sqe* sqe = io_uring_get_sqe(&ring)) {
    io_uring_prep_nop(sqe);
    io_uring_cqe* cqe = nullptr;
    if (io_uring_submit_and_wait(&ring, 1) == 1 && io_uring_peek_cqe(&ring, &cqe) == 0) {
      ok = cqe->res == 0;
      io_uring_cqe_seen(&ring, cqe);
    }
  }
  ring_unmapping(ring);
  io_uring_queue_exit(&ring);
  return ok;
}

}  // namespace

std::string_view to_string(EngineKind k) noexcept {
  return k == EngineKind::io_uring ? "io_uring" : "portable";
}

Result<std::unique_ptr<FileReader>> make_uring_reader(const EngineOptions& opts) {
  return UringReader::create(opts);
}

std::unique_ptr<FileReader> make_portable_reader(const EngineOptions& opts) {
  return std::make_unique<PortableReader>(opts);
}

EngineKind select_engine(std::string_view preference) {
  if (preference == "io_uring") return EngineKind::io_uring;
  if (preference == "portable") return EngineKind::portable;
  if (const char* force = std::getenv("CARSYNC_FORCE_PORTABLE"); force && std::string_view(force) == "1")
    return EngineKind::portable;
  static const bool uring = uring_works();
  return uring ? EngineKind::io_uring : EngineKind::portable;
}

std::unique_ptr<FileReader> make_reader(EngineKind kind, const EngineOptions& opts) {
  if (kind == EngineKind::io_uring) {
    if (auto reader = make_uring_reader(opts)) return std::move(*reader);
  }
  return make_portable_reader(opts);
}

}  // namespace carsync::io
