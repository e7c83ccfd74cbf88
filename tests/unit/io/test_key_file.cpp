// Secret key files: created 0600 once, never overwritten, read only when private.
#include "io/key_file.hpp"

#include "support/temp_dir.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
using carsync::test::read_file;
using carsync::test::TempDir;
using carsync::test::write_file;
using ::testing::HasSubstr;

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0);
  return st.st_mode & 07777;
}

// The umask of the test process, restored when the test ends.
struct Umask {
  explicit Umask(mode_t m) : old(::umask(m)) {}
  ~Umask() { ::umask(old); }
  mode_t old;
};

TEST(KeyFile, WritesMode0600WhateverTheUmaskAndReadsBack) {
  TempDir tmp;
  const Umask permissive(0);
  const auto key = core::SecretKey::generate();
  const auto path = tmp / "provider.key";
  auto w = write_new_secret_key(path, key);
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_EQ(read_file(path), key.file_text());
  auto r = read_secret_key(path);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->public_key(), key.public_key());
  EXPECT_EQ(r->sign("m"), key.sign("m"));
}

TEST(KeyFile, NeverOverwritesAFileOrFollowsASymlink) {
  TempDir tmp;
  const auto path = tmp / "provider.key";
  write_file(path, "precious");
  auto w = write_new_secret_key(path, core::SecretKey::generate());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, errc::io_failure);
  EXPECT_THAT(w.error().message, HasSubstr("exists"));
  EXPECT_THAT(w.error().message, HasSubstr(path.string()));
  EXPECT_EQ(read_file(path), "precious");

  const auto target = tmp / "target";
  const auto link = tmp / "link.key";
  fs::create_symlink(target, link);  // dangling: O_CREAT would create target through it
  w = write_new_secret_key(link, core::SecretKey::generate());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, errc::io_failure);
  EXPECT_FALSE(fs::exists(target));

  w = write_new_secret_key(tmp / "missing-dir/provider.key", core::SecretKey::generate());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, errc::io_failure);
}

TEST(KeyFile, ReadRefusesASymlinkEvenToAGoodKey) {
  TempDir tmp;
  const auto key = core::SecretKey::generate();
  ASSERT_TRUE(write_new_secret_key(tmp / "real.key", key));
  fs::create_symlink(tmp / "real.key", tmp / "link.key");
  auto r = read_secret_key(tmp / "link.key");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::bad_config);
  EXPECT_THAT(r.error().message, HasSubstr("symlink"));
  EXPECT_THAT(r.error().message, HasSubstr((tmp / "link.key").string()));
}

TEST(KeyFile, ReadRefusesAFileGroupOrOthersCanAccess) {
  TempDir tmp;
  const auto path = tmp / "provider.key";
  ASSERT_TRUE(write_new_secret_key(path, core::SecretKey::generate()));
  for (mode_t mode : {0644u, 0640u, 0604u, 0660u, 0602u}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto r = read_secret_key(path);
    ASSERT_FALSE(r) << std::oct << mode;
    EXPECT_EQ(r.error().code, errc::bad_config);
    EXPECT_THAT(r.error().message, HasSubstr("must not be accessible by group or others; chmod 600 " + path.string()));
  }
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  EXPECT_THAT(read_secret_key(path).error().message, HasSubstr("mode 0644"));
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(read_secret_key(path));
}

TEST(KeyFile, ReadRefusesLargeFilesDirectoriesAndBadContent) {
  TempDir tmp;
  const auto big = tmp / "big.key";
  write_file(big, std::string(4097, ' '));
  ASSERT_EQ(::chmod(big.c_str(), 0600), 0);
  auto r = read_secret_key(big);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("4096"));

  fs::create_directory(tmp / "dir.key");
  ASSERT_EQ(::chmod((tmp / "dir.key").c_str(), 0700), 0);
  r = read_secret_key(tmp / "dir.key");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("not a regular file"));

  const auto junk = tmp / "junk.key";
  write_file(junk, "{\"type\": \"carsync-ed25519-secret-key\"}");
  ASSERT_EQ(::chmod(junk.c_str(), 0600), 0);
  r = read_secret_key(junk);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::bad_config);
  EXPECT_THAT(r.error().message, HasSubstr(junk.string()));
  EXPECT_THAT(r.error().message, HasSubstr("\"seed\""));

  r = read_secret_key(tmp / "absent.key");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::bad_config);
  EXPECT_THAT(r.error().message, HasSubstr("absent.key"));
}

}  // namespace
}  // namespace carsync::io
