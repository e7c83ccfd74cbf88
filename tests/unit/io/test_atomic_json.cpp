#include "io/atomic_json.hpp"

#include "io/secure_fs.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using carsync::test::read_file;
using carsync::test::TempDir;
using carsync::test::write_file;
using ::testing::HasSubstr;

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(AtomicJson, A01_NestedWriteCreatesParentsExactJsonMode0644NoTemp) {
  TempDir tmp;
  const auto target = tmp / "r1en_system/volume-sync/response.json";
  const json::value v = {{"status", "ok"}, {"archive_paths", json::array{"/app/data/\xc3\xa9"}}};

  auto r = write_json_file(target, v);
  ASSERT_TRUE(r) << r.error().message;

  EXPECT_EQ(read_file(target),
            "{\n  \"archive_paths\": [\n    \"/app/data/\\u00e9\"\n  ],\n  \"status\": \"ok\"\n}");
  EXPECT_EQ(fs::status(target).permissions(), fs::perms(0644));
  EXPECT_EQ(names_in(target.parent_path()), std::vector<std::string>{"response.json"});
}

TEST(AtomicJson, A02_FailedWriteLeavesNoTempAndTargetUntouched) {
  // The serialiser cannot fail on a json::value, so the failure is injected at the rename:
  // a non-empty directory occupies the target name.
  TempDir tmp;
  write_file(tmp / "out.json/keep", "kept");
  auto dir = open_root_dir(tmp.path());
  ASSERT_TRUE(dir);

  auto r = write_json_at(dir->get(), "out.json", json::value{{"a", 1}});
  ASSERT_FALSE(r);
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"out.json"});
  EXPECT_EQ(read_file(tmp / "out.json/keep"), "kept");
}

TEST(AtomicJson, A03_SymlinkedControlDirIsUnsafeAndTargetUntouched) {
  TempDir tmp;
  TempDir elsewhere;
  fs::create_directories(tmp / "r1en_system");
  fs::create_directory_symlink(elsewhere.path(), tmp / "r1en_system/volume-sync");

  auto r = write_json_file(tmp / "r1en_system/volume-sync/response.json", json::value{{"a", 1}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::unsafe_control_file));
  EXPECT_THAT(r.error().message, HasSubstr("unsafe"));
  EXPECT_TRUE(fs::is_empty(elsewhere.path()));
}

TEST(AtomicJson, NonDirectoryParentIsUnsafe) {
  TempDir tmp;
  write_file(tmp / "plain", "x");
  auto r = write_json_file(tmp / "plain/response.json", json::value{{"a", 1}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::unsafe_control_file));
  EXPECT_EQ(read_file(tmp / "plain"), "x");
}

TEST(AtomicJson, C33_CreatesMissingParentDirectories) {
  TempDir tmp;
  const auto target = tmp / "a/b/c/state.json";
  ASSERT_TRUE(write_json_file(target, json::value{{"k", "v"}}));
  EXPECT_TRUE(fs::is_directory(tmp / "a/b/c"));
  EXPECT_EQ(json::parse(read_file(target)), (json::value{{"k", "v"}}));
}

TEST(AtomicJson, C34_NoTempFileAfterSuccess) {
  TempDir tmp;
  auto dir = open_root_dir(tmp.path());
  ASSERT_TRUE(dir);
  ASSERT_TRUE(write_json_at(dir->get(), "x.json", json::value{{"n", 1}}));
  ASSERT_TRUE(write_json_at(dir->get(), "y.json", json::value{{"n", 2}}));
  EXPECT_EQ(names_in(tmp.path()), (std::vector<std::string>{"x.json", "y.json"}));
}

TEST(AtomicJson, C35_OverwritesExistingFile) {
  TempDir tmp;
  write_file(tmp / "x.json", "old content that is longer than the new one");
  fs::permissions(tmp / "x.json", fs::perms(0600));
  ASSERT_TRUE(write_json_file(tmp / "x.json", json::value{{"n", 2}}));
  EXPECT_EQ(read_file(tmp / "x.json"), "{\n  \"n\": 2\n}");
  EXPECT_EQ(fs::status(tmp / "x.json").permissions(), fs::perms(0644));
}

TEST(AtomicJson, WriteAtRejectsNamesWithPathComponents) {
  TempDir tmp;
  fs::create_directories(tmp / "sub");
  auto dir = open_root_dir(tmp / "sub");
  ASSERT_TRUE(dir);
  EXPECT_FALSE(write_json_at(dir->get(), "../escape.json", json::value{{"n", 1}}));
  EXPECT_FALSE(write_json_at(dir->get(), "", json::value{{"n", 1}}));
  EXPECT_FALSE(fs::exists(tmp / "escape.json"));
}

TEST(AtomicJson, ReadJsonAtParsesAndRefusesSymlinkAndOversize) {
  TempDir tmp;
  TempDir elsewhere;
  write_file(tmp / "ok.json", R"({"a": [1, 2]})");
  write_file(elsewhere / "secret.json", R"({"secret": true})");
  fs::create_symlink(elsewhere / "secret.json", tmp / "link.json");
  auto dir = open_root_dir(tmp.path());
  ASSERT_TRUE(dir);

  auto ok = read_json_at(dir->get(), "ok.json");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(*ok, (json::value{{"a", json::array{1, 2}}}));

  auto link = read_json_at(dir->get(), "link.json");
  ASSERT_FALSE(link);
  EXPECT_EQ(link.error().code, make_error_code(errc::symlink_rejected));

  auto big = read_json_at(dir->get(), "ok.json", 4);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, make_error_code(errc::limit_exceeded));
}

}  // namespace
}  // namespace carsync::io
