// Online capture (spec §7.3 "online entry", §12 item 25): Docker export streams renamed to
// container paths and copied into the archive; links and special files refused.
#include "io/online_capture.hpp"

#include "support/temp_dir.hpp"
#include "unit/io/archive_reader.hpp"
#include "unit/io/docker_tar.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::test {
namespace {

namespace fs = std::filesystem;

// Several chunks' worth of every byte value, in an order that is not a simple cycle.
std::string binary_bytes(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 2463534242u;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

bool has_text(const Error& e, std::string_view fragment) { return e.message.find(fragment) != std::string::npos; }

std::string trimmed(std::string name) {
  while (name.ends_with('/')) name.pop_back();
  return name;
}

std::vector<std::string> names(const ReadBack& back) {
  std::vector<std::string> out;
  for (const auto& m : back.members) out.push_back(trimmed(m.name));
  return out;
}

class OnlineCapture : public ::testing::Test {
 protected:
  // A source whose export stream holds `members`.
  io::OnlineSource source(std::string container_path, const std::vector<TarMember>& members, bool gzip = false,
                          std::string base = "") {
    fs::path stream = tmp / ("export" + std::to_string(++streams_) + ".tar");
    write_tar(stream, members, gzip);
    return {std::move(container_path), std::move(stream), std::move(base)};
  }

  Result<io::CaptureStats> build(const std::vector<io::OnlineSource>& sources,
                             const std::atomic<bool>* cancel = nullptr) {
    return io::build_online_archive(sources, out, io::ArchiveOptions{}, cancel);
  }

  ReadBack read_out() {
    auto back = read_archive(out);
    EXPECT_TRUE(back) << (back ? "" : back.error().message);
    return back ? *back : ReadBack{};
  }

  // A build over /app/cache whose export holds `bad` beside ordinary members fails naming it.
  void expect_refused(TarMember bad, std::string_view kind, errc code) {
    auto src = source("/app/cache", {tar_dir("cache/"), tar_file("cache/ok.txt", "fine"), bad});
    auto r = build({src});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, make_error_code(code));
    EXPECT_TRUE(has_text(r.error(), kind)) << r.error().message;
    EXPECT_TRUE(has_text(r.error(), "tar member " + bad.name)) << r.error().message;
    EXPECT_TRUE(has_text(r.error(), "/app/cache/" + bad.name.substr(6))) << r.error().message;
    EXPECT_FALSE(fs::exists(out));
  }

  TempDir tmp;
  fs::path out = tmp / "sync_archive_1_1.tar.gz";

 private:
  int streams_ = 0;
};

TEST(OnlineMemberName, RenamesPerSection73) {
  struct Case {
    std::string_view path, base, member, want;
  };
  const Case cases[] = {
      {"/tmp/generated.txt", "generated.txt", "generated.txt", "tmp/generated.txt"},
      {"/tmp/generated.txt", "", "generated.txt", "tmp/generated.txt"},  // base falls back
      {"/app/cache", "cache", "cache/", "app/cache"},
      {"/app/cache", "cache", "cache/a.txt", "app/cache/a.txt"},
      {"/app/cache", "cache", "/cache/sub/b.txt", "app/cache/sub/b.txt"},  // leading '/'
      {"/app/cache", "cache", "other.txt", "app/cache/other.txt"},        // not under base
      {"/app/cache", "cache", "cachex/y", "app/cache/cachex/y"},          // prefix is base + '/'
      {"/app/cache", "renamed", "renamed/z", "app/cache/z"},              // Docker's base wins
      {"/app/cache", "/cache/", "cache/a", "app/cache/a"},
      {"/app/cache", "cache", "cache/...", "app/cache/..."},  // not a '..' segment
  };
  for (const auto& c : cases) {
    auto got = io::online_member_name(c.path, c.base, c.member);
    ASSERT_TRUE(got) << c.member << ": " << got.error().message;
    EXPECT_EQ(*got, c.want) << c.path << " " << c.base << " " << c.member;
  }
}

TEST(OnlineMemberName, DotDotSegmentIsRejected) {
  for (std::string_view member : {"../etc/passwd", "cache/../../etc", "cache/..", ".."}) {
    auto got = io::online_member_name("/app/cache", "cache", member);
    ASSERT_FALSE(got) << member;
    EXPECT_EQ(got.error().code, make_error_code(errc::path_rejected));
    EXPECT_TRUE(has_text(got.error(), "tar member name contains '..'")) << got.error().message;
  }
}

TEST_F(OnlineCapture, SingleFileExportIsStoredUnderItsContainerPath) {
  const std::string bytes = binary_bytes(300 * 1024);  // several copy chunks
  TarMember m = tar_file("generated.txt", bytes, 0640);
  m.uid = 1234;
  m.gid = 4321;
  m.mtime = 1712345678;
  auto stats = build({source("/tmp/generated.txt", {m}, false, "generated.txt")});
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->files, 1u);
  EXPECT_EQ(stats->directories, 0u);
  EXPECT_EQ(stats->content_bytes, bytes.size());
  EXPECT_EQ(stats->archive_size, fs::file_size(out));

  auto back = read_out();
  EXPECT_EQ(back.filter, "gzip");
  ASSERT_EQ(back.members.size(), 1u);
  const Member& got = back.members[0];
  EXPECT_EQ(got.name, "tmp/generated.txt");
  EXPECT_EQ(got.type, unsigned(AE_IFREG));
  EXPECT_EQ(got.content, bytes);
  EXPECT_EQ(got.perm, 0640u);
  EXPECT_EQ(got.uid, 1234);
  EXPECT_EQ(got.gid, 4321);
  EXPECT_EQ(got.mtime, 1712345678);
}

TEST_F(OnlineCapture, DirectoryExportKeepsItsTreeUnderTheContainerPath) {
  const std::string blob = binary_bytes(70 * 1024);
  auto stats = build({source("/app/cache", {tar_dir("cache/", 0750), tar_file("cache/a.txt", "alpha\n"),
                                            tar_dir("cache/sub/"), tar_file("cache/sub/b.bin", blob),
                                            tar_file("cache/empty", "")})});
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->files, 3u);
  EXPECT_EQ(stats->directories, 2u);
  EXPECT_EQ(stats->content_bytes, 6 + blob.size());

  auto back = read_out();
  EXPECT_EQ(names(back), (std::vector<std::string>{"app/cache", "app/cache/a.txt", "app/cache/sub",
                                                   "app/cache/sub/b.bin", "app/cache/empty"}));
  ASSERT_EQ(back.members.size(), 5u);
  EXPECT_EQ(back.members[0].type, unsigned(AE_IFDIR));
  EXPECT_EQ(back.members[0].perm, 0750u);
  EXPECT_EQ(back.members[1].content, "alpha\n");
  EXPECT_EQ(back.members[2].type, unsigned(AE_IFDIR));
  EXPECT_EQ(back.members[3].content, blob);
  EXPECT_EQ(back.members[4].type, unsigned(AE_IFREG));
  EXPECT_EQ(back.members[4].size, 0);
}

TEST_F(OnlineCapture, SourcesAreAppendedInRequestOrderAndGzipStreamsAreRead) {
  auto first = source("/tmp/generated.txt", {tar_file("generated.txt", "one")});
  auto second = source("/app/cache", {tar_dir("cache/"), tar_file("cache/x", "two")}, /*gzip=*/true);
  ASSERT_TRUE(build({first, second}));
  auto back = read_out();
  EXPECT_EQ(names(back), (std::vector<std::string>{"tmp/generated.txt", "app/cache", "app/cache/x"}));
  ASSERT_EQ(back.members.size(), 3u);
  EXPECT_EQ(back.members[0].content, "one");
  EXPECT_EQ(back.members[2].content, "two");
}

TEST_F(OnlineCapture, DotDotMemberAbortsTheBuildAndRemovesTheArchive) {
  auto src = source("/app/cache", {tar_dir("cache/"), tar_file("cache/a.txt", "a"),
                                   tar_file("cache/../../etc/passwd", "root::0:0")});
  auto r = build({src});
  ASSERT_FALSE(r);
  EXPECT_TRUE(has_text(r.error(), "tar member name contains '..'")) << r.error().message;
  EXPECT_TRUE(has_text(r.error(), "cache/../../etc/passwd")) << r.error().message;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(OnlineCapture, SymlinkMemberIsRefused) {
  TarMember link{.name = "cache/link", .type = AE_IFLNK, .perm = 0777, .symlink = "/etc/shadow"};
  expect_refused(link, "is a symlink", errc::symlink_rejected);
}

TEST_F(OnlineCapture, HardLinkMemberIsRefused) {
  TarMember link{.name = "cache/again", .hardlink = "cache/ok.txt"};
  expect_refused(link, "is a hard link", errc::not_regular);
}

TEST_F(OnlineCapture, CharacterDeviceMemberIsRefused) {
  TarMember dev{.name = "cache/null", .type = AE_IFCHR, .rdev_major = 1, .rdev_minor = 3};
  expect_refused(dev, "is a character device", errc::not_regular);
}

TEST_F(OnlineCapture, BlockDeviceMemberIsRefused) {
  TarMember dev{.name = "cache/sda", .type = AE_IFBLK, .rdev_major = 8, .rdev_minor = 0};
  expect_refused(dev, "is a block device", errc::not_regular);
}

TEST_F(OnlineCapture, FifoMemberIsRefused) {
  expect_refused(TarMember{.name = "cache/pipe", .type = AE_IFIFO}, "is a FIFO", errc::not_regular);
}

TEST_F(OnlineCapture, TruncatedStreamFailsAndRemovesTheArchive) {
  auto src = source("/tmp/generated.txt", {tar_file("generated.txt", binary_bytes(200 * 1024))});
  fs::resize_file(src.stream, 100 * 1024);
  auto r = build({src});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::corrupt_archive)) << r.error().message;
  EXPECT_TRUE(has_text(r.error(), "/tmp/generated.txt")) << r.error().message;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(OnlineCapture, StreamThatIsNotATarFails) {
  fs::path stream = tmp / "garbage.tar";
  write_file(stream, std::string(4096, 'x'));
  auto r = build({{"/tmp/generated.txt", stream, ""}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::corrupt_archive)) << r.error().message;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(OnlineCapture, EmptyExportFails) {
  auto r = build({source("/tmp/generated.txt", {})});
  ASSERT_FALSE(r);
  EXPECT_TRUE(has_text(r.error(), "has no members")) << r.error().message;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(OnlineCapture, CancelledBuildStopsAndRemovesTheArchive) {
  std::atomic<bool> cancel{true};
  auto r = build({source("/tmp/generated.txt", {tar_file("generated.txt", "data")})}, &cancel);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::cancelled));
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(OnlineCapture, RootOrUnnormalisedSourceIsRefusedBeforeWriting) {
  for (std::string path : {"/", "/tmp//generated.txt", "/r1en_system/volume-sync", "tmp/x"}) {
    auto r = build({source(path, {tar_file("x", "data")})});
    ASSERT_FALSE(r) << path;
    EXPECT_EQ(r.error().code, make_error_code(errc::path_rejected)) << path;
    EXPECT_FALSE(fs::exists(out)) << path;
  }
}

TEST_F(OnlineCapture, ExistingOutputIsNeitherOverwrittenNorRemoved) {
  write_file(out, "someone else's");
  auto r = build({source("/tmp/generated.txt", {tar_file("generated.txt", "data")})});
  ASSERT_FALSE(r);
  EXPECT_EQ(read_file(out), "someone else's");
}

}  // namespace
}  // namespace carsync::test
