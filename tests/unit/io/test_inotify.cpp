#include "io/inotify.hpp"

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <array>
#include <cstring>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
using carsync::test::TempDir;
using carsync::test::write_file;

// Everything queued so far; the kernel queues events before the triggering call returns.
std::vector<std::byte> drain(int fd) {
  std::vector<std::byte> out;
  alignas(inotify_event) std::array<std::byte, 4096> buf;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n <= 0) return out;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
}

std::vector<std::byte> record(int wd, std::uint32_t mask, std::string_view name, std::uint32_t len) {
  inotify_event header{};
  header.wd = wd;
  header.mask = mask;
  header.len = len;
  std::vector<std::byte> out(sizeof header + len);
  std::memcpy(out.data(), &header, sizeof header);
  std::memcpy(out.data() + sizeof header, name.data(), name.size());
  return out;
}

TEST(Inotify, CloseWriteAndMovedToAreDecodedWithNames) {
  TempDir watched;
  TempDir staging;
  auto ino = Inotify::create();
  ASSERT_TRUE(ino) << ino.error().message;
  auto wd = ino->add_watch(watched.path(), IN_CLOSE_WRITE | IN_MOVED_TO);
  ASSERT_TRUE(wd) << wd.error().message;

  write_file(watched / "request.json", "{}");
  write_file(staging / "moved.json", "{}");
  fs::rename(staging / "moved.json", watched / "incoming.json");

  const auto events = Inotify::decode(drain(ino->fd()));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].wd, *wd);
  EXPECT_TRUE(events[0].mask & IN_CLOSE_WRITE);
  EXPECT_EQ(events[0].name, "request.json");
  EXPECT_EQ(events[1].wd, *wd);
  EXPECT_TRUE(events[1].mask & IN_MOVED_TO);
  EXPECT_EQ(events[1].name, "incoming.json");
}

TEST(Inotify, RemovedWatchStopsEvents) {
  TempDir watched;
  auto ino = Inotify::create();
  ASSERT_TRUE(ino);
  auto wd = ino->add_watch(watched.path(), IN_CLOSE_WRITE);
  ASSERT_TRUE(wd);
  ino->remove_watch(*wd);
  write_file(watched / "x", "1");
  for (const auto& e : Inotify::decode(drain(ino->fd()))) EXPECT_FALSE(e.mask & IN_CLOSE_WRITE);
}

TEST(Inotify, AddWatchRefusesSymlinkAndFile) {
  TempDir tmp;
  fs::create_directory(tmp / "real");
  fs::create_directory_symlink(tmp / "real", tmp / "link");
  write_file(tmp / "file", "x");
  auto ino = Inotify::create();
  ASSERT_TRUE(ino);
  EXPECT_FALSE(ino->add_watch(tmp / "link", IN_CLOSE_WRITE));
  EXPECT_FALSE(ino->add_watch(tmp / "file", IN_CLOSE_WRITE));
}

TEST(Inotify, DecodeDropsTruncatedTrailingRecord) {
  auto buf = record(1, IN_CLOSE_WRITE, "a.json", 16);
  const auto second = record(2, IN_MOVED_TO, "second.json", 16);
  buf.insert(buf.end(), second.begin(), second.end());

  const auto whole = Inotify::decode(buf);
  ASSERT_EQ(whole.size(), 2u);
  EXPECT_EQ(whole[1].name, "second.json");

  for (std::size_t cut : {std::size_t{1}, std::size_t{16}, second.size() - 1}) {
    const std::span<const std::byte> truncated(buf.data(), buf.size() - cut);
    const auto events = Inotify::decode(truncated);
    ASSERT_EQ(events.size(), 1u) << "cut " << cut;
    EXPECT_EQ(events[0].wd, 1);
    EXPECT_EQ(events[0].mask, std::uint32_t{IN_CLOSE_WRITE});
    EXPECT_EQ(events[0].name, "a.json");
  }
}

TEST(Inotify, DecodeEventOnWatchedDirectoryHasEmptyName) {
  const auto events = Inotify::decode(record(3, IN_DELETE_SELF, "", 0));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].wd, 3);
  EXPECT_TRUE(events[0].name.empty());
  EXPECT_TRUE(Inotify::decode({}).empty());
}

}  // namespace
}  // namespace carsync::io
