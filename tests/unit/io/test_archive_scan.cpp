#include "io/archive_scan.hpp"
#include "io/secure_fs.hpp"

#include "support/temp_dir.hpp"
#include "support/tree_snapshot.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::snapshot_tree;
using test::TempDir;
using test::write_file;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::int64_t some_mtime = 1700000000;

// Writes a tar archive with libarchive's writer API directly, so a test can emit headers a
// well-behaved provider never would (links, devices, '..' names, conflicting types).
class TarBuilder {
 public:
  enum class Filter { gzip, zstd, none };

  explicit TarBuilder(fs::path file, Filter filter = Filter::gzip) : file_(std::move(file)), a_(archive_write_new(), archive_write_free) {
    check(archive_write_set_format_pax(a_.get()));
    if (filter == Filter::gzip) check(archive_write_add_filter_gzip(a_.get()));
    if (filter == Filter::zstd) check(archive_write_add_filter_zstd(a_.get()));
    fs::create_directories(file_.parent_path());
    check(archive_write_open_filename(a_.get(), file_.c_str()));
  }

  TarBuilder& dir(const std::string& name, unsigned perm = 0755) {
    return member(name, AE_IFDIR, perm, 0);
  }
  TarBuilder& file(const std::string& name, std::string_view content, unsigned perm = 0644,
                   std::int64_t mtime = some_mtime, long mtime_nsec = 0) {
    member(name, AE_IFREG, perm, static_cast<std::int64_t>(content.size()),
           [&](archive_entry* e) { archive_entry_set_mtime(e, mtime, mtime_nsec); });
    write(content);
    return *this;
  }
  // A file of `n` zero bytes, streamed in chunks.
  TarBuilder& zeros(const std::string& name, std::uint64_t n) {
    member(name, AE_IFREG, 0644, static_cast<std::int64_t>(n));
    const std::string chunk(1 << 20, '\0');
    for (std::uint64_t left = n; left > 0;) {
      const auto part = std::min<std::uint64_t>(left, chunk.size());
      write(std::string_view(chunk).substr(0, part));
      left -= part;
    }
    return *this;
  }
  TarBuilder& symlink(const std::string& name, const std::string& target) {
    return member(name, AE_IFLNK, 0777, 0, [&](archive_entry* e) { archive_entry_copy_symlink(e, target.c_str()); });
  }
  TarBuilder& hardlink(const std::string& name, const std::string& target) {
    return member(name, AE_IFREG, 0644, 0, [&](archive_entry* e) { archive_entry_copy_hardlink(e, target.c_str()); });
  }
  TarBuilder& special(const std::string& name, unsigned type) {
    return member(name, type, 0666, 0, [](archive_entry* e) { archive_entry_set_rdev(e, makedev(1, 3)); });
  }

  fs::path finish() {
    check(archive_write_close(a_.get()));
    return file_;
  }

 private:
  TarBuilder& member(const std::string& name, unsigned type, unsigned perm, std::int64_t size,
                     const std::function<void(archive_entry*)>& customise = {}) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
    archive_entry_copy_pathname(e.get(), name.c_str());
    archive_entry_set_filetype(e.get(), type);
    archive_entry_set_perm(e.get(), perm);
    archive_entry_set_size(e.get(), size);
    archive_entry_set_mtime(e.get(), some_mtime, 0);
    if (customise) customise(e.get());
    check(archive_write_header(a_.get(), e.get()));
    return *this;
  }
  void write(std::string_view bytes) {
    if (archive_write_data(a_.get(), bytes.data(), bytes.size()) != static_cast<la_ssize_t>(bytes.size()))
      throw std::runtime_error(archive_error_string(a_.get()));
  }
  void check(int rc) {
    if (rc != ARCHIVE_OK) throw std::runtime_error(archive_error_string(a_.get()));
  }

  fs::path file_;
  std::unique_ptr<struct archive, decltype(&archive_write_free)> a_;
};

// `bytes` as one gzip stream, no tar framing of its own (libarchive's "raw" format).
void write_gzip(const fs::path& file, std::string_view bytes) {
  std::unique_ptr<struct archive, decltype(&archive_write_free)> a(archive_write_new(), archive_write_free);
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
  archive_entry_set_filetype(e.get(), AE_IFREG);
  fs::create_directories(file.parent_path());
  if (archive_write_set_format_raw(a.get()) != ARCHIVE_OK || archive_write_add_filter_gzip(a.get()) != ARCHIVE_OK ||
      archive_write_open_filename(a.get(), file.c_str()) != ARCHIVE_OK ||
      archive_write_header(a.get(), e.get()) != ARCHIVE_OK ||
      archive_write_data(a.get(), bytes.data(), bytes.size()) != static_cast<la_ssize_t>(bytes.size()) ||
      archive_write_close(a.get()) != ARCHIVE_OK)
    throw std::runtime_error(archive_error_string(a.get()));
}

// A hand-made ustar header for a regular file whose size field uses the base-256 encoding
// (what GNU tar emits beyond 8 GiB); no data follows it.
std::string ustar_header(const std::string& name, std::uint64_t size) {
  std::string h(512, '\0');
  std::copy(name.begin(), name.end(), h.begin());
  auto octal = [&](std::size_t off, std::size_t len, std::uint64_t v) {
    const std::string digits = [&] {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(len - 1), static_cast<unsigned long long>(v));
      return std::string(buf);
    }();
    std::copy(digits.begin(), digits.end(), h.begin() + static_cast<std::ptrdiff_t>(off));
  };
  octal(100, 8, 0644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  h[124] = static_cast<char>(0x80);
  for (int i = 0; i < 8; ++i) h[135 - i] = static_cast<char>((size >> (8 * i)) & 0xff);
  octal(136, 12, some_mtime);
  h[156] = '0';
  std::copy_n("ustar", 6, h.begin() + 257);
  std::copy_n("00", 2, h.begin() + 263);
  std::fill_n(h.begin() + 148, 8, ' ');
  unsigned sum = 0;
  for (const unsigned char c : h) sum += c;
  char chk[8];
  std::snprintf(chk, sizeof chk, "%06o", sum);
  std::copy_n(chk, 7, h.begin() + 148);  // six digits and a NUL, the trailing space stays
  return h;
}

std::string pseudo_random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(gen() & 0xff);
  return out;
}

std::string all_byte_values() {
  std::string out;
  for (int round = 0; round < 3; ++round)
    for (int b = 0; b < 256; ++b) out += static_cast<char>(b);
  return out;
}

// A consumer with one fixed-size volume at /app/data, the system volume, and an "outside"
// host directory that no archive may ever reach.
class ArchiveScan : public ::testing::Test {
 protected:
  ArchiveScan() {
    fs::create_directories(vol);
    fs::create_directories(staging);
    fs::create_directories(system);
    write_file(vol / "keep.txt", "existing consumer state");
    write_file(vol / "sub/nested.txt", "nested state");
    write_file(outside / "secret.txt", "host secret");
    mounts = {{vol.string(), "/app/data"}, {system.string(), "/r1en_system"}};
    use_manifest({"/app/data"});
  }

  void use_manifest(std::vector<std::string> paths) {
    ctx.mounts = mounts;
    ctx.policy = &policy;
    ctx.manifest_paths = std::move(paths);
  }

  fs::path archive_path(const std::string& name = "snapshot.tar.gz") const { return tmp / "archives" / name; }
  TarBuilder tar(TarBuilder::Filter filter = TarBuilder::Filter::gzip) const {
    return TarBuilder(archive_path(filter == TarBuilder::Filter::zstd ? "snapshot.tar.zst" : "snapshot.tar.gz"),
                      filter);
  }

  Result<ApplyPlan> scan(const fs::path& archive) {
    ctx.mounts = mounts;
    return scan_and_stage(archive, ctx, staging);
  }

  std::vector<std::string> container_paths(const ApplyPlan& plan) const {
    std::vector<std::string> out;
    for (const auto& e : plan.entries) out.push_back(e.container_path);
    return out;
  }

  const PlannedEntry& entry(const ApplyPlan& plan, std::string_view container_path) const {
    for (const auto& e : plan.entries)
      if (e.container_path == container_path) return e;
    throw std::runtime_error("no planned entry " + std::string(container_path));
  }

  std::vector<std::string> staged_names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(staging)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  // The archive must be refused with `code` and `text`, leaving the consumer volume, the
  // outside directory and the staging directory exactly as they were.
  void expect_rejected(const fs::path& archive, errc code, std::string_view text) {
    const auto volume_before = snapshot_tree(vol);
    const auto outside_before = snapshot_tree(outside);
    auto plan = scan(archive);
    ASSERT_FALSE(plan) << "accepted with " << plan->entries.size() << " entries";
    EXPECT_EQ(plan.error().code, make_error_code(code)) << plan.error().message;
    EXPECT_THAT(plan.error().message, HasSubstr(text));
    EXPECT_EQ(snapshot_tree(vol), volume_before);
    EXPECT_EQ(snapshot_tree(outside), outside_before);
    EXPECT_THAT(staged_names(), ::testing::IsEmpty());
  }

  TempDir tmp;
  const fs::path vol = tmp / "fixed_volumes/mounts/appdata";
  const fs::path system = tmp / "system";
  const fs::path outside = tmp / "outside";
  const fs::path staging = tmp / "staging";
  std::vector<VolumeMount> mounts;
  core::MountPolicy policy;
  ScanContext ctx;
};

class Hostile : public ArchiveScan {};
class Limits : public ArchiveScan {};

// ---------------------------------------------------------------------------------------
// Checklist F

TEST_F(ArchiveScan, F66_DirectoryPlanStagesExactBytes) {
  const std::string binary = all_byte_values();
  const auto archive = tar().dir("app/data/")
                           .file("app/data/blob.bin", binary, 0640, some_mtime + 5, 123456789)
                           .dir("app/data/deeper/")
                           .file("app/data/deeper/leaf.txt", "leaf")
                           .finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;

  EXPECT_THAT(container_paths(*plan),
              ElementsAre("/app/data", "/app/data/blob.bin", "/app/data/deeper", "/app/data/deeper/leaf.txt"));
  ASSERT_EQ(plan->volumes.size(), 1u);
  EXPECT_EQ(plan->volumes[0].host_root, vol.string());
  EXPECT_EQ(plan->volumes[0].bind, "/app/data");
  ASSERT_EQ(plan->mirror_scopes.size(), 1u);
  EXPECT_EQ(plan->mirror_scopes[0].volume, 0u);
  EXPECT_EQ(plan->mirror_scopes[0].rel, "");
  EXPECT_EQ(plan->staging_dir, staging);
  EXPECT_EQ(plan->total_bytes, binary.size() + 4);

  const auto& root = entry(*plan, "/app/data");
  EXPECT_TRUE(root.is_dir);
  EXPECT_EQ(root.rel, "");
  EXPECT_TRUE(root.blob.empty());

  const auto& blob = entry(*plan, "/app/data/blob.bin");
  EXPECT_FALSE(blob.is_dir);
  EXPECT_EQ(blob.rel, "blob.bin");
  EXPECT_EQ(blob.size, binary.size());
  EXPECT_EQ(blob.blob, "000001.blob");
  EXPECT_EQ(blob.mode, 0644u | 0640u);
  EXPECT_EQ(blob.mtime_sec, some_mtime + 5);
  EXPECT_EQ(blob.mtime_nsec, 123456789);
  EXPECT_EQ(read_file(staging / blob.blob), binary);

  const auto& leaf = entry(*plan, "/app/data/deeper/leaf.txt");
  EXPECT_EQ(leaf.rel, "deeper/leaf.txt");
  EXPECT_EQ(read_file(staging / leaf.blob), "leaf");
  EXPECT_THAT(staged_names(), ElementsAre("000001.blob", "000003.blob"));
}

TEST_F(ArchiveScan, F67_SingleFilePlan) {
  use_manifest({"/app/data/config.json"});
  const std::string content = pseudo_random_bytes(300 * 1024, 67);  // more than one read block
  const auto archive = tar().file("app/data/config.json", content).finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;

  EXPECT_THAT(container_paths(*plan), ElementsAre("/app/data/config.json"));
  EXPECT_EQ(plan->entries[0].rel, "config.json");
  EXPECT_EQ(read_file(staging / plan->entries[0].blob), content);
  ASSERT_EQ(plan->mirror_scopes.size(), 1u);
  EXPECT_EQ(plan->mirror_scopes[0].rel, "config.json");
}

// The provider's volume kind never shows in the archive (members are container paths); what
// matters is that the same archive lands in whichever kind of volume the consumer has.
class CrossKind : public ArchiveScan {
 protected:
  // A provider tree at `provider_root` (mounted at /app/data over there), archived the way
  // the provider does: the directory, then its contents, directories before their files.
  fs::path archive_of_provider_tree(const fs::path& provider_root) {
    write_file(provider_root / "state.bin", all_byte_values());
    write_file(provider_root / "db/nested/records.txt", "nested record");
    TarBuilder b(archive_path());
    b.dir("app/data/");
    std::vector<fs::path> paths;
    for (const auto& e : fs::recursive_directory_iterator(provider_root)) paths.push_back(e.path());
    std::sort(paths.begin(), paths.end());
    for (const auto& p : paths) {
      const std::string name = "app/data/" + p.lexically_relative(provider_root).string();
      if (fs::is_directory(p))
        b.dir(name);
      else
        b.file(name, read_file(p));
    }
    return b.finish();
  }

  void expect_lands_in(const fs::path& archive, const fs::path& consumer_root, const fs::path& provider_root) {
    fs::create_directories(consumer_root);
    mounts = {{consumer_root.string(), "/app/data"}};
    auto plan = scan(archive);
    ASSERT_TRUE(plan) << plan.error().message;
    ASSERT_EQ(plan->volumes.size(), 1u);
    EXPECT_EQ(plan->volumes[0].host_root, consumer_root.string());
    EXPECT_EQ(read_file(staging / entry(*plan, "/app/data/state.bin").blob), read_file(provider_root / "state.bin"));
    const auto& nested = entry(*plan, "/app/data/db/nested/records.txt");
    EXPECT_EQ(nested.rel, "db/nested/records.txt");
    EXPECT_EQ(read_file(staging / nested.blob), "nested record");
  }

  void SetUp() override { policy.legacy_root = (tmp / "legacy_root").string() + "/"; }

  const fs::path legacy_provider = tmp / "provider/legacy_root/inst0_app_data";
  const fs::path fixed_provider = tmp / "provider/fixed_volumes/mounts/data";
  const fs::path legacy_consumer = tmp / "legacy_root/inst1_app_data";
  const fs::path fixed_consumer = tmp / "consumer/fixed_volumes/mounts/data";
};

TEST_F(CrossKind, F72_LegacyToLegacy) {
  expect_lands_in(archive_of_provider_tree(legacy_provider), legacy_consumer, legacy_provider);
}

TEST_F(CrossKind, F73_LegacyToFixedSize) {
  expect_lands_in(archive_of_provider_tree(legacy_provider), fixed_consumer, legacy_provider);
}

TEST_F(CrossKind, F74_FixedSizeToLegacy) {
  expect_lands_in(archive_of_provider_tree(fixed_provider), legacy_consumer, fixed_provider);
}

TEST_F(CrossKind, LegacyRootIsInjectedNotHardCoded) {
  // Without the injected root the same consumer directory is not volume-backed (rule 3).
  policy.legacy_root = "/edge_node/_local_cache/_data/container_volumes/";
  fs::create_directories(legacy_consumer);
  mounts = {{legacy_consumer.string(), "/app/data"}};
  expect_rejected(archive_of_provider_tree(legacy_provider), errc::path_rejected, "non-volume-backed mount");
}

TEST_F(ArchiveScan, F75_MemberUnderUnmappedPathStagesNothing) {
  use_manifest({"/app/data", "/opt/unmapped"});
  const auto archive = tar().file("app/data/ok.txt", "staged first").file("opt/unmapped/x", "x").finish();
  expect_rejected(archive, errc::path_rejected, "no mounted volume covers /opt/unmapped/x");
}

TEST_F(ArchiveScan, F76_MemberOutsideManifestIsRejected) {
  mounts.push_back({(tmp / "fixed_volumes/mounts/other").string(), "/app/other"});
  fs::create_directories(tmp / "fixed_volumes/mounts/other");
  const auto archive = tar().file("app/data/ok.txt", "fine").file("app/other/x", "x").finish();
  expect_rejected(archive, errc::path_rejected, "tar member outside manifest archive_paths: /app/other/x");
}

TEST_F(ArchiveScan, F77_SymlinkMemberSkippedNeighbourPlanned) {
  const auto volume_before = snapshot_tree(vol);
  const auto archive = tar().symlink("app/data/link", "/etc/passwd").file("app/data/real.txt", "real").finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_THAT(container_paths(*plan), ElementsAre("/app/data/real.txt"));
  EXPECT_EQ(plan->entries[0].blob, "000001.blob");  // the index counts the skipped member
  EXPECT_THAT(staged_names(), ElementsAre("000001.blob"));
  EXPECT_EQ(snapshot_tree(vol), volume_before);
  EXPECT_FALSE(fs::exists(fs::symlink_status(vol / "link")));
}

TEST_F(ArchiveScan, F78_SymlinkedDirectoryPointingOutsideIsRejected) {
  fs::create_directory_symlink(outside, vol / "escape");
  const auto archive = tar().file("app/data/ok.txt", "fine").file("app/data/escape/planted.txt", "x").finish();
  expect_rejected(archive, errc::escapes_root,
                  "tar member target escapes volume root: /app/data/escape/planted.txt");
  EXPECT_FALSE(fs::exists(outside / "planted.txt"));
}

TEST_F(ArchiveScan, F79_SymlinkFilePointingOutsideIsRejected) {
  fs::create_symlink(outside / "secret.txt", vol / "secret_link");
  const auto archive = tar().file("app/data/secret_link", "overwritten?").finish();
  expect_rejected(archive, errc::escapes_root, "tar member target escapes volume root: /app/data/secret_link");
  EXPECT_EQ(fs::read_symlink(vol / "secret_link"), outside / "secret.txt");
  EXPECT_EQ(read_file(outside / "secret.txt"), "host secret");
}

TEST_F(ArchiveScan, F80_SpecialModeBitsAreStripped) {
  const auto archive = tar().dir("app/data/sticky/", 07777).file("app/data/sticky/tool", "#!/bin/sh\n", 06755).finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(entry(*plan, "/app/data/sticky").mode, 0777u);
  EXPECT_EQ(entry(*plan, "/app/data/sticky/tool").mode, 0755u);
}

// ---------------------------------------------------------------------------------------
// Other accepted shapes

TEST_F(ArchiveScan, ZstdArchiveIsAccepted) {
  const auto archive = tar(TarBuilder::Filter::zstd).dir("app/data/").file("app/data/z.txt", "zstd content").finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(read_file(staging / entry(*plan, "/app/data/z.txt").blob), "zstd content");
}

TEST_F(ArchiveScan, NamesWithOrWithoutLeadingAndTrailingSlash) {
  const auto archive = tar().dir("/app/data/a/").dir("app/data/b").file("/app/data/a/f", "f").finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_THAT(container_paths(*plan), ElementsAre("/app/data/a", "/app/data/b", "/app/data/a/f"));
}

TEST_F(ArchiveScan, ExistingSymlinkInsideVolumeMayBeReplaced) {
  fs::create_symlink("keep.txt", vol / "inner_link");
  const auto archive = tar().file("app/data/inner_link", "replacement").finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(entry(*plan, "/app/data/inner_link").rel, "inner_link");
  EXPECT_EQ(read_file(vol / "keep.txt"), "existing consumer state");  // never written through
}

TEST_F(ArchiveScan, MemberBeyondPathMaxIsPlannedAndADeepInnerLinkMayBeReplaced) {
  std::string deep;  // 25 nested 200-character names: beyond PATH_MAX
  for (int i = 0; i < 25; ++i) deep += (deep.empty() ? "" : "/") + std::string(199, 's') + static_cast<char>('a' + i);
  // Half the path exists in the consumer volume, ending in a link that stays inside it.
  const auto half = deep.substr(0, deep.find('/', 2600));
  auto root = open_root_dir(vol);
  ASSERT_TRUE(root);
  auto dir = mkdirs_beneath(root->get(), deep, 0755);
  ASSERT_TRUE(dir) << dir.error().message;
  ASSERT_EQ(::symlinkat("../../../../keep.txt", dir->get(), "link"), 0);  // resolves below `deep`'s 21st name
  const auto archive = tar().file("app/data/" + deep + "/f.txt", "deep").file("app/data/" + deep + "/link", "x")
                           .file("app/data/" + half + "/new/g.txt", "g").finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(entry(*plan, "/app/data/" + deep + "/f.txt").rel, deep + "/f.txt");
  EXPECT_EQ(read_file(staging / entry(*plan, "/app/data/" + deep + "/f.txt").blob), "deep");
  EXPECT_EQ(entry(*plan, "/app/data/" + half + "/new/g.txt").rel, half + "/new/g.txt");
}

TEST_F(ArchiveScan, NestedMountWinsAndVolumesAreDeduplicated) {
  const fs::path cache = tmp / "fixed_volumes/mounts/cache";
  fs::create_directories(cache);
  mounts.push_back({cache.string(), "/app/data/cache"});
  const auto archive = tar().file("app/data/a", "a").file("app/data/cache/b", "b").file("app/data/c", "c").finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  ASSERT_EQ(plan->volumes.size(), 2u);
  EXPECT_EQ(plan->volumes[entry(*plan, "/app/data/a").volume].host_root, vol.string());
  EXPECT_EQ(entry(*plan, "/app/data/c").volume, entry(*plan, "/app/data/a").volume);
  const auto& b = entry(*plan, "/app/data/cache/b");
  EXPECT_EQ(plan->volumes[b.volume].host_root, cache.string());
  EXPECT_EQ(b.rel, "b");
}

TEST_F(ArchiveScan, CancelledScanStagesNothing) {
  const auto archive = tar().file("app/data/a", "a").finish();
  const std::atomic<bool> cancel{true};
  auto plan = scan_and_stage(archive, ctx, staging, &cancel);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code, make_error_code(errc::cancelled));
  EXPECT_THAT(staged_names(), ::testing::IsEmpty());
}

// ---------------------------------------------------------------------------------------
// Hostile archives: each is refused and changes nothing anywhere.

TEST_F(Hostile, DotDotMember) {
  const auto archive = tar().file("app/data/ok.txt", "fine").file("app/data/../../../outside/secret.txt", "x").finish();
  expect_rejected(archive, errc::path_rejected, "tar member name contains '..'");
}

TEST_F(Hostile, NameLongerThanTheFilesystemAllows) {
  const auto archive = tar().file("app/data/ok.txt", "fine").file("app/data/d/" + std::string(NAME_MAX + 1, 'n'), "x").finish();
  expect_rejected(archive, errc::path_rejected, "a name of 256 bytes (at most 255)");
}

TEST_F(Hostile, AbsoluteOutsideName) {
  const auto archive = tar().file("app/data/ok.txt", "fine").file("/etc/passwd", "root::0:0::/:/bin/sh\n").finish();
  expect_rejected(archive, errc::path_rejected, "tar member outside manifest archive_paths: /etc/passwd");
}

TEST_F(Hostile, OutsideManifest) {
  // A sibling of the declared directory that merely shares its prefix.
  const auto archive = tar().file("app/data/ok.txt", "fine").file("app/database/x", "x").finish();
  expect_rejected(archive, errc::path_rejected, "tar member outside manifest archive_paths: /app/database/x");
}

TEST_F(Hostile, UnderSystemVolume) {
  use_manifest({"/app/data", "/r1en_system/volume-sync"});
  const auto archive = tar().file("app/data/ok.txt", "fine").file("r1en_system/volume-sync/request.json", "{}").finish();
  expect_rejected(archive, errc::path_rejected, "anti-recursion");
  EXPECT_TRUE(fs::is_empty(system));
}

TEST_F(Hostile, OutsideAnyVolume) {
  // Covered by a bind mount, but of a host directory that is not a volume (a FILE_VOLUMES
  // style or arbitrary host path).
  const fs::path host_etc = tmp / "host_etc";
  fs::create_directories(host_etc);
  mounts.push_back({host_etc.string(), "/etc"});
  use_manifest({"/app/data", "/etc"});
  const auto archive = tar().file("app/data/ok.txt", "fine").file("etc/passwd", "x").finish();
  expect_rejected(archive, errc::path_rejected, "non-volume-backed mount");
  EXPECT_TRUE(fs::is_empty(host_etc));
}

TEST_F(Hostile, SymlinkMemberSkipped) {
  // The link is skipped, so the file "through" it is a plain file beside it, not a write
  // into the link's target.
  const auto archive = tar().symlink("app/data/out", outside.string()).file("app/data/out2/x", "x").finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_THAT(container_paths(*plan), ElementsAre("/app/data/out2/x"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(vol / "out")));
}

TEST_F(Hostile, HardlinkMemberSkipped) {
  const auto archive = tar().hardlink("app/data/passwd", "/etc/passwd").file("app/data/real.txt", "real").finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_THAT(container_paths(*plan), ElementsAre("/app/data/real.txt"));
  EXPECT_THAT(staged_names(), ElementsAre("000001.blob"));
}

TEST_F(Hostile, CharDevice) {
  const auto archive = tar().file("app/data/ok.txt", "fine").special("app/data/null", AE_IFCHR).finish();
  expect_rejected(archive, errc::not_regular, "tar member is a device or FIFO: /app/data/null");
}

TEST_F(Hostile, BlockDevice) {
  const auto archive = tar().file("app/data/ok.txt", "fine").special("app/data/sda", AE_IFBLK).finish();
  expect_rejected(archive, errc::not_regular, "tar member is a device or FIFO: /app/data/sda");
}

TEST_F(Hostile, Fifo) {
  const auto archive = tar().file("app/data/ok.txt", "fine").special("app/data/pipe", AE_IFIFO).finish();
  expect_rejected(archive, errc::not_regular, "tar member is a device or FIFO: /app/data/pipe");
}

TEST_F(Hostile, SetuidStripped) {
  const auto volume_before = snapshot_tree(vol);
  const auto archive = tar().dir("app/data/bin/", 03777).file("app/data/bin/su", "\x7f" "ELF", 04755).finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  for (const auto& e : plan->entries) EXPECT_EQ(e.mode & 07000u, 0u) << e.container_path;
  EXPECT_EQ(entry(*plan, "/app/data/bin/su").mode, 0755u);
  EXPECT_EQ(snapshot_tree(vol), volume_before);
}

TEST_F(Hostile, FileThenDirConflict) {
  const auto archive = tar().file("app/data/x", "file").dir("app/data/x/").finish();
  expect_rejected(archive, errc::path_rejected, "tar member type conflict: /app/data/x");
}

TEST_F(Hostile, DirThenFileConflict) {
  const auto archive = tar().dir("app/data/x/").file("app/data/x", "file").finish();
  expect_rejected(archive, errc::path_rejected, "tar member type conflict: /app/data/x");
}

TEST_F(Hostile, FileBelowFile) {
  const auto archive = tar().file("app/data/x", "file").file("app/data/x/y", "below a file").finish();
  expect_rejected(archive, errc::path_rejected, "tar member type conflict: /app/data/x/y");
}

TEST_F(Hostile, FileWhereEarlierMemberImpliedDir) {
  const auto archive = tar().file("app/data/x/y", "inside").file("app/data/x", "file").finish();
  expect_rejected(archive, errc::path_rejected, "tar member type conflict: /app/data/x");
}

TEST_F(Hostile, DeclaredSizeBeyondCap) {
  // A 1 KiB download claiming a 1 TiB member: refused from the header, before any data.
  const std::string header = ustar_header("app/data/huge.bin", std::uint64_t{1} << 40);
  write_gzip(archive_path(), header);
  expect_rejected(archive_path(), errc::limit_exceeded, "per-member limit");
}

TEST_F(Hostile, ExpansionRatioBeyondCap) {
  ctx.limits.max_expansion_ratio = 100;
  const auto archive = tar().file("app/data/ok.txt", "fine").zeros("app/data/zeros.bin", 50u << 20).finish();
  ASSERT_LT(fs::file_size(archive), (50u << 20) / 100);
  expect_rejected(archive, errc::limit_exceeded, "expands beyond 100x");
}

TEST_F(Hostile, TruncatedGzip) {
  const auto archive = tar().file("app/data/noise.bin", pseudo_random_bytes(512 * 1024, 1)).finish();
  fs::resize_file(archive, fs::file_size(archive) / 2);
  expect_rejected(archive, errc::corrupt_archive, "corrupt archive: truncated gzip input");
}

TEST_F(Hostile, CorruptZstd) {
  std::string text;
  for (int i = 0; i < 50000; ++i) text += "line " + std::to_string(i) + " of compressible text\n";
  const auto archive = tar(TarBuilder::Filter::zstd).file("app/data/ok.txt", "fine").file("app/data/text.txt", text).finish();
  const std::string good = read_file(archive);
  ASSERT_GT(good.size(), 1000u);
  // Garbled right after the frame magic (the frame header), then only in the second half
  // (compressed blocks, met while reading member data).
  for (const std::size_t from : {std::size_t{4}, good.size() / 2}) {
    SCOPED_TRACE(from);
    std::string bad = good;
    std::fill(bad.begin() + static_cast<std::ptrdiff_t>(from), bad.end(), '\xa5');
    write_file(archive, bad);
    expect_rejected(archive, errc::corrupt_archive, "corrupt archive: Zstd decompression failed");
  }
}

TEST_F(Hostile, NotTar) {
  const std::string zip_header = std::string("PK\x03\x04\x14\x00\x00\x00\x08\x00", 10) + std::string(200, '\x01');
  for (const auto& [name, bytes] : {std::pair{"random.bin", pseudo_random_bytes(4096, 7)},
                                    std::pair{"plain.zip", zip_header}}) {
    SCOPED_TRACE(name);
    write_file(archive_path(name), bytes);
    expect_rejected(archive_path(name), errc::corrupt_archive, "not a tar archive");
  }
  // Proper gzip around something that is not tar.
  write_gzip(archive_path("zip.gz"), zip_header);
  expect_rejected(archive_path("zip.gz"), errc::corrupt_archive, "not a tar archive");
}

TEST_F(Hostile, UncompressedTar) {
  const auto archive = TarBuilder(archive_path("plain.tar"), TarBuilder::Filter::none).file("app/data/x", "x").finish();
  expect_rejected(archive, errc::corrupt_archive, "not a tar archive compressed with gzip or zstd");
}

TEST_F(Hostile, ExistingDirWhereFile) {
  const auto archive = tar().file("app/data/ok.txt", "fine").file("app/data/sub", "replaces a directory?").finish();
  expect_rejected(archive, errc::path_rejected, "cannot replace directory with file: /app/data/sub");
}

TEST_F(Hostile, ExistingFileWhereDir) {
  const auto archive = tar().dir("app/data/keep.txt/").finish();
  expect_rejected(archive, errc::path_rejected, "cannot replace file with directory: /app/data/keep.txt");
}

TEST_F(Hostile, DirectoryOverExistingFile) {
  const auto archive = tar().file("app/data/keep.txt/inner", "x").finish();
  expect_rejected(archive, errc::path_rejected, "cannot create directory over file: /app/data/keep.txt");
}

TEST_F(Hostile, FileOverVolumeRoot) {
  const auto archive = tar().file("app/data", "not a directory").finish();
  expect_rejected(archive, errc::path_rejected, "cannot replace directory with file: /app/data");
}

TEST_F(Hostile, SymlinkedParentOutside) {
  // A relative link deep inside the volume that climbs out of it.
  fs::create_directory_symlink("../../../../outside", vol / "sub/up");
  ASSERT_TRUE(fs::exists(vol / "sub/up/secret.txt"));
  const auto archive = tar().file("app/data/ok.txt", "fine").dir("app/data/sub/up/").file("app/data/sub/up/secret.txt", "owned").finish();
  expect_rejected(archive, errc::escapes_root, "escapes volume root");
  EXPECT_EQ(read_file(outside / "secret.txt"), "host secret");
}

TEST_F(Hostile, SymlinkedParentInsideIsStillRefused) {
  // Even a link that stays inside is never walked through: the commit could not follow it
  // safely, and a later swap of its target would redirect the write.
  fs::create_directory_symlink("sub", vol / "alias");
  const auto archive = tar().file("app/data/alias/nested.txt", "x").finish();
  expect_rejected(archive, errc::escapes_root, "tar member target escapes volume root: /app/data/alias/nested.txt");
}

// ---------------------------------------------------------------------------------------
// Other caps

TEST_F(Limits, TotalBytesBeyondCap) {
  ctx.limits.max_total_bytes = 1000;
  const auto archive = tar().file("app/data/a", std::string(600, 'a')).file("app/data/b", std::string(600, 'b')).finish();
  expect_rejected(archive, errc::limit_exceeded, "exceeds the limit of 1000 bytes at tar member /app/data/b");
}

TEST_F(Limits, MemberBytesBeyondCap) {
  ctx.limits.max_member_bytes = 100;
  const auto archive = tar().file("app/data/a", std::string(101, 'a')).finish();
  expect_rejected(archive, errc::limit_exceeded, "tar member /app/data/a declares 101 bytes");
}

TEST_F(Limits, TooManyMembers) {
  ctx.limits.max_members = 3;
  const auto archive = tar().dir("app/data/").file("app/data/a", "a").symlink("app/data/l", "a").file("app/data/b", "b").finish();
  expect_rejected(archive, errc::limit_exceeded, "more than 3 members");
}

TEST_F(Limits, SmallCompressibleArchiveIsNotJudgedByRatio) {
  ctx.limits.max_expansion_ratio = 2;
  const auto archive = tar().zeros("app/data/zeros.bin", 512 * 1024).finish();
  auto plan = scan(archive);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(fs::file_size(staging / plan->entries[0].blob), 512u * 1024);
}

}  // namespace
}  // namespace carsync::io
