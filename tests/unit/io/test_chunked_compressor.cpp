#include "io/chunked_compressor.hpp"

#include "io/archive_scan.hpp"
#include "io/archive_writer.hpp"
#include "io/compute_pool.hpp"
#include "io/parallel_gzip.hpp"
#include "io/sha256.hpp"
#include "support/pool_blocker.hpp"
#include "support/temp_dir.hpp"
#include "support/thread_count.hpp"

#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdlib>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>

namespace carsync::io {
namespace {

using core::FrameCodec;
using core::FrameInfo;
using test::PoolBlocker;
using test::TempDir;

int shell(const std::string& command) { return std::system(command.c_str()); }

// Text (compressible, with long-range repeats) around random bytes (incompressible, so the
// gzip frames there are stored): the shapes of an app volume.
std::string mixed_corpus(std::size_t bytes, unsigned seed = 42) {
  std::mt19937 rng(seed);
  static const char* words[] = {"sync", "volume", "archive", "provider", "consumer", "record",
                                "chunk", "delta", "error", "ok", "12345", "/app/data/", "\n"};
  std::string s;
  s.reserve(bytes);
  while (s.size() < bytes / 3) {
    s += words[rng() % std::size(words)];
    s += ' ';
  }
  while (s.size() < 2 * bytes / 3) s += static_cast<char>(rng() & 0xff);
  while (s.size() < bytes) s += "key=" + std::to_string(rng() % 500) + " value=" + std::to_string(rng() % 7) + "\n";
  return s;
}

struct Output {
  std::string bytes;
  std::vector<FrameInfo> frames;
  std::uint64_t plain = 0;
};

// Feeds `input` in uneven pieces (1 byte to more than a chunk) and returns what came out.
Output compress(const std::string& input, ChunkedOptions opts) {
  Output o;
  auto c = ChunkedCompressor::create(opts, [&](std::span<const std::byte> b) -> Result<void> {
    o.bytes.append(reinterpret_cast<const char*>(b.data()), b.size());
    return {};
  });
  EXPECT_TRUE(c) << c.error().message;
  if (!c) return o;
  static constexpr std::size_t pieces[] = {1, 7, 4096, 65536, 1500000, 511, 300000};
  std::size_t off = 0;
  for (std::size_t i = 0; off < input.size(); ++i) {
    const std::size_t n = std::min(pieces[i % std::size(pieces)], input.size() - off);
    EXPECT_TRUE((*c)->write(std::as_bytes(std::span(input.data() + off, n))));
    off += n;
  }
  EXPECT_TRUE((*c)->finish());
  o.frames = (*c)->frames();
  o.plain = (*c)->plain_size();
  return o;
}

Sha256Digest sha256(std::string_view s) {
  Sha256 h;
  h.update(std::as_bytes(std::span(s.data(), s.size())));
  return h.finish();
}

// Exactly one gzip member's content; fails if anything follows it.
std::string gunzip_member(std::string_view gz) {
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
      ADD_FAILURE() << "inflate: " << rc;
      break;
    }
  }
  EXPECT_EQ(s.avail_in, 0u) << "bytes after the member";
  inflateEnd(&s);
  return out;
}

// Exactly one zstd frame's content, which must declare its size.
std::string unzstd_frame(std::string_view z) {
  EXPECT_EQ(ZSTD_findFrameCompressedSize(z.data(), z.size()), z.size());
  const auto declared = ZSTD_getFrameContentSize(z.data(), z.size());
  EXPECT_NE(declared, ZSTD_CONTENTSIZE_UNKNOWN);
  EXPECT_NE(declared, ZSTD_CONTENTSIZE_ERROR);
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN || declared == ZSTD_CONTENTSIZE_ERROR) return {};
  std::string out(declared, '\0');
  const auto n = ZSTD_decompress(out.data(), out.size(), z.data(), z.size());
  EXPECT_FALSE(ZSTD_isError(n));
  return out;
}

// Every frame: its id is the SHA-256 of its bytes, it decompresses alone to its chunk, the
// chunks are the chunker's cuts of the input, and the sizes add up.
void expect_frames_of(const Output& o, const std::string& input, FrameCodec codec) {
  ASSERT_FALSE(o.frames.empty());
  EXPECT_EQ(o.plain, input.size());
  const auto cuts = core::chunk_lengths(std::as_bytes(std::span(input.data(), input.size())));
  ASSERT_EQ(o.frames.size(), std::max<std::size_t>(cuts.size(), 1));
  std::uint64_t at = 0, plain_at = 0;
  for (std::size_t i = 0; i < o.frames.size(); ++i) {
    const auto& f = o.frames[i];
    ASSERT_LE(at + f.frame_size, o.bytes.size());
    const auto frame = std::string_view(o.bytes).substr(at, f.frame_size);
    EXPECT_EQ(f.id, sha256(frame)) << i;
    if (!cuts.empty()) {
      EXPECT_EQ(f.plain_size, cuts[i]) << i;
    }
    const auto chunk = codec == FrameCodec::gzip ? gunzip_member(frame) : unzstd_frame(frame);
    EXPECT_EQ(chunk.size(), f.plain_size) << i;
    EXPECT_TRUE(chunk == std::string_view(input).substr(plain_at, f.plain_size)) << "frame " << i;
    at += f.frame_size;
    plain_at += f.plain_size;
  }
  EXPECT_EQ(at, o.bytes.size());
  EXPECT_EQ(plain_at, input.size());
}

TEST(ChunkedCompressor, GzipFramesAreIndependentMembersNamedByTheirHash) {
  const auto input = mixed_corpus(6u << 20);
  ComputePool pool(2);
  const auto o = compress(input, {.codec = FrameCodec::gzip, .level = 6, .compute = &pool});
  expect_frames_of(o, input, FrameCodec::gzip);
  EXPECT_GE(o.frames.size(), 10u);
  EXPECT_LT(o.bytes.size(), input.size());
}

TEST(ChunkedCompressor, ZstdFramesCarryTheirSizeAndChecksum) {
  const auto input = mixed_corpus(6u << 20);
  ComputePool pool(2);
  const auto o = compress(input, {.codec = FrameCodec::zstd, .level = 3, .compute = &pool});
  expect_frames_of(o, input, FrameCodec::zstd);
  // The checksum flag (bit 2 of the frame header descriptor) is set on every frame.
  std::size_t at = 0;
  for (const auto& f : o.frames) {
    EXPECT_TRUE(static_cast<unsigned char>(o.bytes[at + 4]) & 0x04);
    at += f.frame_size;
  }
}

TEST(ChunkedCompressor, GzipAndZstdToolsReadTheConcatenation) {
  TempDir dir;
  const auto input = mixed_corpus(3u << 20);
  test::write_file(dir / "in", input);
  ComputePool pool(2);
  const auto gz = compress(input, {.codec = FrameCodec::gzip, .level = 6, .compute = &pool});
  const auto zs = compress(input, {.codec = FrameCodec::zstd, .level = 3, .compute = &pool});
  test::write_file(dir / "a.gz", gz.bytes);
  test::write_file(dir / "a.zst", zs.bytes);
  const std::string d = dir.path().string();
  EXPECT_EQ(shell("gzip -t " + d + "/a.gz"), 0);
  EXPECT_EQ(shell("gzip -dc " + d + "/a.gz | cmp -s - " + d + "/in"), 0);
  EXPECT_EQ(shell("zstd -q -t " + d + "/a.zst"), 0);
  EXPECT_EQ(shell("zstd -q -dc " + d + "/a.zst | cmp -s - " + d + "/in"), 0);
}

TEST(ChunkedCompressor, SameFramesWhateverTheThreadCountAndWindow) {
  const auto input = mixed_corpus(5u << 20, 7);
  for (const auto codec : {FrameCodec::gzip, FrameCodec::zstd}) {
    const int level = codec == FrameCodec::gzip ? 6 : 3;
    const auto inline_ = compress(input, {.codec = codec, .level = level});
    ComputePool one(1), two(2);
    for (ComputePool* pool : {&one, &two})
      for (std::size_t window : {std::size_t{0}, std::size_t{1}, std::size_t{3}}) {
        const auto o = compress(input, {.codec = codec, .level = level, .compute = pool, .window = window});
        EXPECT_TRUE(o.bytes == inline_.bytes) << pool->size() << " threads, window " << window;
        EXPECT_EQ(o.frames, inline_.frames);
      }
  }
}

TEST(ChunkedCompressor, AnUnchangedChunkGivesTheSameFrame) {
  // The same content with a different prefix: every frame past the first few is shared.
  const auto body = mixed_corpus(8u << 20, 3);
  const auto a = compress("header one\n" + body, {.codec = FrameCodec::zstd, .level = 3});
  const auto b = compress("a different, longer header\n" + body, {.codec = FrameCodec::zstd, .level = 3});
  std::set<core::ChunkId> ids;
  for (const auto& f : a.frames) ids.insert(f.id);
  std::size_t fresh = 0;
  for (const auto& f : b.frames) fresh += ids.contains(f.id) ? 0 : 1;
  EXPECT_LE(fresh, 2u) << "of " << b.frames.size();
}

TEST(ChunkedCompressor, IncompressibleChunksAreStoredInGzip) {
  std::mt19937_64 rng(5);
  std::string input(2u << 20, '\0');
  for (auto& c : input) c = static_cast<char>(rng());
  const auto o = compress(input, {.codec = FrameCodec::gzip, .level = 9});
  expect_frames_of(o, input, FrameCodec::gzip);
  for (const auto& f : o.frames)  // stored blocks: 5 bytes per 64 KiB, header and trailer
    EXPECT_LE(f.frame_size, f.plain_size + 18 + 5 * (f.plain_size / 65535 + 1));
}

TEST(ChunkedCompressor, EmptyAndTinyStreams) {
  for (const auto codec : {FrameCodec::gzip, FrameCodec::zstd}) {
    const int level = codec == FrameCodec::gzip ? 6 : 3;
    const auto empty = compress("", {.codec = codec, .level = level});
    ASSERT_EQ(empty.frames.size(), 1u);  // one empty frame: still a valid .gz / .zst
    EXPECT_EQ(empty.frames[0].plain_size, 0u);
    EXPECT_EQ(empty.plain, 0u);
    EXPECT_EQ(codec == FrameCodec::gzip ? gunzip_member(empty.bytes) : unzstd_frame(empty.bytes), "");
    const auto x = compress("x", {.codec = codec, .level = level});
    expect_frames_of(x, "x", codec);
  }
}

TEST(ChunkedCompressor, LevelsAndParamsOutOfRangeAreRefused) {
  const auto sink = [](std::span<const std::byte>) -> Result<void> { return {}; };
  EXPECT_FALSE(ChunkedCompressor::create({.codec = FrameCodec::gzip, .level = -1}, sink));
  EXPECT_FALSE(ChunkedCompressor::create({.codec = FrameCodec::gzip, .level = 10}, sink));
  EXPECT_TRUE(ChunkedCompressor::create({.codec = FrameCodec::gzip, .level = 0}, sink));
  EXPECT_TRUE(ChunkedCompressor::create({.codec = FrameCodec::gzip, .level = 9}, sink));
  EXPECT_FALSE(ChunkedCompressor::create({.codec = FrameCodec::zstd, .level = 0}, sink));
  EXPECT_FALSE(ChunkedCompressor::create({.codec = FrameCodec::zstd, .level = 20}, sink));
  EXPECT_TRUE(ChunkedCompressor::create({.codec = FrameCodec::zstd, .level = 1}, sink));
  EXPECT_TRUE(ChunkedCompressor::create({.codec = FrameCodec::zstd, .level = 19}, sink));
  EXPECT_FALSE(ChunkedCompressor::create({.codec = static_cast<FrameCodec>(3), .level = 3}, sink));
  EXPECT_FALSE(ChunkedCompressor::create({.codec = FrameCodec::zstd, .level = 3, .chunker = {64, 100, 200}}, sink));
  auto r = ChunkedCompressor::create({.codec = FrameCodec::gzip, .level = 10}, sink);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("level"), std::string::npos) << r.error().message;
}

TEST(ChunkedCompressor, ABusyPoolDoesNotStallTheWriter) {
  const auto input = mixed_corpus(3u << 20);
  const auto expected = compress(input, {.codec = FrameCodec::gzip});
  ComputePool pool(2);
  PoolBlocker blocker(pool);  // no pool thread will take a chunk
  const auto o = compress(input, {.codec = FrameCodec::gzip, .compute = &pool, .window = 3});
  EXPECT_FALSE(blocker.timed_out()) << "the writer waited for the pool";
  EXPECT_TRUE(o.bytes == expected.bytes);
}

TEST(ChunkedCompressor, AbandoningDoesNotWaitForQueuedChunks) {
  const auto input = mixed_corpus(12u << 20);
  ComputePool pool(2);
  PoolBlocker blocker(pool);
  std::size_t emitted = 0;
  {
    auto c = ChunkedCompressor::create({.codec = FrameCodec::zstd, .level = 3, .compute = &pool, .window = 64},
                                       [&](std::span<const std::byte> b) -> Result<void> {
                                         emitted += b.size();
                                         return {};
                                       });
    ASSERT_TRUE(c);
    ASSERT_TRUE((*c)->write(std::as_bytes(std::span(input))));  // ~40 chunks queued, none started
  }  // abandoned: must return although no queued chunk can run
  EXPECT_FALSE(blocker.timed_out()) << "the destructor waited for queued chunks";
  EXPECT_EQ(emitted, 0u);
  blocker.open();  // the stale jobs now find nothing to do; the pool drains and joins cleanly
}

TEST(ChunkedCompressor, AbandonedMidStreamWithWorkingThreadsEndsCleanly) {
  const auto input = mixed_corpus(8u << 20);
  const auto baseline = test::thread_baseline();
  {
    ComputePool pool(2);
    for (const auto codec : {FrameCodec::gzip, FrameCodec::zstd}) {
      auto c = ChunkedCompressor::create({.codec = codec, .level = codec == FrameCodec::gzip ? 6 : 3, .compute = &pool},
                                         [](std::span<const std::byte>) -> Result<void> { return {}; });
      ASSERT_TRUE(c);
      ASSERT_TRUE((*c)->write(std::as_bytes(std::span(input))));
    }
  }
  EXPECT_TRUE(test::threads_settle_to(baseline));
}

TEST(ChunkedCompressor, ASinkFailureEndsTheStreamWithItsCause) {
  const auto input = mixed_corpus(4u << 20);
  ComputePool pool(2);
  std::size_t accepted = 0;
  auto c = ChunkedCompressor::create({.codec = FrameCodec::gzip, .compute = &pool},
                                     [&](std::span<const std::byte> b) -> Result<void> {
                                       if (accepted > 100000) return os_error(ENOSPC, "write");
                                       accepted += b.size();
                                       return {};
                                     });
  ASSERT_TRUE(c);
  Result<void> r;
  for (std::size_t off = 0; r && off < input.size(); off += 65536)
    r = (*c)->write(std::as_bytes(std::span(input)).subspan(off, std::min<std::size_t>(65536, input.size() - off)));
  if (r) r = (*c)->finish();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("No space left on device"), std::string::npos) << r.error().message;
  auto again = (*c)->finish();  // the failure sticks
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message, r.error().message);
}

// ---------------------------------------------------------------------------------------
// Chunked archives (ArchiveOptions::chunked)

struct stat member_stat(mode_t mode, off_t size, time_t mtime = 1700000000) {
  struct stat st {};
  st.st_mode = mode;
  st.st_uid = 1000;
  st.st_gid = 1000;
  st.st_mtim.tv_sec = mtime;
  st.st_size = size;
  return st;
}

using Tree = std::map<std::string, std::string>;  // file name below app/data -> content

// A tree of files of a few KiB to a few MiB, text and random.
Tree sample_tree(unsigned seed = 1) {
  Tree t;
  std::mt19937 rng(seed);
  for (int i = 0; i < 12; ++i) t["notes/n" + std::to_string(i) + ".txt"] = mixed_corpus(3000 + rng() % 50000, seed + i);
  for (int i = 0; i < 5; ++i) t["big/b" + std::to_string(i) + ".bin"] = mixed_corpus((1u << 20) + rng() % (3u << 20), 100 + i);
  return t;
}

std::filesystem::path write_tree(const TempDir& dir, const std::string& name, const Tree& tree, ArchiveOptions opts,
                                 ArchiveSeal& seal) {
  const auto path = dir / name;
  auto w = ArchiveWriter::create(path, opts);
  EXPECT_TRUE(w) << w.error().message;
  EXPECT_TRUE((*w)->add_directory("app/data", member_stat(S_IFDIR | 0755, 0)));
  std::set<std::string> dirs;
  for (const auto& [rel, content] : tree) {
    const auto d = rel.substr(0, rel.find('/'));
    if (dirs.insert(d).second) {
      EXPECT_TRUE((*w)->add_directory("app/data/" + d, member_stat(S_IFDIR | 0755, 0)));
    }
    EXPECT_TRUE((*w)->add_file("app/data/" + rel, member_stat(S_IFREG | 0644, static_cast<off_t>(content.size())),
                               [&content](const auto& sink) -> Result<void> {
                                 for (std::size_t off = 0; off < content.size(); off += 100000) {
                                   const auto part = std::string_view(content).substr(off, 100000);
                                   if (auto r = sink(std::as_bytes(std::span(part.data(), part.size()))); !r)
                                     return r;
                                 }
                                 return {};
                               }));
  }
  auto s = (*w)->finish();
  EXPECT_TRUE(s) << s.error().message;
  if (s) seal = *s;
  return path;
}

// The seal's frames tile the file, each named by the SHA-256 of its byte range.
void expect_seal_tiles_file(const ArchiveSeal& seal, const std::filesystem::path& file) {
  const auto bytes = test::read_file(file);
  EXPECT_EQ(seal.size, bytes.size());
  EXPECT_EQ(seal.sha256, sha256(bytes));
  ASSERT_FALSE(seal.frames.empty());
  std::uint64_t at = 0, plain = 0;
  for (const auto& f : seal.frames) {
    ASSERT_LE(at + f.frame_size, bytes.size());
    EXPECT_EQ(f.id, sha256(std::string_view(bytes).substr(at, f.frame_size)));
    EXPECT_LE(f.plain_size, core::chunker_v1.max_size);
    at += f.frame_size;
    plain += f.plain_size;
  }
  EXPECT_EQ(at, bytes.size());
  EXPECT_EQ(plain, seal.plain_size);
}

// Python's tarfile, as the reference consumer reads an archive (spec §8.4-§8.5): extracts
// everything into `into`, then every file of the tree must be there with its content.
void expect_python_extracts(const std::filesystem::path& archive, const char* mode, const TempDir& dir,
                            const Tree& tree) {
  const auto into = dir / ("py-" + archive.filename().string());
  std::filesystem::create_directories(into);
  ASSERT_EQ(shell(std::string("python3 -c 'import sys, tarfile\n"
                              "with tarfile.open(sys.argv[1], \"") +
                  mode + "\") as t:\n    t.extractall(sys.argv[2])' " + archive.string() + " " + into.string()),
            0);
  for (const auto& [rel, content] : tree) EXPECT_TRUE(test::read_file(into / "app/data" / rel) == content) << rel;
}

// carsync's own consumer reads it: the scan stages every file (spec §8.4 step 5).
void expect_carsync_scans(const std::filesystem::path& archive, const TempDir& dir, const Tree& tree,
                          const Sha256Digest& sha) {
  // Volumes must lie below the policy's root (spec §6.2): this test's own root.
  core::MountPolicy policy;
  policy.volume_roots = std::vector<std::string>{(dir / "volumes").string()};
  const auto vol = dir / "volumes" / ("vol-" + archive.filename().string());
  const auto staging = dir / ("staging-" + archive.filename().string());
  std::filesystem::create_directories(vol);
  std::filesystem::create_directories(staging);
  const std::vector<VolumeMount> mounts{{vol.string(), "/app/data"}};
  ScanContext ctx;
  ctx.mounts = mounts;
  ctx.policy = &policy;
  ctx.manifest_paths = {"/app/data"};
  ctx.expected_sha256 = sha;
  auto plan = scan_and_stage(archive, ctx, staging);
  ASSERT_TRUE(plan) << plan.error().message;
  std::size_t files = 0;
  for (const auto& e : plan->entries) {
    if (e.is_dir) continue;
    ++files;
    const auto it = tree.find(e.rel);
    ASSERT_NE(it, tree.end()) << e.rel;
    EXPECT_TRUE(test::read_file(staging / e.blob) == it->second) << e.rel;
  }
  EXPECT_EQ(files, tree.size());
}

TEST(ChunkedArchive, GzipIsReadByEveryReader) {
  TempDir dir;
  ComputePool pool(2);
  const auto tree = sample_tree();
  ArchiveSeal seal;
  const auto path = write_tree(dir, "a.tar.gz", tree, {.format = ArchiveFormat::tar_gz, .compute = &pool, .chunked = true}, seal);
  expect_seal_tiles_file(seal, path);
  EXPECT_GE(seal.frames.size(), 10u);
  const std::string p = path.string();
  EXPECT_EQ(shell("gzip -t " + p), 0);
  EXPECT_EQ(shell("test \"$(gzip -dc " + p + " | wc -c)\" = " + std::to_string(seal.plain_size)), 0);
  EXPECT_EQ(shell("tar -tzf " + p + " > /dev/null"), 0);
  expect_python_extracts(path, "r:gz", dir, tree);
  expect_carsync_scans(path, dir, tree, seal.sha256);
}

TEST(ChunkedArchive, ZstdIsReadByEveryReader) {
  TempDir dir;
  ComputePool pool(2);
  const auto tree = sample_tree();
  ArchiveSeal seal;
  const auto path =
      write_tree(dir, "a.tar.zst", tree, {.format = ArchiveFormat::tar_zst, .level = 3, .compute = &pool, .chunked = true}, seal);
  expect_seal_tiles_file(seal, path);
  const std::string p = path.string();
  EXPECT_EQ(shell("zstd -q -t " + p), 0);
  EXPECT_EQ(shell("test \"$(zstd -q -dc " + p + " | wc -c)\" = " + std::to_string(seal.plain_size)), 0);
  EXPECT_EQ(shell("tar -I zstd -tf " + p + " > /dev/null"), 0);
  expect_carsync_scans(path, dir, tree, seal.sha256);
  // Python's tarfile reads no zstd before 3.14: the reference consumer takes tar.gz only.
}

TEST(ChunkedArchive, SameBytesWhateverTheThreadCount) {
  TempDir dir;
  const auto tree = sample_tree(2);
  ComputePool one(1), two(2);
  for (const auto format : {ArchiveFormat::tar_gz, ArchiveFormat::tar_zst}) {
    const int level = format == ArchiveFormat::tar_gz ? 6 : 3;
    const std::string ext = format == ArchiveFormat::tar_gz ? ".gz" : ".zst";
    ArchiveSeal s0, s1, s2;
    const auto a = write_tree(dir, "inline" + ext, tree, {.format = format, .level = level, .chunked = true}, s0);
    const auto b = write_tree(dir, "one" + ext, tree, {.format = format, .level = level, .compute = &one, .chunked = true}, s1);
    const auto c = write_tree(dir, "two" + ext, tree, {.format = format, .level = level, .compute = &two, .chunked = true}, s2);
    EXPECT_EQ(s1.sha256, s0.sha256);
    EXPECT_EQ(s2.sha256, s0.sha256);
    EXPECT_EQ(s1.frames, s0.frames);
    EXPECT_EQ(s2.frames, s0.frames);
  }
}

TEST(ChunkedArchive, OneChangedFileLeavesMostFramesShared) {
  TempDir dir;
  ComputePool pool(2);
  auto tree = sample_tree(3);
  for (const auto format : {ArchiveFormat::tar_gz, ArchiveFormat::tar_zst}) {
    const std::string ext = format == ArchiveFormat::tar_gz ? ".gz" : ".zst";
    ArchiveSeal before, after;
    write_tree(dir, "before" + ext, tree, {.format = format, .level = 3, .compute = &pool, .chunked = true}, before);
    auto changed = tree;
    auto& victim = changed["big/b2.bin"];
    for (std::size_t i = 0; i < 1000; ++i) victim[victim.size() / 2 + i] ^= 0x55;
    changed["notes/n3.txt"] += "one more line\n";  // and a file that grew: the tar shifts
    write_tree(dir, "after" + ext, changed, {.format = format, .level = 3, .compute = &pool, .chunked = true}, after);
    std::set<core::ChunkId> old;
    for (const auto& f : before.frames) old.insert(f.id);
    std::size_t fresh = 0;
    for (const auto& f : after.frames) fresh += old.contains(f.id) ? 0 : 1;
    // Each edit touches the chunk(s) around it (up to ~3 each); the rest is shared.
    EXPECT_LE(fresh, 6u) << "of " << after.frames.size();
    EXPECT_GE(after.frames.size(), 20u);
  }
}

TEST(ChunkedArchive, NonChunkedSealHasNoFrames) {
  TempDir dir;
  ArchiveSeal seal;
  write_tree(dir, "plain.tar.gz", sample_tree(4), {.format = ArchiveFormat::tar_gz}, seal);
  EXPECT_TRUE(seal.frames.empty());
  EXPECT_EQ(seal.plain_size, 0u);
}

TEST(ChunkedArchive, ZstdLevelOutOfRangeIsRefused) {
  TempDir dir;
  EXPECT_FALSE(ArchiveWriter::create(dir / "x", {.format = ArchiveFormat::tar_zst, .level = 0, .chunked = true}));
  EXPECT_FALSE(ArchiveWriter::create(dir / "y", {.format = ArchiveFormat::tar_gz, .level = 10, .chunked = true}));
}

}  // namespace
}  // namespace carsync::io
