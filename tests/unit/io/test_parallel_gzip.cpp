#include "io/parallel_gzip.hpp"

#include "io/compute_pool.hpp"
#include "support/pool_blocker.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <random>
#include <string>
#include <thread>

namespace carsync::io {
namespace {

using namespace std::chrono_literals;
using test::PoolBlocker;
using test::TempDir;

// Text (compressible, long-range repeats) around random bytes (incompressible): the shapes
// of an app volume, and matches that cross block boundaries.
std::string mixed_corpus(std::size_t text_bytes = 3u << 20, std::size_t random_bytes = 1u << 20) {
  std::mt19937 rng(42);
  static const char* words[] = {"sync", "volume", "archive", "provider", "consumer", "record",
                                "chunk", "delta", "error", "ok", "12345", "/app/data/", "\n"};
  std::string s;
  auto text = [&](std::size_t n) {
    const std::size_t end = s.size() + n;
    while (s.size() < end) {
      s += words[rng() % std::size(words)];
      s += ' ';
    }
  };
  text(text_bytes / 2);
  for (std::size_t i = 0; i < random_bytes; ++i) s += static_cast<char>(rng() & 0xff);
  text(text_bytes / 2);
  return s;
}

// Feeds `input` in uneven pieces (1 byte to more than a block) and returns the output.
std::string compress(const std::string& input, ComputePool* pool, int level = 6, std::size_t window = 0) {
  std::string out;
  ParallelGzip gz({.level = level, .compute = pool, .window = window}, [&](std::span<const std::byte> b) -> Result<void> {
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    return {};
  });
  static constexpr std::size_t pieces[] = {1, 7, 4096, 65536, 200000, 511};
  std::size_t off = 0;
  for (std::size_t i = 0; off < input.size(); ++i) {
    const std::size_t n = std::min(pieces[i % std::size(pieces)], input.size() - off);
    EXPECT_TRUE(gz.write(std::as_bytes(std::span(input.data() + off, n))));
    off += n;
  }
  EXPECT_TRUE(gz.finish());
  return out;
}

// The content of a gzip stream that must be exactly one member with nothing after it.
std::string gunzip_one_member(const std::string& gz) {
  z_stream s{};
  EXPECT_EQ(inflateInit2(&s, 16 + 15), Z_OK);
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  s.avail_in = static_cast<uInt>(gz.size());
  std::string out;
  std::vector<char> buf(1 << 16);
  for (;;) {
    s.next_out = reinterpret_cast<Bytef*>(buf.data());
    s.avail_out = static_cast<uInt>(buf.size());
    const int rc = inflate(&s, Z_NO_FLUSH);
    out.append(buf.data(), buf.size() - s.avail_out);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK) {
      ADD_FAILURE() << "inflate: " << rc << " " << (s.msg ? s.msg : "");
      break;
    }
  }
  EXPECT_EQ(s.avail_in, 0u) << "bytes after the first gzip member";
  inflateEnd(&s);
  return out;
}

int shell(const std::string& command) { return std::system(command.c_str()); }

TEST(ParallelGzip, OneMemberThatInflatesToTheInput) {
  const auto input = mixed_corpus();
  ComputePool pool(4);
  const auto gz = compress(input, &pool);
  ASSERT_GE(gz.size(), 18u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  EXPECT_EQ(gunzip_one_member(gz), input);

  TempDir dir;
  test::write_file(dir / "x.gz", gz);
  EXPECT_EQ(shell("gzip -t " + (dir / "x.gz").string()), 0);
  ASSERT_EQ(shell("gzip -dc " + (dir / "x.gz").string() + " > " + (dir / "x").string()), 0);
  EXPECT_EQ(test::read_file(dir / "x"), input);
}

TEST(ParallelGzip, SameBytesWhateverTheThreadCount) {
  const auto input = mixed_corpus();
  const auto inline_only = compress(input, nullptr);
  ComputePool one(1), four(4);
  EXPECT_EQ(compress(input, &one), inline_only);
  EXPECT_EQ(compress(input, &four), inline_only);
  EXPECT_EQ(compress(input, &four, 6, 2), inline_only);  // a tight window: the writer helps
}

TEST(ParallelGzip, WithinTwoPercentOfGzipAtTheSameLevel) {
  TempDir dir;
  const auto input = mixed_corpus();
  test::write_file(dir / "in", input);
  ComputePool pool(2);
  for (int level : {1, 6, 9}) {
    SCOPED_TRACE(level);
    const auto ours = compress(input, &pool, level);
    ASSERT_EQ(shell("gzip -n -" + std::to_string(level) + " -c " + (dir / "in").string() + " > " +
                    (dir / "ref.gz").string()), 0);
    const auto reference = std::filesystem::file_size(dir / "ref.gz");
    EXPECT_LE(static_cast<double>(ours.size()), 1.02 * static_cast<double>(reference))
        << "ours " << ours.size() << " gzip " << reference;
  }
}

// Random bytes are stored, not deflated (deflate gains nothing on them and costs a core
// ~50 MB/s): the output is the input plus block framing, and still one standard member.
TEST(ParallelGzip, IncompressibleBlocksAreStored) {
  std::mt19937 rng(7);
  std::string input(4u << 20, '\0');
  for (auto& c : input) c = static_cast<char>(rng() & 0xff);
  ComputePool pool(2);
  const auto gz = compress(input, &pool);
  EXPECT_EQ(gunzip_one_member(gz), input);
  // Stored blocks cost 5 bytes per 64 KiB; deflate on random bytes costs more than that.
  EXPECT_LE(gz.size(), input.size() + input.size() / 65536 * 5 + 64 * 5 + 18 + 64);
  EXPECT_EQ(compress(input, nullptr), gz);
}

TEST(ParallelGzip, OnlyEvenlySpreadBytesLookIncompressible) {
  std::mt19937 rng(3);
  auto random = [&](std::size_t n) {
    std::vector<std::byte> v(n);
    for (auto& b : v) b = static_cast<std::byte>(rng() & 0xff);
    return v;
  };
  EXPECT_TRUE(looks_incompressible(random(128 * 1024)));
  EXPECT_FALSE(looks_incompressible(random(32 * 1024)));  // too short to judge
  const auto unit = random(32 * 1024);                      // repeats deflate can find
  std::vector<std::byte> repeated;
  for (int i = 0; i < 4; ++i) repeated.insert(repeated.end(), unit.begin(), unit.end());
  EXPECT_FALSE(looks_incompressible(repeated));
  const auto text = mixed_corpus(256 * 1024, 0);
  EXPECT_FALSE(looks_incompressible(std::as_bytes(std::span(text.data(), 128 * 1024))));
}

// A random unit repeated within deflate's window is high-entropy byte by byte yet deflate
// halves it at least: such blocks must be deflated, not stored.
TEST(ParallelGzip, RepeatsWithinTheWindowAreStillDeflated) {
  std::mt19937 rng(9);
  for (std::size_t unit : {std::size_t{4096}, std::size_t{16384}, std::size_t{32000}}) {
    SCOPED_TRACE(unit);
    std::string piece(unit, '\0');
    for (auto& c : piece) c = static_cast<char>(rng() & 0xff);
    std::string input;
    while (input.size() < (2u << 20)) input += piece;
    ComputePool pool(2);
    const auto gz = compress(input, &pool);
    EXPECT_EQ(gunzip_one_member(gz), input);
    EXPECT_LT(gz.size(), input.size() / 2) << "stored instead of deflated";
  }
}

TEST(ParallelGzip, EmptyAndBlockAlignedInputs) {
  ComputePool pool(2);
  EXPECT_EQ(gunzip_one_member(compress("", &pool)), "");
  EXPECT_EQ(gunzip_one_member(compress("x", nullptr)), "x");
  const std::string aligned(2 * 128 * 1024, 'a');  // the last block is empty
  EXPECT_EQ(gunzip_one_member(compress(aligned, &pool)), aligned);
}

TEST(ParallelGzip, ABusyPoolDoesNotStallTheWriter) {
  const auto input = mixed_corpus(1u << 20, 1u << 20);
  const auto expected = compress(input, nullptr);
  ComputePool pool(2);
  PoolBlocker blocker(pool);  // no pool thread will take a block
  std::string out;
  {
    ParallelGzip gz({.compute = &pool, .window = 3}, [&](std::span<const std::byte> b) -> Result<void> {
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
      return {};
    });
    ASSERT_TRUE(gz.write(std::as_bytes(std::span(input))));
    ASSERT_TRUE(gz.finish());
  }
  EXPECT_FALSE(blocker.timed_out()) << "the writer waited for the pool";
  EXPECT_EQ(out, expected);
}

TEST(ParallelGzip, AbandoningDoesNotWaitForQueuedBlocks) {
  const auto input = mixed_corpus(4u << 20, 1u << 20);
  ComputePool pool(2);
  PoolBlocker blocker(pool);
  std::size_t emitted = 0;
  {
    ParallelGzip gz({.compute = &pool, .window = 64}, [&](std::span<const std::byte> b) -> Result<void> {
      emitted += b.size();
      return {};
    });
    ASSERT_TRUE(gz.write(std::as_bytes(std::span(input))));  // ~40 blocks queued, none started
  }  // abandoned: must return although no queued block can run
  EXPECT_FALSE(blocker.timed_out()) << "the destructor waited for queued blocks";
  EXPECT_EQ(emitted, 0u);
  blocker.open();  // the stale jobs now find nothing to do; the pool drains and joins cleanly
}

TEST(ParallelGzip, ASinkFailureEndsTheStreamWithItsCause) {
  const auto input = mixed_corpus(1u << 20, 1u << 20);
  ComputePool pool(2);
  std::size_t accepted = 0;
  ParallelGzip gz({.compute = &pool}, [&](std::span<const std::byte> b) -> Result<void> {
    if (accepted > 100000) return os_error(ENOSPC, "write");
    accepted += b.size();
    return {};
  });
  Result<void> r;
  for (std::size_t off = 0; r && off < input.size(); off += 65536)
    r = gz.write(std::as_bytes(std::span(input)).subspan(off, std::min<std::size_t>(65536, input.size() - off)));
  if (r) r = gz.finish();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("No space left on device"), std::string::npos) << r.error().message;
  auto again = gz.finish();  // the failure sticks
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message, r.error().message);
}

}  // namespace
}  // namespace carsync::io
