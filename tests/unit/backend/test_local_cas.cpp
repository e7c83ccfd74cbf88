#include "backend/local_cas.hpp"

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/stat.h>

#include <filesystem>
#include <span>
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

Sha256Digest sha256_of(const std::string& bytes) {
  Sha256 h;
  h.update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  return h.finish();
}

ino_t inode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_ino;
}

// Issue 10: the provider's archive becomes the blob by rename, not by a second read and copy.
TEST_F(LocalCasTest, AdoptRenamesTheFileIntoTheStore) {
  write_file(tmp / "archive", "hello world");
  const ino_t inode = inode_of(tmp / "archive");
  auto cid = cas.adopt(tmp / "archive", sha256_of("hello world"));
  ASSERT_TRUE(cid) << cid.error().message;
  EXPECT_EQ(*cid, "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e");  // put's CID for these bytes
  EXPECT_FALSE(fs::exists(tmp / "archive")) << "the file was copied, not taken";
  EXPECT_TRUE(cas.contains(*cid));
  EXPECT_EQ(inode_of(tmp / "cas" / "blobs" / *cid), inode) << "not the same file: copied";
  EXPECT_EQ(fs::status(tmp / "cas" / "blobs" / *cid).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  auto got = cas.get(*cid);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(read_file(*got), "hello world");
  EXPECT_EQ(entries_in(tmp / "cas" / "tmp"), 0u);

  // Equal bytes adopted again: the blob stays as it was, the new file just goes.
  write_file(tmp / "again", "hello world");
  auto again = cas.adopt(tmp / "again", sha256_of("hello world"));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, *cid);
  EXPECT_FALSE(fs::exists(tmp / "again"));
  EXPECT_EQ(inode_of(tmp / "cas" / "blobs" / *cid), inode);
  EXPECT_EQ(entries_in(tmp / "cas" / "blobs"), 1u);

  auto missing = cas.adopt(tmp / "missing", sha256_of("other"));
  ASSERT_FALSE(missing);
  EXPECT_FALSE(cas.contains(cid_from_digest(sha256_of("other"))));
}

// A file on another filesystem than the store (a tmpfs) cannot be renamed: it is copied
// (hashed while copied, so the CID is still right) and then removed.
TEST_F(LocalCasTest, AdoptAcrossFilesystemsFallsBackToACopy) {
  std::error_code ec;
  const fs::path shm = fs::path("/dev/shm") / ("carsync-adopt-" + std::to_string(::getpid()));
  fs::create_directories(shm, ec);
  struct stat a {}, b {};
  if (ec || ::stat(shm.c_str(), &a) != 0 || ::stat(tmp.path().c_str(), &b) != 0 || a.st_dev == b.st_dev)
    GTEST_SKIP() << "no tmpfs on another filesystem than " << tmp.path();
  write_file(shm / "archive", "across filesystems");
  auto cid = cas.adopt(shm / "archive", sha256_of("across filesystems"));
  fs::remove_all(shm, ec);
  ASSERT_TRUE(cid) << cid.error().message;
  EXPECT_EQ(*cid, cid_from_digest(sha256_of("across filesystems")));
  EXPECT_FALSE(fs::exists(shm / "archive"));
  auto got = cas.get(*cid);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(read_file(*got), "across filesystems");
  EXPECT_EQ(entries_in(tmp / "cas" / "tmp"), 0u);
}

// The consumer's copy for a scan that verifies while it reads: linked, not read here, so a
// swapped blob comes through (the caller checks it against the CID's digest).
TEST_F(LocalCasTest, LinkToDoesNotReadTheBlob) {
  write_file(tmp / "in", "precious state");
  auto cid = cas.put(tmp / "in");
  ASSERT_TRUE(cid);
  write_file(tmp / "cas" / "blobs" / *cid, "precious statE");
  fs::create_directories(tmp / "downloads");
  ASSERT_TRUE(cas.link_to(*cid, tmp / "downloads" / *cid));
  EXPECT_EQ(read_file(tmp / "downloads" / *cid), "precious statE");
  EXPECT_NE(sha256_of("precious statE"), *digest_from_cid(*cid));
  auto missing = cas.link_to(cid_from_digest(sha256_of("x")), tmp / "downloads" / "x");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, make_error_code(errc::not_found));
  EXPECT_FALSE(cas.link_to("../escape", tmp / "downloads" / "y"));
  EXPECT_EQ(entries_in(tmp / "downloads"), 1u);
}

}  // namespace
}  // namespace carsync::backend
