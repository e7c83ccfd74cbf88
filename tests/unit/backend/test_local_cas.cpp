#include "backend/local_cas.hpp"

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace carsync::backend {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::TempDir;
using test::write_file;

std::size_t entries_in(const fs::path& dir) {
  if (!fs::exists(dir)) return 0;
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

class LocalCasTest : public ::testing::Test {
 protected:
  TempDir tmp;
  LocalCas cas{tmp / "cas"};
};

TEST_F(LocalCasTest, PutThenGetRoundTrips) {
  write_file(tmp / "in.txt", "hello world");
  auto cid = cas.put(tmp / "in.txt");
  ASSERT_TRUE(cid) << cid.error().message;
  EXPECT_EQ(*cid, "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e");
  EXPECT_TRUE(cas.contains(*cid));

  auto path = cas.get(*cid);
  ASSERT_TRUE(path) << path.error().message;
  EXPECT_EQ(read_file(*path), "hello world");

  ASSERT_TRUE(cas.export_to(*cid, tmp / "out.txt"));
  EXPECT_EQ(read_file(tmp / "out.txt"), "hello world");
  EXPECT_EQ(entries_in(tmp / "cas" / "tmp"), 0u);
}

TEST_F(LocalCasTest, PutIsIdempotent) {
  write_file(tmp / "a", "same bytes");
  write_file(tmp / "b", "same bytes");
  auto first = cas.put(tmp / "a");
  auto second = cas.put(tmp / "b");
  ASSERT_TRUE(first && second);
  EXPECT_EQ(*first, *second);
  EXPECT_EQ(entries_in(tmp / "cas" / "blobs"), 1u);
  EXPECT_EQ(entries_in(tmp / "cas" / "tmp"), 0u);
}

TEST_F(LocalCasTest, HeldCidFindsStoredBytesWithoutStoringAnything) {
  write_file(tmp / "in.txt", "hello world");
  auto none = cas.held_cid(tmp / "in.txt");
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(entries_in(tmp / "cas" / "blobs"), 0u);
  ASSERT_TRUE(cas.put(tmp / "in.txt"));
  auto held = cas.held_cid(tmp / "in.txt");
  ASSERT_TRUE(held && held->has_value());
  EXPECT_EQ(**held, "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e");
  EXPECT_FALSE(cas.held_cid(tmp / "missing"));
}

TEST_F(LocalCasTest, CorruptedBlobIsDetected) {
  write_file(tmp / "in", "precious state");
  auto cid = cas.put(tmp / "in");
  ASSERT_TRUE(cid);
  write_file(tmp / "cas" / "blobs" / *cid, "precious statE");

  auto got = cas.get(*cid);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, make_error_code(errc::corrupt_archive));
  EXPECT_EQ(got.error().message, "blob " + *cid + " failed verification");

  auto exported = cas.export_to(*cid, tmp / "out");
  ASSERT_FALSE(exported);
  EXPECT_EQ(exported.error().code, make_error_code(errc::corrupt_archive));
  EXPECT_FALSE(fs::exists(tmp / "out"));
  EXPECT_EQ(entries_in(tmp.path()), 2u);  // only "in" and "cas": no temp copy left behind
}

TEST_F(LocalCasTest, FetchedCopySurvivesRetirementOfTheBlob) {
  write_file(tmp / "in", "snapshot bytes");
  auto cid = cas.put(tmp / "in");
  ASSERT_TRUE(cid);
  fs::create_directories(tmp / "downloads");
  ASSERT_TRUE(cas.fetch_to(*cid, tmp / "downloads" / *cid));
  ASSERT_TRUE(cas.remove(*cid));  // the provider retires it while the consumer still needs it
  EXPECT_EQ(read_file(tmp / "downloads" / *cid), "snapshot bytes");

  auto again = cas.fetch_to(*cid, tmp / "downloads" / "again");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, make_error_code(errc::not_found));
  EXPECT_EQ(entries_in(tmp / "downloads"), 1u);
}

TEST_F(LocalCasTest, FetchRefusesACorruptBlobAndLeavesNoCopy) {
  write_file(tmp / "in", "precious state");
  auto cid = cas.put(tmp / "in");
  ASSERT_TRUE(cid);
  write_file(tmp / "cas" / "blobs" / *cid, "precious statE");
  fs::create_directories(tmp / "downloads");
  auto got = cas.fetch_to(*cid, tmp / "downloads" / *cid);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, make_error_code(errc::corrupt_archive));
  EXPECT_EQ(entries_in(tmp / "downloads"), 0u);
}

// A kill during an upload left cas/tmp/put.*.tmp for good (found by the crash campaign).
// Temps of a dead writer go; a live writer's (another process sharing the store) stays.
TEST_F(LocalCasTest, SweepRemovesOnlyTempsOfDeadWriters) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  fs::create_directories(tmp / "cas/tmp");
  const auto dead = "put." + std::to_string(child) + ".0123456789abcdef.tmp";
  const auto live = "put." + std::to_string(::getpid()) + ".0123456789abcdef.tmp";
  write_file(tmp / "cas/tmp" / dead, "half an upload");
  write_file(tmp / "cas/tmp" / live, "an upload in progress");
  write_file(tmp / "cas/tmp" / "unrelated.tmp", "not ours");
  EXPECT_EQ(cas.sweep_temps(), 1u);
  EXPECT_FALSE(fs::exists(tmp / "cas/tmp" / dead));
  EXPECT_TRUE(fs::exists(tmp / "cas/tmp" / live));
  EXPECT_TRUE(fs::exists(tmp / "cas/tmp/unrelated.tmp"));
}

TEST_F(LocalCasTest, MissingBlobIsNotFound) {
  const std::string cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
  auto got = cas.get(cid);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, make_error_code(errc::not_found));
  auto exported = cas.export_to(cid, tmp / "out");
  ASSERT_FALSE(exported);
  EXPECT_EQ(exported.error().code, make_error_code(errc::not_found));
  EXPECT_FALSE(cas.contains(cid));
}

TEST_F(LocalCasTest, MalformedCidIsRejectedWithoutTouchingFiles) {
  write_file(tmp / "victim", "keep me");
  EXPECT_FALSE(cas.get("../../victim"));
  EXPECT_FALSE(cas.remove("../../victim"));
  EXPECT_FALSE(cas.contains("../../victim"));
  EXPECT_EQ(read_file(tmp / "victim"), "keep me");
}

TEST_F(LocalCasTest, RemoveDeletesAndToleratesMissing) {
  write_file(tmp / "in", "short-lived");
  auto cid = cas.put(tmp / "in");
  ASSERT_TRUE(cid);
  ASSERT_TRUE(cas.remove(*cid));
  EXPECT_FALSE(cas.contains(*cid));
  EXPECT_EQ(cas.get(*cid).error().code, make_error_code(errc::not_found));
  EXPECT_TRUE(cas.remove(*cid));
}

TEST_F(LocalCasTest, MissingSourceFails) {
  auto cid = cas.put(tmp / "nope");
  ASSERT_FALSE(cid);
  EXPECT_NE(cid.error().message.find("nope"), std::string::npos);
}

TEST_F(LocalCasTest, LargeFileIsStreamedIntact) {
  // Several times the copy buffer, with a tail that is not a whole block.
  const fs::path big = tmp / "big";
  std::string block(1 << 20, '\0');
  {
    std::ofstream out(big, std::ios::binary);
    for (int i = 0; i < 5; ++i) {
      for (std::size_t j = 0; j < block.size(); ++j) block[j] = static_cast<char>((j * 31 + i * 7) & 0xff);
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
    out.write("tail", 4);
  }
  auto cid = cas.put(big);
  ASSERT_TRUE(cid) << cid.error().message;
  ASSERT_TRUE(cas.export_to(*cid, tmp / "copy"));
  EXPECT_EQ(fs::file_size(tmp / "copy"), fs::file_size(big));
  EXPECT_TRUE(read_file(tmp / "copy") == read_file(big));
  EXPECT_TRUE(cas.get(*cid));
}

TEST_F(LocalCasTest, ExportReplacesExistingFile) {
  write_file(tmp / "in", "new content");
  write_file(tmp / "out", "old content that is longer");
  auto cid = cas.put(tmp / "in");
  ASSERT_TRUE(cid);
  ASSERT_TRUE(cas.export_to(*cid, tmp / "out"));
  EXPECT_EQ(read_file(tmp / "out"), "new content");
}

}  // namespace
}  // namespace carsync::backend
