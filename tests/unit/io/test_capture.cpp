#include "io/capture.hpp"
#include "io/secure_fs.hpp"
#include "io/sha256.hpp"

#include "support/temp_dir.hpp"
#include "unit/io/archive_reader.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// A volume at <tmp>/vol bound to /app in the container.
class Capture : public ::testing::Test {
 protected:
  fs::path vol() const { return tmp_ / "vol"; }
  fs::path out() const { return tmp_ / "out.tar.gz"; }

  void SetUp() override { fs::create_directories(vol()); }

  core::ResolvedPath source(const std::string& container_path) const {
    std::string rel = container_path.substr(std::string("/app").size());
    rel.erase(0, rel.find_first_not_of('/'));
    return {container_path, vol().string(), "/app", rel};
  }

  Result<CaptureStats> build(std::vector<core::ResolvedPath> sources,
                             EngineKind engine = EngineKind::io_uring,
                             const std::atomic<bool>* cancel = nullptr) {
    auto reader = make_reader(engine, {.queue_depth = 4, .block_size = 64 * 1024});
    return build_offline_archive(sources, out(), {ArchiveFormat::tar_gz, 1}, *reader, cancel);
  }

  std::vector<test::Member> members() const {
    auto back = test::read_archive(out());
    EXPECT_TRUE(back) << back.error().message;
    return back ? back->members : std::vector<test::Member>{};
  }

  void expect_failure(const Result<CaptureStats>& r, errc code, std::initializer_list<std::string_view> parts) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, make_error_code(code)) << r.error().message;
    for (auto part : parts) EXPECT_TRUE(contains(r.error().message, part)) << r.error().message;
    EXPECT_FALSE(fs::exists(out())) << "a failed build must not leave its archive behind";
  }

  TempDir tmp_;
};

TEST_F(Capture, F68_MissingPathDoesNotExist) {
  test::write_file(vol() / "data/present", "x");
  expect_failure(build({source("/app/data/missing")}), errc::not_found,
                 {"does not exist", "/app/data/missing", (vol() / "data/missing").string()});
}

TEST_F(Capture, F68_MissingIntermediateDirectoryDoesNotExist) {
  expect_failure(build({source("/app/nowhere/deeper")}), errc::not_found, {"does not exist"});
}

TEST_F(Capture, F68_PathThroughARegularFileDoesNotExist) {
  test::write_file(vol() / "file", "x");
  expect_failure(build({source("/app/file/below")}), errc::not_found, {"does not exist"});
}

TEST_F(Capture, F70_PathTraversingSymlinkedDirectoryRejected) {
  test::write_file(vol() / "real/x.txt", "secret");
  fs::create_directory_symlink("real", vol() / "link");
  expect_failure(build({source("/app/link/x.txt")}), errc::symlink_rejected,
                 {"symlink", "/app/link/x.txt"});
}

TEST_F(Capture, F70_SourceThatIsASymlinkRejected) {
  test::write_file(vol() / "real/x.txt", "secret");
  fs::create_directory_symlink("real", vol() / "link");
  expect_failure(build({source("/app/link")}), errc::symlink_rejected, {"symlink"});
}

TEST_F(Capture, F71_SymlinkToFileDeepBelowRejected) {
  test::write_file(vol() / "data/a/b/file.txt", "x");
  fs::create_symlink("/etc/passwd", vol() / "data/a/b/evil");
  expect_failure(build({source("/app/data")}), errc::symlink_rejected,
                 {"symlink", "app/data/a/b/evil", (vol() / "data/a/b/evil").string()});
}

TEST_F(Capture, F71_SymlinkedDirectoryBelowRejected) {
  test::write_file(vol() / "data/a/file.txt", "x");
  fs::create_directory_symlink(vol() / "data/a", vol() / "data/loop");
  expect_failure(build({source("/app/data")}), errc::symlink_rejected, {"symlink"});
}

TEST_F(Capture, FifoBelowIsNotARegularFile) {
  test::write_file(vol() / "data/ok.txt", "x");
  fs::create_directories(vol() / "data/sub");
  ASSERT_EQ(::mkfifo((vol() / "data/sub/pipe").c_str(), 0600), 0);
  // The build must fail, not hang opening the FIFO.
  expect_failure(build({source("/app/data")}), errc::not_regular,
                 {"not a regular file or directory", "app/data/sub/pipe"});
}

TEST_F(Capture, FifoAsSourceIsNotARegularFile) {
  ASSERT_EQ(::mkfifo((vol() / "pipe").c_str(), 0600), 0);
  expect_failure(build({source("/app/pipe")}), errc::not_regular, {"not a regular file"});
}

TEST_F(Capture, SingleFileIsOneMemberNamedByContainerPath) {
  test::write_file(vol() / "data/foo.bin", std::string("\0\1\2binary\xff", 10));
  ASSERT_EQ(::chmod((vol() / "data/foo.bin").c_str(), 0640), 0);
  auto stats = build({source("/app/data/foo.bin")});
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->files, 1u);
  EXPECT_EQ(stats->directories, 0u);
  EXPECT_EQ(stats->content_bytes, 10u);
  EXPECT_EQ(stats->archive_size, fs::file_size(out()));
  // The digest is of the bytes on disk, computed while they were written.
  const std::string bytes = test::read_file(out());
  Sha256 h;
  h.update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  EXPECT_EQ(to_hex(stats->archive_sha256), to_hex(h.finish()));

  struct stat st {};
  ASSERT_EQ(::stat((vol() / "data/foo.bin").c_str(), &st), 0);
  const auto m = members();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].name, "app/data/foo.bin");
  EXPECT_EQ(m[0].type, AE_IFREG);
  EXPECT_EQ(m[0].perm, 0640u);
  EXPECT_EQ(m[0].uid, st.st_uid);
  EXPECT_EQ(m[0].gid, st.st_gid);
  EXPECT_EQ(m[0].mtime, st.st_mtim.tv_sec);
  EXPECT_EQ(m[0].content, std::string("\0\1\2binary\xff", 10));
}

TEST_F(Capture, TreeDeeperThanPathMaxIsCapturedWholeAndAsASource) {
  std::string deep;  // 25 nested 200-character names: beyond PATH_MAX
  for (int i = 0; i < 25; ++i) deep += (deep.empty() ? "" : "/") + std::string(199, 'c') + static_cast<char>('a' + i);
  auto root = open_root_dir(vol());
  ASSERT_TRUE(root);
  auto dir = mkdirs_beneath(root->get(), "data/" + deep, 0755);
  ASSERT_TRUE(dir) << dir.error().message;
  auto file = open_beneath(dir->get(), "leaf.txt", O_WRONLY | O_CREAT | O_EXCL, 0644);
  ASSERT_TRUE(file);
  ASSERT_TRUE(write_all(file->get(), "deep"));

  for (const std::string& source_path : {std::string("/app/data"), "/app/data/" + deep}) {
    fs::remove(out());
    auto stats = build({source(source_path)});
    ASSERT_TRUE(stats) << stats.error().message;
    EXPECT_EQ(stats->files, 1u);
    std::map<std::string, std::string> files;
    for (const auto& member : members())
      if (member.type != AE_IFDIR) files[member.name] = member.content;
    EXPECT_EQ(files, (std::map<std::string, std::string>{{"app/data/" + deep + "/leaf.txt", "deep"}}));
  }
}

TEST_F(Capture, DirectoriesComeBeforeTheirContents) {
  test::write_file(vol() / "data/top.txt", "top");
  test::write_file(vol() / "data/sub/mid.txt", "mid");
  test::write_file(vol() / "data/sub/deeper/low.bin", "low");
  test::write_file(vol() / "data/other/o.txt", "o");
  fs::create_directories(vol() / "data/empty");
  test::write_file(vol() / "unrelated.txt", "not captured");

  auto stats = build({source("/app/data")});
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->files, 4u);
  EXPECT_EQ(stats->directories, 5u);

  const auto m = members();
  ASSERT_FALSE(m.empty());
  EXPECT_EQ(m[0].name, "app/data/");
  EXPECT_EQ(m[0].type, AE_IFDIR);

  std::map<std::string, std::string> files;
  std::vector<std::string> dirs_seen;
  for (const auto& member : m) {
    const std::string name = member.name.back() == '/' ? member.name.substr(0, member.name.size() - 1) : member.name;
    const std::string parent = name.substr(0, name.rfind('/'));
    if (name != "app/data") {
      EXPECT_NE(std::find(dirs_seen.begin(), dirs_seen.end(), parent), dirs_seen.end())
          << name << " precedes its directory";
    }
    if (member.type == AE_IFDIR) {
      dirs_seen.push_back(name);
    } else {
      files[name] = member.content;
    }
  }
  EXPECT_EQ(files, (std::map<std::string, std::string>{{"app/data/top.txt", "top"},
                                                        {"app/data/sub/mid.txt", "mid"},
                                                        {"app/data/sub/deeper/low.bin", "low"},
                                                        {"app/data/other/o.txt", "o"}}));
  EXPECT_NE(std::find(dirs_seen.begin(), dirs_seen.end(), "app/data/empty"), dirs_seen.end());
}

TEST_F(Capture, VolumeRootAsSourceIsNamedByItsContainerPath) {
  test::write_file(vol() / "x.txt", "x");
  ASSERT_TRUE(build({source("/app")}));
  const auto m = members();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].name, "app/");
  EXPECT_EQ(m[1].name, "app/x.txt");
}

TEST_F(Capture, HardLinkedFilesAreBothFullRegularMembers) {
  test::write_file(vol() / "data/a.bin", "shared inode content");
  fs::create_hard_link(vol() / "data/a.bin", vol() / "data/b.bin");
  ASSERT_TRUE(build({source("/app/data")}));
  int regular = 0;
  for (const auto& member : members()) {
    if (member.type != AE_IFREG) continue;
    ++regular;
    EXPECT_FALSE(member.hardlink.has_value()) << member.name;
    EXPECT_EQ(member.size, 20);
    EXPECT_EQ(member.content, "shared inode content") << member.name;
  }
  EXPECT_EQ(regular, 2);
}

TEST_F(Capture, SourcesAreAppendedInRequestOrder) {
  test::write_file(vol() / "one.txt", "1");
  test::write_file(vol() / "dir/two.txt", "2");
  ASSERT_TRUE(build({source("/app/one.txt"), source("/app/dir")}));
  const auto m = members();
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].name, "app/one.txt");
  EXPECT_EQ(m[1].name, "app/dir/");
  EXPECT_EQ(m[2].name, "app/dir/two.txt");
}

TEST_F(Capture, LaterSourceFailureRemovesTheWholeArchive) {
  test::write_file(vol() / "one.txt", "1");
  expect_failure(build({source("/app/one.txt"), source("/app/missing")}), errc::not_found,
                 {"does not exist"});
}

TEST_F(Capture, ExistingOutputIsNeitherOverwrittenNorRemoved) {
  test::write_file(vol() / "one.txt", "1");
  test::write_file(out(), "someone else's");
  ASSERT_FALSE(build({source("/app/one.txt")}));
  EXPECT_EQ(test::read_file(out()), "someone else's");
}

TEST_F(Capture, CancelAbandonsTheBuild) {
  test::write_file(vol() / "data/x.txt", "x");
  std::atomic<bool> cancel{true};
  expect_failure(build({source("/app/data")}, EngineKind::io_uring, &cancel), errc::cancelled, {});
}

TEST_F(Capture, BothEnginesProduceTheSameMembers) {
  std::string big(3 * 64 * 1024 + 17, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + i / 977);
  test::write_file(vol() / "data/big.bin", big);
  test::write_file(vol() / "data/s/small.txt", "small");

  ASSERT_TRUE(build({source("/app/data")}, EngineKind::io_uring));
  const auto uring = members();
  fs::remove(out());
  ASSERT_TRUE(build({source("/app/data")}, EngineKind::portable));
  const auto portable = members();

  ASSERT_EQ(uring.size(), portable.size());
  for (std::size_t i = 0; i < uring.size(); ++i) {
    EXPECT_EQ(uring[i].name, portable[i].name);
    EXPECT_EQ(uring[i].perm, portable[i].perm);
    EXPECT_EQ(uring[i].content, portable[i].content);
  }
  EXPECT_EQ(uring.size(), 4u);
}

TEST_F(Capture, LargeSparseFileIsStreamedWhole) {
  constexpr off_t size = 20 << 20;
  const auto path = vol() / "data/disk.img";
  fs::create_directories(path.parent_path());
  std::string expected(size, '\0');
  {
    unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), size), 0);
    // Data islands between holes, one straddling a read block boundary.
    for (off_t at : {off_t{0}, off_t{64 * 1024 - 5}, off_t{7 << 20}, size - 3000}) {
      std::string island(3000, '\0');
      for (std::size_t i = 0; i < island.size(); ++i) island[i] = static_cast<char>('a' + (at + i) % 26);
      ASSERT_EQ(::pwrite(fd.get(), island.data(), island.size(), at), static_cast<ssize_t>(island.size()));
      expected.replace(static_cast<std::size_t>(at), island.size(), island);
    }
  }
  auto stats = build({source("/app/data/disk.img")});
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->content_bytes, static_cast<std::uint64_t>(size));
  const auto m = members();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].size, size);
  EXPECT_EQ(std::hash<std::string>{}(m[0].content), std::hash<std::string>{}(expected));
  EXPECT_LT(stats->archive_size, static_cast<std::uint64_t>(size) / 100);  // holes compress
}

}  // namespace
}  // namespace carsync::io
