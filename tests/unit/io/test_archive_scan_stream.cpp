// The streaming read side of the scan (io/archive_source): gzip and zstd decoded on a thread
// of their own, multi-member gzip and multi-frame zstd, the SHA-256 of the file checked while
// it streams, truncation, garbage, cancellation and the bounded read-ahead.
#include "io/archive_scan.hpp"
#include "io/archive_source.hpp"
#include "io/sha256.hpp"

#include "support/temp_dir.hpp"
#include "support/thread_count.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::TempDir;
using test::write_file;
using ::testing::HasSubstr;

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(gen() & 0xff);
  return out;
}

// An uncompressed pax tar in memory (what the decoders must hand to the tar parser).
class Tar {
 public:
  Tar& file(const std::string& name, std::string_view content) {
    members_.push_back({name, std::string(content)});
    return *this;
  }
  std::string bytes() const {
    std::string out;
    std::unique_ptr<struct archive, decltype(&archive_write_free)> a(archive_write_new(), archive_write_free);
    archive_write_set_format_pax(a.get());
    archive_write_open2(
        a.get(), &out, nullptr,
        [](struct archive*, void* client, const void* buf, std::size_t n) -> la_ssize_t {
          static_cast<std::string*>(client)->append(static_cast<const char*>(buf), n);
          return static_cast<la_ssize_t>(n);
        },
        nullptr, nullptr);
    for (const auto& [name, content] : members_) {
      std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
      archive_entry_copy_pathname(e.get(), name.c_str());
      archive_entry_set_filetype(e.get(), AE_IFREG);
      archive_entry_set_perm(e.get(), 0644);
      archive_entry_set_size(e.get(), static_cast<la_int64_t>(content.size()));
      archive_entry_set_mtime(e.get(), 1700000000, 0);
      if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK ||
          archive_write_data(a.get(), content.data(), content.size()) != static_cast<la_ssize_t>(content.size()))
        throw std::runtime_error(archive_error_string(a.get()));
    }
    if (archive_write_close(a.get()) != ARCHIVE_OK) throw std::runtime_error(archive_error_string(a.get()));
    return out;
  }

 private:
  std::vector<std::pair<std::string, std::string>> members_;
};

// One gzip member.
std::string gzip(std::string_view bytes, int level = 6) {
  z_stream z{};
  if (deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::bad_alloc();
  std::string out(deflateBound(&z, bytes.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// One zstd frame (with its content checksum, as the zstd CLI writes it).
std::string zstd(std::string_view bytes, int level = 3) {
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> c(ZSTD_createCCtx(), ZSTD_freeCCtx);
  ZSTD_CCtx_setParameter(c.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(c.get(), ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(bytes.size()), '\0');
  const auto n = ZSTD_compress2(c.get(), out.data(), out.size(), bytes.data(), bytes.size());
  if (ZSTD_isError(n)) throw std::runtime_error(ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

// `bytes` cut into `parts` pieces, each compressed on its own and concatenated (pigz -i,
// bgzip, `cat a.gz b.gz`, zstd frames written by independent workers).
template <class Compress>
std::string pieces(std::string_view bytes, std::size_t parts, Compress compress) {
  std::string out;
  const std::size_t step = bytes.size() / parts + 1;
  for (std::size_t off = 0; off < bytes.size(); off += step) out += compress(bytes.substr(off, step));
  return out;
}

Sha256Digest sha256(std::string_view bytes) {
  Sha256 h;
  h.update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  return h.finish();
}

class ScanStream : public ::testing::Test {
 protected:
  ScanStream() {
    fs::create_directories(vol);
    fs::create_directories(staging);
    mounts = {{vol.string(), "/app/data"}};
    ctx.mounts = mounts;
    ctx.policy = &policy;
    ctx.manifest_paths = {"/app/data"};
  }

  fs::path put(const std::string& name, std::string_view bytes) const {
    write_file(tmp / name, std::string(bytes));
    return tmp / name;
  }

  Result<ApplyPlan> scan(const fs::path& archive, const std::atomic<bool>* cancel = nullptr) {
    return scan_and_stage(archive, ctx, staging, cancel);
  }

  std::vector<std::string> staged_names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(staging)) out.push_back(e.path().filename().string());
    return out;
  }

  // Every member of `tar` staged with exactly its bytes.
  void expect_staged(const Result<ApplyPlan>& plan, const std::vector<std::pair<std::string, std::string>>& files) {
    ASSERT_TRUE(plan) << plan.error().message;
    ASSERT_EQ(plan->entries.size(), files.size());
    for (std::size_t i = 0; i < files.size(); ++i) {
      EXPECT_EQ(plan->entries[i].container_path, "/" + files[i].first);
      EXPECT_EQ(read_file(staging / plan->entries[i].blob), files[i].second) << files[i].first;
    }
  }

  void expect_refused(const Result<ApplyPlan>& plan, errc code, std::string_view text) {
    ASSERT_FALSE(plan) << "accepted with " << plan->entries.size() << " entries";
    EXPECT_EQ(plan.error().code, make_error_code(code)) << plan.error().message;
    EXPECT_THAT(plan.error().message, HasSubstr(text));
    EXPECT_THAT(staged_names(), ::testing::IsEmpty());
  }

  TempDir tmp;
  const fs::path vol = tmp / "fixed_volumes/mounts/appdata";
  const fs::path staging = tmp / "staging";
  std::vector<VolumeMount> mounts;
  core::MountPolicy policy;
  ScanContext ctx;

  // Larger than one read-ahead buffer, so members span several of them.
  const std::vector<std::pair<std::string, std::string>> files{
      {"app/data/noise.bin", random_bytes(3u << 20, 1)},
      {"app/data/small.txt", "small"},
      {"app/data/empty", ""},
      {"app/data/text.txt", std::string(2u << 20, 'x') + "end"}};
  std::string tar_bytes() const {
    Tar t;
    for (const auto& [name, content] : files) t.file(name, content);
    return t.bytes();
  }
};

TEST_F(ScanStream, GzipRoundTripVerified) {
  const std::string gz = gzip(tar_bytes());
  ctx.expected_sha256 = sha256(gz);
  expect_staged(scan(put("a.tar.gz", gz)), files);
}

TEST_F(ScanStream, ZstdRoundTripVerified) {
  const std::string zst = zstd(tar_bytes());
  ctx.expected_sha256 = sha256(zst);
  expect_staged(scan(put("a.tar.zst", zst)), files);
}

TEST_F(ScanStream, MultiMemberGzip) {
  // Members end mid-header and mid-content; one member is a few bytes only.
  const std::string tar = tar_bytes();
  for (const std::size_t parts : {2u, 7u, 1000u}) {
    SCOPED_TRACE(parts);
    fs::remove_all(staging);
    fs::create_directories(staging);
    const std::string gz = pieces(tar, parts, [](std::string_view b) { return gzip(b, 1); });
    ctx.expected_sha256 = sha256(gz);
    expect_staged(scan(put("multi.tar.gz", gz)), files);
  }
}

TEST_F(ScanStream, MultiFrameZstdWithSkippableFrame) {
  const std::string tar = tar_bytes();
  // A skippable frame (magic 0x184d2a50, 4-byte length, payload) between two data frames.
  const std::string skippable = std::string("\x50\x2a\x4d\x18\x03\x00\x00\x00" "abc", 11);
  const std::string zst = zstd(tar.substr(0, 5000)) + skippable + pieces(tar.substr(5000), 5, [](std::string_view b) { return zstd(b, 1); });
  ctx.expected_sha256 = sha256(zst);
  expect_staged(scan(put("multi.tar.zst", zst)), files);
}

TEST_F(ScanStream, VerificationFailsOnOneFlippedByte) {
  std::string gz = gzip(tar_bytes());
  ctx.expected_sha256 = sha256(gz);
  // The gzip header's MTIME field: the stream still decodes perfectly, only the hash sees it.
  gz[5] = static_cast<char>(gz[5] ^ 0x01);
  const auto plan = scan(put("flipped.tar.gz", gz));
  expect_refused(plan, errc::corrupt_archive,
                 "archive failed verification: sha256 " + to_hex(sha256(gz)) + " expected " +
                     to_hex(*ctx.expected_sha256));
}

TEST_F(ScanStream, FlippedByteInCompressedDataIsCorrupt) {
  std::string zst = zstd(tar_bytes());
  ctx.expected_sha256 = sha256(zst);
  zst[zst.size() / 2] = static_cast<char>(zst[zst.size() / 2] ^ 0x40);
  expect_refused(scan(put("flipped.tar.zst", zst)), errc::corrupt_archive, "corrupt archive");
}

TEST_F(ScanStream, NoExpectedDigestMeansNoVerification) {
  std::string gz = gzip(tar_bytes());
  gz[5] = static_cast<char>(gz[5] ^ 0x01);
  expect_staged(scan(put("unverified.tar.gz", gz)), files);
}

TEST_F(ScanStream, TruncatedArchives) {
  const std::string tar = tar_bytes();
  const std::string gz = gzip(tar), zst = zstd(tar);
  // Cut in the middle of the data, and so only the last bytes (gzip's CRC and length, zstd's
  // checksum) are missing: the tar stream is then complete, the compressed one is not.
  for (const std::size_t keep : {gz.size() / 2, gz.size() - 3}) {
    SCOPED_TRACE(keep);
    expect_refused(scan(put("cut.tar.gz", gz.substr(0, keep))), errc::corrupt_archive, "truncated gzip input");
  }
  for (const std::size_t keep : {zst.size() / 2, zst.size() - 2}) {
    SCOPED_TRACE(keep);
    expect_refused(scan(put("cut.tar.zst", zst.substr(0, keep))), errc::corrupt_archive, "truncated zstd input");
  }
}

TEST_F(ScanStream, GarbageInsteadOfAnArchive) {
  expect_refused(scan(put("random.bin", random_bytes(4096, 9))), errc::corrupt_archive,
                 "not a tar archive compressed with gzip or zstd");
  const auto plan = scan(put("text.txt", "hello world"));
  expect_refused(plan, errc::corrupt_archive, "(it starts with 68 65 6c 6c)");
  expect_refused(scan(put("empty.tar.gz", "")), errc::corrupt_archive, "the file is empty");
  expect_refused(scan(put("plain.tar", tar_bytes())), errc::corrupt_archive, "an uncompressed tar archive");
  // The magic alone: a gzip header and nothing else.
  expect_refused(scan(put("magic.gz", "\x1f\x8b")), errc::corrupt_archive, "truncated gzip input");
}

TEST_F(ScanStream, TrailingBytesAfterTheLastMemberAreHashedNotDecoded) {
  // Libarchive (the previous reader) and Python's tarfile stop at the tar end marker, so
  // zero padding or junk behind the last member never failed a scan; it still counts for
  // the file's hash.
  const std::string tar = tar_bytes();
  for (const auto& [name, archive] : {std::pair{"gz", gzip(tar)}, std::pair{"zst", zstd(tar)}}) {
    for (const std::string& tail : {std::string(4096, '\0'), std::string("trailing junk")}) {
      SCOPED_TRACE(std::string(name) + " " + std::to_string(tail.size()));
      fs::remove_all(staging);
      fs::create_directories(staging);
      const auto file = put("trailing." + std::string(name), archive + tail);
      ctx.expected_sha256 = sha256(archive + tail);
      expect_staged(scan(file), files);
      fs::remove_all(staging);
      fs::create_directories(staging);
      ctx.expected_sha256 = sha256(archive);
      expect_refused(scan(file), errc::corrupt_archive, "archive failed verification");
    }
  }
}

TEST_F(ScanStream, CompressedBytesAfterTheTarEndAreBoundedNotInflated) {
  // 64 MiB of zeros behind the end marker inside the same stream: only 1 MiB of it is
  // decoded (the scan ends, the rest is only hashed).
  std::string stream = tar_bytes();
  stream += std::string(64u << 20, '\0');
  const std::string zst = zstd(stream, 1);
  ctx.expected_sha256 = sha256(zst);
  expect_staged(scan(put("padded.tar.zst", zst)), files);
}

TEST_F(ScanStream, DecompressionBombHitsTheExpansionLimit) {
  ctx.limits.max_expansion_ratio = 100;
  const std::string tar = Tar().file("app/data/ok.txt", "fine").file("app/data/zeros.bin", std::string(50u << 20, '\0')).bytes();
  for (const auto& [name, archive] : {std::pair{"gz", gzip(tar, 9)}, std::pair{"zst", zstd(tar, 19)}}) {
    SCOPED_TRACE(name);
    ASSERT_LT(archive.size(), (50u << 20) / 100);
    expect_refused(scan(put(std::string("bomb.") + name, archive)), errc::limit_exceeded, "expands beyond 100x");
  }
}

TEST_F(ScanStream, CancelledMidStreamReturnsPromptlyAndJoinsTheReader) {
  // 128 MiB that decode quickly: the scan is cancelled as soon as it has staged anything.
  ctx.limits.max_expansion_ratio = 1e9;
  const std::string tar = Tar().file("app/data/zeros.bin", std::string(128u << 20, '\0')).bytes();
  const auto file = put("big.tar.zst", zstd(tar, 1));
  std::atomic<std::uint64_t> progress{0};
  ctx.progress = &progress;
  std::atomic<bool> cancel{false};
  const auto threads_before = test::thread_baseline();

  auto done = std::async(std::launch::async, [&] { return scan(file, &cancel); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (progress.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_GT(progress.load(), 0u);
  cancel = true;
  ASSERT_EQ(done.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  const auto plan = done.get();
  expect_refused(plan, errc::cancelled, "archive scan cancelled");
  EXPECT_LT(progress.load(), 128u << 20);
  EXPECT_TRUE(test::threads_settle_to(threads_before)) << test::threads_now() << " threads, expected " << threads_before;
}

TEST_F(ScanStream, ReadAheadIsBoundedAndTheReaderJoinsOnDestruction) {
  // A consumer that takes one block and stops: the reader fills the other buffers and waits
  // (memory bounded) until the source is destroyed, which stops and joins it.
  const std::string tar = Tar().file("app/data/zeros.bin", std::string(64u << 20, '\0')).bytes();
  const auto file = put("stalled.tar.gz", gzip(tar, 1));
  const auto threads_before = test::thread_baseline();
  {
    auto source = ArchiveSource::open(file, {.buffers = 2, .buffer_bytes = 64 * 1024, .read_bytes = 64 * 1024});
    ASSERT_TRUE(source) << source.error().message;
    EXPECT_EQ((*source)->compression(), ArchiveCompression::gzip);
    auto block = (*source)->next();
    ASSERT_TRUE(block) << block.error().message;
    EXPECT_EQ(block->size(), 64u * 1024);
    EXPECT_EQ(test::threads_now(), threads_before + 1);
  }
  EXPECT_TRUE(test::threads_settle_to(threads_before)) << test::threads_now() << " threads, expected " << threads_before;
}

TEST_F(ScanStream, SourceHashesTheWholeFileAndReportsTheFirstError) {
  const std::string zst = zstd(tar_bytes()) + "junk";
  auto source = ArchiveSource::open(put("s.tar.zst", zst), {.buffers = 3, .buffer_bytes = 8192});
  ASSERT_TRUE(source) << source.error().message;
  std::string decoded;
  for (;;) {
    auto block = (*source)->next();
    ASSERT_TRUE(block) << block.error().message;
    if (block->empty()) break;
    decoded.append(reinterpret_cast<const char*>(block->data()), block->size());
  }
  EXPECT_EQ(decoded, tar_bytes());
  auto digest = (*source)->finish();
  ASSERT_TRUE(digest) << digest.error().message;
  EXPECT_EQ(*digest, sha256(zst));

  std::atomic<bool> cancel{true};
  auto cancelled = ArchiveSource::open(put("c.tar.zst", zst), {.cancel = &cancel});
  ASSERT_TRUE(cancelled);
  auto block = (*cancelled)->next();
  ASSERT_FALSE(block);
  EXPECT_EQ(block.error().code, make_error_code(errc::cancelled));
  EXPECT_FALSE((*cancelled)->finish());
}

}  // namespace
}  // namespace carsync::io
