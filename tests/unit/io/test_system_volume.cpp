// The system volume image (spec §2.1), for real: loop devices, mkfs.ext4 and mount(2).
// Needs root and /dev/loop-control; skips, saying which, without them.
#include "io/system_volume.hpp"

#include "support/temp_dir.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using carsync::test::read_file;
using carsync::test::write_file;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The observations below read the kernel's own reports (mountinfo, sysfs), independently of
// the code under test. Test paths contain no characters mountinfo would escape.

struct MountLine {
  std::string mount_point;
  std::string fstype;
  std::string source;
};

std::vector<MountLine> all_mounts() {
  std::vector<MountLine> out;
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> f;
    for (std::size_t start = 0; start <= line.size();) {
      const std::size_t end = std::min(line.find(' ', start), line.size());
      f.push_back(line.substr(start, end - start));
      start = end + 1;
    }
    if (f.size() < 10) continue;  // not a mountinfo line
    const auto dash = std::find(f.begin() + 6, f.end(), "-");
    if (f.end() - dash >= 3) out.push_back({f[4], dash[1], dash[2]});
  }
  return out;
}

std::vector<MountLine> mounts_at(const fs::path& dir) {
  std::vector<MountLine> out;
  for (auto& m : all_mounts())
    if (m.mount_point == dir.string()) out.push_back(m);
  return out;
}

// Loop devices whose backing file starts with `prefix` (what `losetup -j` reads).
std::vector<std::string> loops_backed_by(const std::string& prefix, bool exact) {
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator("/sys/block")) {
    const std::string name = entry.path().filename();
    std::ifstream in(entry.path() / "loop" / "backing_file");
    std::string backing;
    if (!name.starts_with("loop") || !std::getline(in, backing)) continue;
    if (exact ? backing == prefix : backing.starts_with(prefix)) out.push_back("/dev/" + name);
  }
  return out;
}

std::vector<std::string> loops_of(const fs::path& image) { return loops_backed_by(image.string(), true); }

// The kernel detaches a loop device at its last close; another opener at that moment (udev
// probing it, a parallel test scanning loop devices) moves the detach to its own close. So
// "detached" is awaited for a bounded time, checked every few milliseconds.
bool detached(const fs::path& image) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!loops_of(image).empty()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::string sysfs_attribute(const std::string& loop_device, const char* name) {
  std::ifstream in("/sys/block/" + fs::path(loop_device).filename().string() + "/loop/" + name);
  std::string value;
  std::getline(in, value);
  return value;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Undoes every mount under `root` and detaches every loop device backed by a file under it,
// whatever a test (or the code under test) left behind, pass or fail.
struct Sweeper {
  fs::path root;
  ~Sweeper() {
    if (root.empty()) return;
    const std::string prefix = root.string() + "/";
    auto mounts = all_mounts();
    // Newest first: a mount stacked over another (or below it in the tree) goes before it.
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it)
      if (it->mount_point.starts_with(prefix)) ::umount2(it->mount_point.c_str(), MNT_DETACH);
    for (const auto& device : loops_backed_by(prefix, false)) {
      const int fd = ::open(device.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ::ioctl(fd, LOOP_CLR_FD, 0);
      ::close(fd);
    }
  }
};

class SystemVolume : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: loop devices and mount(2)";
    if (::access("/dev/loop-control", F_OK) != 0)
      GTEST_SKIP() << "/dev/loop-control is missing: no loop device support";
    root_ = fs::canonical(dir_.path());
    sweeper_.root = root_;
    cfg_ = SystemVolumeImage{.image_dir = root_ / "images", .size_bytes = 10 * 1024 * 1024};
    mount_point_ = root_ / "mounts" / "r1en_system";
  }

  Result<ImageVolume> provision() { return provision_image_volume(cfg_, "app-a", mount_point_); }
  Result<void> release() { return release_image_volume(cfg_, "app-a", mount_point_); }
  fs::path image() const { return root_ / "images" / "app-a.img"; }

  test::TempDir dir_;
  Sweeper sweeper_;  // declared after dir_: runs before the directory is removed
  fs::path root_;
  SystemVolumeImage cfg_;
  fs::path mount_point_;
};

void expect_unavailable(const Result<ImageVolume>& r, std::string_view fragment) {
  ASSERT_FALSE(r) << "provisioned " << r->image;
  EXPECT_EQ(r.error().code, make_error_code(errc::system_volume_unavailable)) << r.error().message;
  EXPECT_THAT(r.error().message, HasSubstr(std::string(fragment)));
}

TEST_F(SystemVolume, FreshProvisionMountsANewTenMiBExt4ImageWithoutLostFound) {
  const auto vol = provision();
  ASSERT_TRUE(vol) << vol.error().message;
  EXPECT_EQ(vol->image, image());
  EXPECT_EQ(vol->mount_point, mount_point_);
  EXPECT_TRUE(vol->image_created);
  EXPECT_TRUE(vol->mounted_now);
  EXPECT_EQ(fs::file_size(image()), 10u * 1024 * 1024);
  EXPECT_THAT(names_in(root_ / "images"), ElementsAre("app-a.img")) << "no temporary left behind";

  const auto at = mounts_at(mount_point_);
  ASSERT_EQ(at.size(), 1u);
  EXPECT_EQ(at[0].fstype, "ext4");
  EXPECT_EQ(at[0].source, vol->loop_device);
  struct statfs fs_info {};
  ASSERT_EQ(::statfs(mount_point_.c_str(), &fs_info), 0);
  EXPECT_EQ(fs_info.f_type, EXT4_SUPER_MAGIC);
  // mkfs -m 0: the superblock (at byte 1024) reserves no blocks for root (s_r_blocks_count,
  // offset 8 and 0x154). statfs cannot tell: ext4 also holds back clusters for its metadata.
  const std::string bytes = read_file(image()).substr(1024, 1024);
  const auto le32 = [&](std::size_t at) {
    return std::uint32_t(std::uint8_t(bytes[at])) | std::uint32_t(std::uint8_t(bytes[at + 1])) << 8 |
           std::uint32_t(std::uint8_t(bytes[at + 2])) << 16 | std::uint32_t(std::uint8_t(bytes[at + 3])) << 24;
  };
  ASSERT_EQ(le32(0x38) & 0xffff, EXT4_SUPER_MAGIC);
  EXPECT_GT(le32(0x4), 0u) << "blocks count";
  EXPECT_EQ(le32(0x8), 0u) << "reserved blocks count (low)";
  EXPECT_EQ(le32(0x154), 0u) << "reserved blocks count (high)";

  EXPECT_FALSE(fs::exists(mount_point_ / "lost+found"));
  EXPECT_TRUE(fs::is_empty(mount_point_));
  struct stat root_stat {};
  ASSERT_EQ(::stat(mount_point_.c_str(), &root_stat), 0);
  EXPECT_EQ(root_stat.st_uid, 0u);
  EXPECT_EQ(root_stat.st_gid, 0u);

  EXPECT_THAT(loops_of(image()), ElementsAre(vol->loop_device));
  EXPECT_EQ(sysfs_attribute(vol->loop_device, "autoclear"), "0") << "the attachment must outlive our fds";
}

TEST_F(SystemVolume, ImageSizeFollowsTheConfiguration) {
  cfg_.size_bytes = 1024 * 1024;  // the smallest size the configuration allows
  const auto vol = provision();
  ASSERT_TRUE(vol) << vol.error().message;
  EXPECT_EQ(fs::file_size(image()), 1024u * 1024);
  ASSERT_EQ(mounts_at(mount_point_).size(), 1u);
  EXPECT_EQ(mounts_at(mount_point_)[0].fstype, "ext4");
}

TEST_F(SystemVolume, ProvisioningTwiceReusesTheLoopDeviceAndTheMount) {
  const auto first = provision();
  ASSERT_TRUE(first) << first.error().message;
  const auto second = provision();
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_FALSE(second->image_created);
  EXPECT_FALSE(second->mounted_now);
  EXPECT_EQ(second->loop_device, first->loop_device);
  EXPECT_THAT(loops_of(image()), ElementsAre(first->loop_device)) << "no second loop device";
  EXPECT_EQ(mounts_at(mount_point_).size(), 1u) << "no second mount stacked on the first";
}

TEST_F(SystemVolume, ReusesTheLoopDeviceStillAttachedAfterAnUnmount) {
  const auto first = provision();
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_EQ(::umount2(mount_point_.c_str(), 0), 0);

  const auto second = provision();
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_FALSE(second->image_created);
  EXPECT_TRUE(second->mounted_now);
  EXPECT_EQ(second->loop_device, first->loop_device);
  EXPECT_THAT(loops_of(image()), ElementsAre(first->loop_device));
  ASSERT_EQ(mounts_at(mount_point_).size(), 1u);
  EXPECT_EQ(mounts_at(mount_point_)[0].source, first->loop_device);
}

TEST_F(SystemVolume, ReleaseUnmountsAndDetachesAndKeepsTheImage) {
  const auto vol = provision();
  ASSERT_TRUE(vol) << vol.error().message;

  const auto released = release();
  ASSERT_TRUE(released) << released.error().message;
  EXPECT_THAT(mounts_at(mount_point_), IsEmpty());
  EXPECT_TRUE(detached(image())) << "still attached: " << ::testing::PrintToString(loops_of(image()));
  EXPECT_EQ(fs::file_size(image()), 10u * 1024 * 1024);

  // Nothing left to release, or never provisioned: success, nothing touched.
  const auto again = release();
  EXPECT_TRUE(again) << again.error().message;
  const auto never = release_image_volume(cfg_, "app-b", root_ / "mounts" / "other");
  EXPECT_TRUE(never) << never.error().message;
}

TEST_F(SystemVolume, ContentsSurviveReleaseAndProvisioningAgain) {
  const auto first = provision();
  ASSERT_TRUE(first) << first.error().message;
  write_file(mount_point_ / "volume-sync" / "response.json", R"({"ok": true})");
  ASSERT_TRUE(release());
  ASSERT_TRUE(detached(image()));
  EXPECT_FALSE(fs::exists(mount_point_ / "volume-sync")) << "the file lives in the image, not the directory below";

  const auto second = provision();
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_FALSE(second->image_created);
  EXPECT_TRUE(second->mounted_now);
  EXPECT_EQ(read_file(mount_point_ / "volume-sync" / "response.json"), R"({"ok": true})");
}

TEST_F(SystemVolume, LostFoundIsKeptInAnImageThatAlreadyExisted) {
  ASSERT_TRUE(provision());
  fs::create_directory(mount_point_ / "lost+found");  // as fsck would recreate it
  ASSERT_TRUE(release());
  ASSERT_TRUE(detached(image()));

  const auto again = provision();
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(again->mounted_now);
  EXPECT_TRUE(fs::is_directory(mount_point_ / "lost+found")) << "the mount is new but the image is not";
}

TEST_F(SystemVolume, MissingImageDirParentIsUnavailableNamingTheStep) {
  cfg_.image_dir = root_ / "missing" / "images";
  expect_unavailable(provision(),
                     "create image directory " + cfg_.image_dir.string() + ": No such file or directory (ENOENT)");
  EXPECT_THAT(mounts_at(mount_point_), IsEmpty());
  EXPECT_FALSE(fs::exists(root_ / "missing"));
}

TEST_F(SystemVolume, ReadOnlyImageLocationIsUnavailableNamingTheStep) {
  // Root writes anywhere permissions allow; a read-only filesystem it cannot write.
  const fs::path ro = root_ / "ro";
  fs::create_directory(ro);
  ASSERT_EQ(::mount("tmpfs", ro.c_str(), "tmpfs", MS_RDONLY, "size=1m"), 0) << std::strerror(errno);
  cfg_.image_dir = ro;
  expect_unavailable(provision(), "create image " + (ro / ".app-a.img.partial").string() +
                                      ": Read-only file system (EROFS)");
  EXPECT_THAT(mounts_at(mount_point_), IsEmpty());
}

TEST_F(SystemVolume, AnotherMountAtTheMountPointIsRefusedAndLeftAlone) {
  fs::create_directories(mount_point_);
  ASSERT_EQ(::mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);

  expect_unavailable(provision(), "mount point " + mount_point_.string() + " is already a mount of tmpfs (tmpfs)");
  const auto at = mounts_at(mount_point_);
  ASSERT_EQ(at.size(), 1u);
  EXPECT_EQ(at[0].fstype, "tmpfs");
  EXPECT_FALSE(fs::exists(image())) << "the image this call created is removed again";
  EXPECT_THAT(loops_backed_by(root_.string() + "/", false), IsEmpty());
}

TEST_F(SystemVolume, FailedMountDetachesTheLoopDeviceItAttached) {
  // An image that exists but holds no filesystem: the loop attaches, the mount fails.
  fs::create_directories(root_ / "images");
  write_file(image(), std::string(1024 * 1024, '\0'));

  expect_unavailable(provision(), "mount /dev/loop");
  EXPECT_THAT(mounts_at(mount_point_), IsEmpty());
  EXPECT_TRUE(detached(image())) << "still attached: " << ::testing::PrintToString(loops_of(image()));
  EXPECT_EQ(fs::file_size(image()), 1024u * 1024) << "an image this call did not create stays";
}

TEST_F(SystemVolume, ImagePathThatIsNotAFileIsRefused) {
  fs::create_directories(image());
  expect_unavailable(provision(), "open image " + image().string());
  EXPECT_THAT(mounts_at(mount_point_), IsEmpty());
}

TEST_F(SystemVolume, InstanceIdThatCannotNameAFileIsRefusedBeforeAnything) {
  for (const char* id : {"", "..", "../app", "a/b"}) {
    const auto r = provision_image_volume(cfg_, id, mount_point_);
    ASSERT_FALSE(r) << id;
    EXPECT_EQ(r.error().code, make_error_code(errc::system_volume_unavailable));
    EXPECT_THAT(r.error().message, HasSubstr("cannot name an image file"));
    EXPECT_FALSE(release_image_volume(cfg_, id, mount_point_)) << id;
  }
  EXPECT_FALSE(fs::exists(cfg_.image_dir));
  EXPECT_FALSE(fs::exists(mount_point_));
}

}  // namespace
}  // namespace carsync::io
