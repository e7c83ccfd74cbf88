#include "io/secure_fs.hpp"

#include "support/temp_dir.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
using carsync::test::TempDir;
using carsync::test::write_file;
using ::testing::HasSubstr;

class SecureFs : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(root / "a/b");
    write_file(root / "a/b/file.txt", "inside");
    write_file(outside / "secret.txt", "host secret");
    auto fd = open_root_dir(root.path());
    ASSERT_TRUE(fd) << fd.error().message;
    root_fd = std::move(*fd);
  }

  TempDir root;
  TempDir outside;
  unique_fd root_fd;
};

TEST_F(SecureFs, OpensPlainPathBeneathRoot) {
  auto fd = open_beneath(root_fd.get(), "a/b/file.txt", O_RDONLY);
  ASSERT_TRUE(fd) << fd.error().message;
  auto text = read_file_capped(fd->get(), 100);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "inside");
}

TEST_F(SecureFs, SymlinkInMiddleComponentIsRefused) {
  fs::create_directory_symlink(outside.path(), root / "a/link");
  auto fd = open_beneath(root_fd.get(), "a/link/secret.txt", O_RDONLY);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code, make_error_code(errc::symlink_rejected));
  EXPECT_THAT(fd.error().message, HasSubstr("symlink"));
}

TEST_F(SecureFs, SymlinkFinalComponentIsRefusedEvenWithDirectoryFlag) {
  fs::create_symlink(outside / "secret.txt", root / "a/final");
  fs::create_directory_symlink(outside.path(), root / "a/dirlink");
  for (const auto& [rel, flags] : {std::pair{"a/final", O_RDONLY}, std::pair{"a/final", O_RDONLY | O_NOFOLLOW},
                                   std::pair{"a/dirlink", O_RDONLY | O_DIRECTORY | O_NOFOLLOW}}) {
    auto fd = open_beneath(root_fd.get(), rel, flags);
    ASSERT_FALSE(fd) << rel;
    EXPECT_EQ(fd.error().code, make_error_code(errc::symlink_rejected)) << rel;
  }
}

TEST_F(SecureFs, DotDotEscapeIsRefused) {
  const auto rel = "a/../../" + outside.path().filename().string() + "/secret.txt";
  auto fd = open_beneath(root_fd.get(), rel, O_RDONLY);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code, make_error_code(errc::escapes_root));
  EXPECT_THAT(fd.error().message, HasSubstr("escapes volume root"));

  auto absolute = open_beneath(root_fd.get(), (outside / "secret.txt").string(), O_RDONLY);
  ASSERT_FALSE(absolute);
  EXPECT_EQ(absolute.error().code, make_error_code(errc::escapes_root));
}

TEST_F(SecureFs, MissingPathIsNotFound) {
  auto fd = open_beneath(root_fd.get(), "a/nope", O_RDONLY);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code, make_error_code(errc::not_found));
  EXPECT_THAT(fd.error().message, HasSubstr("does not exist"));
}

TEST_F(SecureFs, OpenRootDirRefusesSymlinkAndFile) {
  fs::create_directory_symlink(outside.path(), root / "rootlink");
  auto link = open_root_dir(root / "rootlink");
  ASSERT_FALSE(link);
  EXPECT_EQ(link.error().code, make_error_code(errc::symlink_rejected));

  auto file = open_root_dir(root / "a/b/file.txt");
  ASSERT_FALSE(file);
  EXPECT_EQ(file.error().code, boost::system::errc::not_a_directory);
}

TEST_F(SecureFs, LstatBeneathDoesNotFollowFinalSymlink) {
  fs::create_symlink("/nonexistent-target", root / "a/dangling");
  auto st = lstat_beneath(root_fd.get(), "a/dangling");
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_TRUE(S_ISLNK(st->st_mode));

  auto dir = lstat_beneath(root_fd.get(), "a/b");
  ASSERT_TRUE(dir);
  EXPECT_TRUE(S_ISDIR(dir->st_mode));

  fs::create_directory_symlink(outside.path(), root / "a/link");
  auto through = lstat_beneath(root_fd.get(), "a/link/secret.txt");
  ASSERT_FALSE(through);
  EXPECT_EQ(through.error().code, make_error_code(errc::symlink_rejected));
}

TEST_F(SecureFs, MkdirsBeneathCreatesMissingComponentsWithMode) {
  auto fd = mkdirs_beneath(root_fd.get(), "a/b/c/d", 0750);
  ASSERT_TRUE(fd) << fd.error().message;
  struct stat st {};
  ASSERT_EQ(::fstat(fd->get(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_TRUE(fs::is_directory(root / "a/b/c/d"));
  // Existing directories keep their mode.
  EXPECT_EQ(fs::status(root / "a/b").permissions(), fs::status(root / "a").permissions());

  auto again = mkdirs_beneath(root_fd.get(), "a/b/c/d", 0700);
  ASSERT_TRUE(again);
  EXPECT_EQ(fs::status(root / "a/b/c/d").permissions(), fs::perms(0750));
}

TEST_F(SecureFs, MkdirsBeneathRefusesSymlinkFileAndDotDot) {
  fs::create_directory_symlink(outside.path(), root / "a/link");
  auto through = mkdirs_beneath(root_fd.get(), "a/link/new", 0755);
  ASSERT_FALSE(through);
  EXPECT_EQ(through.error().code, make_error_code(errc::symlink_rejected));
  EXPECT_FALSE(fs::exists(outside / "new"));

  auto over_file = mkdirs_beneath(root_fd.get(), "a/b/file.txt/x", 0755);
  ASSERT_FALSE(over_file);

  auto dotdot = mkdirs_beneath(root_fd.get(), "a/../../x", 0755);
  ASSERT_FALSE(dotdot);
  EXPECT_EQ(dotdot.error().code, make_error_code(errc::path_rejected));
}

TEST_F(SecureFs, ReadFileCappedRefusesMoreThanCap) {
  write_file(root / "big", std::string(10, 'x'));
  auto fd = open_beneath(root_fd.get(), "big", O_RDONLY);
  ASSERT_TRUE(fd);
  auto at_cap = read_file_capped(fd->get(), 10);
  ASSERT_TRUE(at_cap);
  EXPECT_EQ(at_cap->size(), 10u);

  ASSERT_EQ(::lseek(fd->get(), 0, SEEK_SET), 0);
  auto over = read_file_capped(fd->get(), 9);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, make_error_code(errc::limit_exceeded));
}

TEST_F(SecureFs, ReadFileCappedRefusesNonRegular) {
  auto fd = open_beneath(root_fd.get(), "a", O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(fd);
  auto r = read_file_capped(fd->get(), 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::not_regular));
}

// 25 nested 200-character names: a path of about 5,000 bytes, beyond PATH_MAX (4,096).
std::string deep_rel(char fill = 'd', std::size_t depth = 25) {
  std::string rel;
  for (std::size_t i = 0; i < depth; ++i) {
    if (!rel.empty()) rel += '/';
    rel += std::string(199, fill) + static_cast<char>('a' + i % 26);
  }
  return rel;
}

TEST_F(SecureFs, PathLongerThanPathMaxIsWalkedInPieces) {
  const auto rel = deep_rel();
  ASSERT_GT(rel.size(), std::size_t{PATH_MAX});
  auto dir = mkdirs_beneath(root_fd.get(), rel, 0755);
  ASSERT_TRUE(dir) << dir.error().message;

  auto created = open_beneath(root_fd.get(), rel + "/leaf.txt", O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(created) << created.error().message;
  ASSERT_TRUE(write_all(created->get(), "deep"));
  auto fd = open_beneath(root_fd.get(), rel + "/leaf.txt", O_RDONLY);
  ASSERT_TRUE(fd) << fd.error().message;
  EXPECT_EQ(*read_file_capped(fd->get(), 100), "deep");
  auto st = lstat_beneath(root_fd.get(), rel);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_TRUE(S_ISDIR(st->st_mode));
  auto missing = open_beneath(root_fd.get(), rel + "/absent/x", O_RDONLY);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, make_error_code(errc::not_found));
}

TEST_F(SecureFs, SymlinkDeepInALongPathIsStillRefused) {
  // Links in the first piece, at the boundary's neighbourhood and in the last piece.
  for (const std::size_t depth : {3u, 20u, 24u}) {
    SCOPED_TRACE(depth);
    const auto rel = deep_rel(static_cast<char>('p' + depth % 5));
    auto dir = mkdirs_beneath(root_fd.get(), rel, 0755);
    ASSERT_TRUE(dir) << dir.error().message;
    // Replace component `depth` by a symlink to the outside directory.
    std::size_t end = 0;
    for (std::size_t i = 0; i < depth; ++i) end = rel.find('/', end + 1);
    const auto parent = rel.substr(0, end - 0);
    const auto slash = parent.rfind('/');
    const auto name = parent.substr(slash + 1);
    auto pfd = open_beneath(root_fd.get(), parent.substr(0, slash), O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(pfd) << pfd.error().message;
    ASSERT_EQ(::renameat(pfd->get(), name.c_str(), pfd->get(), "moved"), 0);
    ASSERT_EQ(::symlinkat(outside.path().c_str(), pfd->get(), name.c_str()), 0);

    auto fd = open_beneath(root_fd.get(), rel + "/leaf.txt", O_WRONLY | O_CREAT, 0600);
    ASSERT_FALSE(fd);
    EXPECT_EQ(fd.error().code, make_error_code(errc::symlink_rejected)) << fd.error().message;
  }
  EXPECT_EQ(fs::directory_iterator(outside.path())->path().filename(), "secret.txt");
  EXPECT_EQ(std::distance(fs::directory_iterator(outside.path()), fs::directory_iterator()), 1);
}

TEST(SecureFsNames, RandomNameHasPrefixSuffixAndHex) {
  const auto a = random_name(".x.", ".tmp");
  const auto b = random_name(".x.", ".tmp");
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 3u + 16u + 4u);
  EXPECT_TRUE(a.starts_with(".x.") && a.ends_with(".tmp"));
  EXPECT_EQ(a.substr(3, 16).find_first_not_of("0123456789abcdef"), std::string::npos);
}

}  // namespace
}  // namespace carsync::io
