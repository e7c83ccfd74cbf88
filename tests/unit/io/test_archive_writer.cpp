#include "io/archive_writer.hpp"

#include "io/compute_pool.hpp"
#include "support/small_tmpfs.hpp"
#include "support/temp_dir.hpp"
#include "support/thread_count.hpp"
#include "unit/io/archive_reader.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <malloc.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace carsync::io {
namespace {

using test::TempDir;

struct stat file_stat(mode_t mode, uid_t uid, gid_t gid, time_t mtime, off_t size) {
  struct stat st {};
  st.st_mode = mode;
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_mtim.tv_sec = mtime;
  st.st_mtim.tv_nsec = 987654321;  // sub-second part is not stored
  st.st_size = size;
  st.st_nlink = 2;                 // must not turn the member into a hard link
  return st;
}

ArchiveWriter::Fill fill_with(std::string content, std::size_t chunk = 7) {
  return [content = std::move(content), chunk](const auto& sink) -> Result<void> {
    for (std::size_t off = 0; off < content.size(); off += chunk) {
      const auto part = std::string_view(content).substr(off, chunk);
      if (auto r = sink(std::as_bytes(std::span(part.data(), part.size()))); !r) return r;
    }
    return {};
  };
}

// Writes the same three members in the requested format and returns the archive path.
std::filesystem::path write_sample(const TempDir& dir, const ArchiveOptions& opts,
                                   const std::string& content) {
  const auto path = dir / "out.tar";
  auto w = ArchiveWriter::create(path, opts);
  EXPECT_TRUE(w) << w.error().message;
  EXPECT_TRUE((*w)->add_directory("app/data", file_stat(S_IFDIR | 0750, 1234, 5678, 1700000000, 0)));
  EXPECT_TRUE((*w)->add_directory("app/data/sub/", file_stat(S_IFDIR | 0700, 1234, 5678, 1700000001, 0)));
  EXPECT_TRUE((*w)->add_file("app/data/sub/x.bin",
                             file_stat(S_IFREG | 0640, 4321, 8765, 1700000002, content.size()),
                             fill_with(content)));
  EXPECT_TRUE((*w)->add_file("app/data/empty", file_stat(S_IFREG | 0604, 0, 0, 1700000003, 0),
                             fill_with("")));
  auto size = (*w)->finish();
  EXPECT_TRUE(size);
  EXPECT_EQ(size->size, std::filesystem::file_size(path));
  return path;
}

std::string binary_content() {
  std::string s;
  for (int i = 0; i < 100000; ++i) s += static_cast<char>((i * 7919) % 251);
  return s;
}

void expect_sample_members(const std::vector<test::Member>& m, const std::string& content) {
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].name, "app/data/");
  EXPECT_EQ(m[0].type, AE_IFDIR);
  EXPECT_EQ(m[0].perm, 0750u);
  EXPECT_EQ(m[0].mtime, 1700000000);
  EXPECT_EQ(m[1].name, "app/data/sub/");  // exactly one trailing '/'
  EXPECT_EQ(m[1].perm, 0700u);

  EXPECT_EQ(m[2].name, "app/data/sub/x.bin");
  EXPECT_EQ(m[2].type, AE_IFREG);
  EXPECT_EQ(m[2].perm, 0640u);
  EXPECT_EQ(m[2].size, static_cast<std::int64_t>(content.size()));
  EXPECT_EQ(m[2].mtime, 1700000002);
  EXPECT_EQ(m[2].uid, 4321);
  EXPECT_EQ(m[2].gid, 8765);
  EXPECT_FALSE(m[2].uname.has_value());  // numeric ids only
  EXPECT_FALSE(m[2].gname.has_value());
  EXPECT_FALSE(m[2].hardlink.has_value());
  EXPECT_EQ(m[2].content, content);

  EXPECT_EQ(m[3].name, "app/data/empty");
  EXPECT_EQ(m[3].size, 0);
  EXPECT_EQ(m[3].perm, 0604u);
}

TEST(ArchiveWriter, GzipMembersReadBackWithMetadata) {
  TempDir dir;
  const auto content = binary_content();
  const auto path = write_sample(dir, {ArchiveFormat::tar_gz, 6}, content);
  auto members = test::read_archive(path);
  ASSERT_TRUE(members) << members.error().message;
  EXPECT_EQ(members->filter, "gzip");
  expect_sample_members(members->members, content);
}

TEST(ArchiveWriter, ZstdMembersReadBackWithMetadata) {
  TempDir dir;
  const auto content = binary_content();
  const auto path = write_sample(dir, {ArchiveFormat::tar_zst, 3}, content);
  auto members = test::read_archive(path);
  ASSERT_TRUE(members) << members.error().message;
  EXPECT_EQ(members->filter, "zstd");
  expect_sample_members(members->members, content);
}

TEST(ArchiveWriter, CompressionLevelIsApplied) {
  TempDir fast, best;
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "line " + std::to_string(i % 97) + " of a repetitive log\n";
  const auto a = write_sample(fast, {ArchiveFormat::tar_gz, 1}, text);
  const auto b = write_sample(best, {ArchiveFormat::tar_gz, 9}, text);
  EXPECT_GT(std::filesystem::file_size(a), std::filesystem::file_size(b));
}

TEST(ArchiveWriter, GnuTarListsAndExtractsGzip) {
  TempDir dir;
  const auto content = binary_content();
  const auto path = write_sample(dir, {ArchiveFormat::tar_gz, 6}, content);
  const auto list = dir / "list.txt";
  ASSERT_EQ(std::system(("tar -tzf " + path.string() + " > " + list.string()).c_str()), 0);
  EXPECT_EQ(test::read_file(list), "app/data/\napp/data/sub/\napp/data/sub/x.bin\napp/data/empty\n");

  std::filesystem::create_directory(dir / "x");
  ASSERT_EQ(std::system(("tar -xzf " + path.string() + " -C " + (dir / "x").string()).c_str()), 0);
  EXPECT_EQ(test::read_file(dir / "x/app/data/sub/x.bin"), content);
  EXPECT_EQ(test::read_file(dir / "x/app/data/empty"), "");
  struct stat st {};
  ASSERT_EQ(::stat((dir / "x/app/data/sub/x.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1700000002);
}

TEST(ArchiveWriter, GnuTarExtractsZstd) {
  TempDir dir;
  const auto content = binary_content();
  const auto path = write_sample(dir, {ArchiveFormat::tar_zst, 3}, content);
  std::filesystem::create_directory(dir / "x");
  ASSERT_EQ(std::system(("tar -I zstd -xf " + path.string() + " -C " + (dir / "x").string()).c_str()), 0);
  EXPECT_EQ(test::read_file(dir / "x/app/data/sub/x.bin"), content);
}

TEST(ArchiveWriter, FillPushingTooFewBytesFails) {
  TempDir dir;
  auto w = ArchiveWriter::create(dir / "out.tar.gz", {});
  ASSERT_TRUE(w);
  auto r = (*w)->add_file("f", file_stat(S_IFREG | 0644, 0, 0, 0, 10), fill_with("short"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::io_failure));
}

TEST(ArchiveWriter, FillPushingTooManyBytesFails) {
  TempDir dir;
  auto w = ArchiveWriter::create(dir / "out.tar.gz", {});
  ASSERT_TRUE(w);
  auto r = (*w)->add_file("f", file_stat(S_IFREG | 0644, 0, 0, 0, 3), fill_with("too long"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::io_failure));
}

// Heap bytes in use (glibc; a sanitizer's allocator reports a constant and LeakSanitizer
// catches the same leak at exit).
std::size_t heap_in_use() {
  const auto m = ::mallinfo2();
  return m.uordblks + m.hblkhd;
}

// A build abandoned in the middle of a member (a cancellation, a read error) must release
// the compressor and the output buffers, and must not pad the member to its announced size.
// Regression: the destructor skipped libarchive's close, leaking the 64 KiB output block of
// every failed or cancelled build, plus ~270 KiB of zlib state with gzip.
TEST(ArchiveWriter, AbandonedBuildReleasesItsBuffersAndWritesNoPadding) {
  constexpr off_t announced = off_t{1} << 30;  // 1 GiB that never comes
  constexpr int builds = 16;
  for (auto format : {ArchiveFormat::tar_gz, ArchiveFormat::tar_zst}) {
    SCOPED_TRACE(std::string(to_string(format)));
    TempDir dir;
    const auto before = heap_in_use();
    for (int i = 0; i < builds; ++i) {
      const auto path = dir / ("out" + std::to_string(i));
      {
        auto w = ArchiveWriter::create(path, {format, 6});
        ASSERT_TRUE(w) << w.error().message;
        auto cancelled = [](const auto& sink) -> Result<void> {
          const std::string part(1000, 'x');
          if (auto r = sink(std::as_bytes(std::span(part.data(), part.size()))); !r) return r;
          return make_error(errc::cancelled, "cancelled");
        };
        auto r = (*w)->add_file("big", file_stat(S_IFREG | 0644, 0, 0, 0, announced), cancelled);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, make_error_code(errc::cancelled));
      }  // abandoned here
      EXPECT_LT(std::filesystem::file_size(path), 64u * 1024) << "the open member was padded";
    }
    const auto after = heap_in_use();
    // Each leaked build kept >= 64 KiB (the output block), gzip's ~330 KiB.
    EXPECT_LT(after > before ? after - before : 0, std::size_t{256} << 10) << "abandoned builds kept their buffers";
  }
}

TEST(ArchiveWriter, RefusesToOverwriteAnExistingFile) {
  TempDir dir;
  test::write_file(dir / "out.tar.gz", "keep");
  auto w = ArchiveWriter::create(dir / "out.tar.gz", {});
  ASSERT_FALSE(w);
  EXPECT_EQ(test::read_file(dir / "out.tar.gz"), "keep");
}

// create() failing after libarchive's handle exists but before it was opened (a gzip level
// out of range) must free the handle without closing it: closing a never-opened
// archive crashed inside libarchive.
TEST(ArchiveWriter, ALevelOutOfRangeIsRefusedCleanly) {
  TempDir dir;
  auto gz = ArchiveWriter::create(dir / "a.tar.gz", {.format = ArchiveFormat::tar_gz, .level = 10});
  ASSERT_FALSE(gz);
  EXPECT_NE(gz.error().message.find("level"), std::string::npos) << gz.error().message;
}


// ---------------------------------------------------------------------------------------
// Parallel compression (ArchiveOptions.compute)

int shell(const std::string& command) { return std::system(command.c_str()); }

// Text around random bytes: both kinds of block, and matches across block boundaries.
std::string mixed_content(std::size_t bytes) {
  std::mt19937 rng(7);
  std::string s;
  while (s.size() < bytes / 3) s += "line " + std::to_string(rng() % 1000) + " of an application log\n";
  while (s.size() < 2 * bytes / 3) s += static_cast<char>(rng() & 0xff);
  while (s.size() < bytes) s += "key=" + std::to_string(rng() % 50) + " value=" + std::to_string(rng() % 7) + "\n";
  return s;
}

Sha256Digest sha256_of_file(const std::filesystem::path& p) {
  const auto bytes = test::read_file(p);
  Sha256 h;
  h.update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  return h.finish();
}

// write_sample, returning the seal as well.
std::pair<std::filesystem::path, ArchiveSeal> write_sealed(const TempDir& dir, const ArchiveOptions& opts,
                                                          const std::string& content, std::string name = "out") {
  const auto path = dir / name;
  auto w = ArchiveWriter::create(path, opts);
  EXPECT_TRUE(w) << w.error().message;
  EXPECT_TRUE((*w)->add_directory("app/data", file_stat(S_IFDIR | 0750, 1234, 5678, 1700000000, 0)));
  EXPECT_TRUE((*w)->add_file("app/data/x.bin", file_stat(S_IFREG | 0640, 4321, 8765, 1700000002, content.size()),
                             fill_with(content, 100000)));
  auto seal = (*w)->finish();
  EXPECT_TRUE(seal) << seal.error().message;
  return {path, seal ? *seal : ArchiveSeal{}};
}

TEST(ArchiveWriterParallel, GzipIsOneStandardMemberEveryReaderTakes) {
  TempDir dir;
  ComputePool pool(4);
  const auto content = mixed_content(3u << 20);
  const auto [path, seal] = write_sealed(dir, {ArchiveFormat::tar_gz, 6, nullptr, &pool}, content);
  EXPECT_EQ(seal.size, std::filesystem::file_size(path));
  EXPECT_EQ(seal.sha256, sha256_of_file(path));

  auto back = test::read_archive(path);  // libarchive
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->filter, "gzip");
  ASSERT_EQ(back->members.size(), 2u);
  EXPECT_EQ(back->members[1].content, content);

  const std::string p = path.string();
  EXPECT_EQ(shell("gzip -t " + p), 0);
  const auto list = dir / "list.txt";
  ASSERT_EQ(shell("tar -tzf " + p + " > " + list.string()), 0);
  EXPECT_EQ(test::read_file(list), "app/data/\napp/data/x.bin\n");
  // Python's tarfile, the reference consumer: names, and the content's size and a digest.
  const auto py = dir / "py.txt";
  ASSERT_EQ(shell("python3 -c 'import sys, tarfile, hashlib\n"
                  "t = tarfile.open(sys.argv[1], \"r:gz\")\n"
                  "for m in t.getmembers():\n"
                  "    d = t.extractfile(m).read() if m.isfile() else b\"\"\n"
                  "    print(m.name, len(d), hashlib.sha256(d).hexdigest())' " + p + " > " + py.string()),
            0);
  Sha256 h;
  h.update(std::as_bytes(std::span(content.data(), content.size())));
  EXPECT_EQ(test::read_file(py), "app/data 0 " + to_hex(Sha256().finish()) + "\napp/data/x.bin " +
                                     std::to_string(content.size()) + " " + to_hex(h.finish()) + "\n");
}

TEST(ArchiveWriterParallel, ZstdWithWorkersIsReadByZstdAndTar) {
  TempDir dir;
  ComputePool pool(2);
  const auto content = mixed_content(6u << 20);  // more than one 2 MiB job
  const auto [path, seal] = write_sealed(dir, {ArchiveFormat::tar_zst, 3, nullptr, &pool}, content);
  EXPECT_EQ(seal.size, std::filesystem::file_size(path));
  EXPECT_EQ(seal.sha256, sha256_of_file(path));
  EXPECT_EQ(shell("zstd -q -t " + path.string()), 0);
  auto back = test::read_archive(path);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->filter, "zstd");
  ASSERT_EQ(back->members.size(), 2u);
  EXPECT_EQ(back->members[1].content, content);
  std::filesystem::create_directory(dir / "x");
  ASSERT_EQ(shell("tar -I zstd -xf " + path.string() + " -C " + (dir / "x").string()), 0);
  EXPECT_EQ(test::read_file(dir / "x/app/data/x.bin"), content);
}

TEST(ArchiveWriterParallel, GzipBytesDoNotDependOnTheThreadCount) {
  TempDir dir;
  const auto content = mixed_content(2u << 20);
  ComputePool one(1), four(4);
  const auto a = write_sealed(dir, {ArchiveFormat::tar_gz, 6, nullptr, nullptr}, content, "inline").first;
  const auto b = write_sealed(dir, {ArchiveFormat::tar_gz, 6, nullptr, &one}, content, "one").first;
  const auto c = write_sealed(dir, {ArchiveFormat::tar_gz, 6, nullptr, &four}, content, "four").first;
  const auto bytes = test::read_file(a);
  EXPECT_EQ(test::read_file(b), bytes);
  EXPECT_EQ(test::read_file(c), bytes);
}

TEST(ArchiveWriterParallel, GzipWithinTwoPercentOfGzipOnTheSameTar) {
  TempDir dir;
  ComputePool pool(2);
  const auto path = write_sealed(dir, {ArchiveFormat::tar_gz, 6, nullptr, &pool}, mixed_content(4u << 20)).first;
  const std::string tar = (dir / "plain.tar").string(), ref = (dir / "ref.tar.gz").string();
  ASSERT_EQ(shell("gzip -dc " + path.string() + " > " + tar + " && gzip -n -6 -c " + tar + " > " + ref), 0);
  const auto ours = std::filesystem::file_size(path), gzip = std::filesystem::file_size(ref);
  EXPECT_LE(static_cast<double>(ours), 1.02 * static_cast<double>(gzip)) << ours << " vs gzip -6 " << gzip;
}

TEST(ArchiveWriterParallel, AFullDiskIsNamedInTheError) {
  for (auto format : {ArchiveFormat::tar_gz, ArchiveFormat::tar_zst}) {
    SCOPED_TRACE(std::string(to_string(format)));
    TempDir dir;
    test::SmallTmpfs space;
    if (auto why = space.mount(dir / "small", 256)) GTEST_SKIP() << *why;
    ComputePool pool(2);
    auto w = ArchiveWriter::create(dir / "small/out", {format, 3, nullptr, &pool});
    ASSERT_TRUE(w) << w.error().message;
    std::mt19937 rng(1);
    std::string random(4u << 20, '\0');
    for (auto& c : random) c = static_cast<char>(rng() & 0xff);
    auto r = (*w)->add_file("big", file_stat(S_IFREG | 0644, 0, 0, 0, random.size()), fill_with(random, 65536));
    if (r) {  // the last blocks may only fail at the end
      auto sealed = (*w)->finish();
      if (!sealed) r = sealed.error();
    }
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, make_error_code(errc::io_failure));
    EXPECT_NE(r.error().message.find("No space left on device"), std::string::npos) << r.error().message;
  }
}

// A build cancelled with blocks still compressing: the writer's destructor drops what is
// queued and waits only for what runs, so neither pool jobs nor zstd workers outlive it.
TEST(ArchiveWriterParallel, AbandonedMidStreamLeavesNoThreadRunning) {
  for (auto format : {ArchiveFormat::tar_gz, ArchiveFormat::tar_zst}) {
    SCOPED_TRACE(std::string(to_string(format)));
    TempDir dir;
    const auto baseline = test::thread_baseline();
    {
      ComputePool pool(2);
      const auto with_pool = baseline + pool.size();
      {
        auto w = ArchiveWriter::create(dir / "out", {format, 6, nullptr, &pool});
        ASSERT_TRUE(w) << w.error().message;
        const auto content = mixed_content(8u << 20);
        auto cancelled = [&](const auto& sink) -> Result<void> {
          if (auto r = sink(std::as_bytes(std::span(content.data(), content.size()))); !r) return r;
          return make_error(errc::cancelled, "cancelled");
        };
        auto r = (*w)->add_file("big", file_stat(S_IFREG | 0644, 0, 0, 0, off_t{1} << 30), cancelled);
        ASSERT_FALSE(r);
      }  // abandoned with blocks in flight
      EXPECT_TRUE(test::threads_settle_to(with_pool)) << test::threads_now() << " threads, expected " << with_pool;
    }
    EXPECT_TRUE(test::threads_settle_to(baseline)) << test::threads_now() << " threads, expected " << baseline;
  }
}

// ---------------------------------------------------------------------------------------
// Chunked archives (ArchiveOptions.chunked; more in test_chunked_compressor.cpp)

TEST(ArchiveWriterChunked, FramesTileTheFileAndMembersReadBack) {
  TempDir dir;
  ComputePool pool(2);
  const auto content = mixed_content(3u << 20);
  for (const auto format : {ArchiveFormat::tar_gz, ArchiveFormat::tar_zst}) {
    const std::string name = format == ArchiveFormat::tar_gz ? "c.tar.gz" : "c.tar.zst";
    const auto [path, seal] =
        write_sealed(dir, {.format = format, .level = 3, .compute = &pool, .chunked = true}, content, name);
    EXPECT_EQ(seal.size, std::filesystem::file_size(path));
    EXPECT_EQ(seal.sha256, sha256_of_file(path));
    ASSERT_GE(seal.frames.size(), 5u);
    const auto bytes = test::read_file(path);
    std::uint64_t at = 0, plain = 0;
    for (const auto& f : seal.frames) {
      Sha256 h;
      h.update(std::as_bytes(std::span(bytes.data() + at, f.frame_size)));
      EXPECT_EQ(f.id, h.finish());
      at += f.frame_size;
      plain += f.plain_size;
    }
    EXPECT_EQ(at, seal.size);
    EXPECT_EQ(plain, seal.plain_size);
    EXPECT_EQ(plain % 512, 0u);  // the whole tar, trailer included
    auto back = test::read_archive(path);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(back->filter, format == ArchiveFormat::tar_gz ? "gzip" : "zstd");
    ASSERT_EQ(back->members.size(), 2u);
    EXPECT_EQ(back->members[1].content, content);
  }
}

TEST(ArchiveWriterChunked, AbandonedMidStreamLeavesNoThreadRunning) {
  TempDir dir;
  const auto baseline = test::thread_baseline();
  {
    ComputePool pool(2);
    auto w = ArchiveWriter::create(dir / "a.tar.zst", {.format = ArchiveFormat::tar_zst, .level = 3, .compute = &pool, .chunked = true});
    ASSERT_TRUE(w);
    const auto content = mixed_content(8u << 20);
    // The member is announced larger than what is pushed: the build is abandoned mid-file.
    EXPECT_FALSE((*w)->add_file("big", file_stat(S_IFREG | 0644, 0, 0, 1, content.size() * 2),
                               [&](const auto& sink) -> Result<void> {
                                 if (auto r = sink(std::as_bytes(std::span(content.data(), content.size()))); !r) return r;
                                 return make_error(errc::cancelled, "stop");
                               }));
  }
  EXPECT_TRUE(test::threads_settle_to(baseline));
}

}  // namespace
}  // namespace carsync::io
