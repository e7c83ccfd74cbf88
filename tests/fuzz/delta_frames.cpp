// A frame from a fetched pack as reassembly checks it (io/delta_files.hpp): the pack matches
// its record and the frame its id (a hostile provider controls both), so what decides is the
// bounded decompression: exactly one gzip member or zstd frame of exactly the entry's plain
// size, never decompressing past it. Input: 1 byte codec (low bit: 0 gzip, 1 zstd), 4 bytes
// plain size (little-endian, taken modulo 1 MiB + 2), then the frame. Properties: reassemble
// never crashes or hangs; it accepts exactly when a one-shot decoder (the oracle below) says
// the frame is one member/frame of that size; a refusal is frame_size_mismatch and leaves no
// output; an acceptance writes the frame's bytes.
#include "core/delta_error.hpp"
#include "core/delta_index.hpp"
#include "io/delta_files.hpp"

#include "fuzz_support.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_getFrameHeader
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

using namespace carsync;

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "delta_frames property broken: %s %s\n", what, detail.c_str());
  std::abort();
}

// Whether `frame` is one gzip member / zstd frame of exactly `plain` bytes: decoded at once
// into a buffer one byte larger.
bool oracle(core::FrameCodec codec, const std::uint8_t* frame, std::size_t size, std::uint32_t plain) {
  static std::vector<std::uint8_t> buffer((1u << 20) + 2);
  const std::span<std::uint8_t> out(buffer.data(), std::size_t{plain} + 1);
  if (codec == core::FrameCodec::zstd) {
    const std::size_t whole = ZSTD_findFrameCompressedSize(frame, size);
    if (ZSTD_isError(whole) || whole != size) return false;
    // Reassembly refuses a window above 32 MiB (a chunk is at most 16 MiB) rather than
    // allocate it; the one-shot decoder needs no window and would not.
    ZSTD_frameHeader fh{};
    if (ZSTD_getFrameHeader(&fh, frame, size) != 0) return false;
    if (fh.frameType == ZSTD_frame && fh.windowSize > (std::uint64_t{1} << 25)) return false;
    const std::size_t n = ZSTD_decompress(out.data(), out.size(), frame, size);
    return !ZSTD_isError(n) && n == plain;
  }
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) std::abort();
  z.next_in = const_cast<Bytef*>(frame);
  z.avail_in = static_cast<uInt>(size);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  const bool ok = rc == Z_STREAM_END && z.avail_in == 0 && z.total_out == plain;
  inflateEnd(&z);
  return ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 5) return 0;
  const auto codec = (data[0] & 1) ? core::FrameCodec::zstd : core::FrameCodec::gzip;
  const std::uint32_t plain =
      (std::uint32_t{data[1]} | std::uint32_t{data[2]} << 8 | std::uint32_t{data[3]} << 16 |
       std::uint32_t{data[4]} << 24) % ((1u << 20) + 2);
  const std::uint8_t* frame = data + 5;
  const std::size_t frame_size = size - 5;
  if (frame_size == 0) return 0;  // an index never holds a frame of 0 bytes

  static const auto pack = fuzz::scratch_dir() / "delta.pack";
  static const auto out = fuzz::scratch_dir() / "delta.out";
  const int fd = ::open(pack.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::write(fd, frame, frame_size) != static_cast<ssize_t>(frame_size)) std::abort();
  ::close(fd);

  io::Sha256 h;
  h.update(std::span(reinterpret_cast<const std::byte*>(frame), frame_size));
  const io::Sha256Digest sha = h.finish();
  core::DeltaIndex next;
  next.codec = codec;
  next.serial = 1;
  next.chunks = {{sha, plain, static_cast<std::uint32_t>(frame_size), 1, 0}};
  next.archive_size = frame_size;
  next.plain_size = plain;
  next.archive_sha256 = sha;
  core::FetchPlan plan;
  plan.mode = core::FetchMode::delta;
  plan.reason = core::FullReason::none;
  plan.packs = {{1, frame_size, sha, "pack"}};
  plan.sources = {{false, 0, 1}};
  plan.fetch_bytes = frame_size;
  io::AssembleInput in;
  in.next = &next;
  in.plan = &plan;
  in.packs[1] = pack;
  in.expected = sha;

  auto r = io::reassemble(in, out);
  const bool accepted = static_cast<bool>(r);
  if (accepted != oracle(codec, frame, frame_size, plain))
    fail(accepted ? "accepted a frame the oracle refuses" : "refused a frame the oracle accepts",
         accepted ? std::string() : r.error().message);
  if (!accepted) {
    if (r.error().code != make_error_code(core::delta_errc::frame_size_mismatch))
      fail("refused with another code", r.error().message);
    if (::access(out.c_str(), F_OK) == 0) fail("a refused frame left its output");
    return 0;
  }
  std::ifstream f(out, std::ios::binary);
  const std::string written((std::istreambuf_iterator<char>(f)), {});
  if (written.size() != frame_size || std::memcmp(written.data(), frame, frame_size) != 0)
    fail("the output is not the frame");
  ::unlink(out.c_str());
  return 0;
}
