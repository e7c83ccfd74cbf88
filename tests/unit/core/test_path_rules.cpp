#include "core/path_rules.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

namespace carsync::core {
namespace {

using ::testing::HasSubstr;

const std::string system_root = "/x/fixed_volumes/mounts/r1en_system";
const std::string appdata_root = "/x/fixed_volumes/mounts/appdata";
const std::string anon_root = "/x/anon";
const std::string legacy_root = "/legacy/container_volumes/";

// The spec §11 fixture: system volume, a fixed-size volume and an anonymous host dir.
std::vector<VolumeMount> fixture_mounts() {
  return {{system_root, "/r1en_system"}, {appdata_root, "/app/data"}, {anon_root, "/app/legacy"}};
}

MountPolicy fixture_policy() {
  MountPolicy p;
  p.legacy_root = legacy_root;
  return p;
}

Result<ResolvedPath> resolve(std::string_view path, const std::vector<VolumeMount>& mounts = fixture_mounts(),
                             const MountPolicy& policy = fixture_policy()) {
  return resolve_mount(path, mounts, policy);
}

void expect_rejected(const Result<ResolvedPath>& r, std::string_view fragment) {
  ASSERT_FALSE(r) << "resolved to " << r->host_path();
  EXPECT_EQ(r.error().code, make_error_code(errc::path_rejected));
  EXPECT_THAT(r.error().message, HasSubstr(std::string(fragment)));
}

TEST(PathRules, B20_DirResolvesToFixedVolume) {
  auto r = resolve("/app/data/");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->host_root, appdata_root);
  EXPECT_EQ(r->bind, "/app/data");
  EXPECT_EQ(r->container_path, "/app/data");
  EXPECT_EQ(r->rel, "");
  EXPECT_EQ(r->host_path(), appdata_root);
}

TEST(PathRules, B21_FileResolvesBelowFixedVolume) {
  auto r = resolve("/app/data/foo.bin");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rel, "foo.bin");
  EXPECT_EQ(r->host_path(), appdata_root + "/foo.bin");
}

TEST(PathRules, B22_RelativePathRejected) { expect_rejected(resolve("app/data/foo.bin"), "must be absolute"); }

TEST(PathRules, B23_TraversalRejected) {
  auto r = resolve("/app/data/../../etc/passwd");
  expect_rejected(r, "must not contain");
  EXPECT_THAT(r.error().message, HasSubstr(".."));
}

TEST(PathRules, B24_UnmountedPathRejected) { expect_rejected(resolve("/srv/other"), "no mounted volume covers"); }

TEST(PathRules, B25_AnonymousMountRejected) {
  expect_rejected(resolve("/app/legacy/file"), "non-volume-backed mount");
}

TEST(PathRules, B26_InsideSystemVolumeRejected) { expect_rejected(resolve("/r1en_system/foo"), "anti-recursion"); }

TEST(PathRules, B27_SystemVolumeItselfRejected) {
  expect_rejected(resolve("/r1en_system"), "anti-recursion");
  expect_rejected(resolve("/r1en_system/"), "anti-recursion");
}

TEST(PathRules, B28_EmptyPathRejected) { expect_rejected(resolve(""), "non-empty"); }

std::vector<VolumeMount> nested(bool broader_first) {
  const VolumeMount broad{"/x/fixed_volumes/mounts/app", "/app"};
  const VolumeMount narrow{appdata_root, "/app/data"};
  if (broader_first) return {broad, narrow};
  return {narrow, broad};
}

TEST(PathRules, B29_NestedMountsLongestBindWins) {
  auto r = resolve("/app/data/foo.bin", nested(true));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->bind, "/app/data");
  EXPECT_EQ(r->host_path(), appdata_root + "/foo.bin");
}

TEST(PathRules, B30_NestedMountsOrderDoesNotMatter) {
  auto a = resolve("/app/data/foo.bin", nested(true));
  auto b = resolve("/app/data/foo.bin", nested(false));
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_EQ(a->host_path(), b->host_path());
  EXPECT_EQ(a->bind, b->bind);
}

TEST(PathRules, B31_NestedMountsBroaderStillCoversSiblings) {
  auto r = resolve("/app/other.bin", nested(false));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->bind, "/app");
  EXPECT_EQ(r->host_path(), "/x/fixed_volumes/mounts/app/other.bin");
}

TEST(PathRules, B32_LegacyRootAccepted) {
  const std::vector<VolumeMount> mounts = {{legacy_root + "inst_app_data", "/app/data"}};
  auto r = resolve("/app/data/nested/f.txt", mounts);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->host_path(), legacy_root + "inst_app_data/nested/f.txt");
  // The default legacy root is not the injected one.
  expect_rejected(resolve("/app/data/nested/f.txt", mounts, MountPolicy{}), "non-volume-backed mount");
}

TEST(PathRules, LegacyRootIsAPathPrefixNotAStringPrefix) {
  MountPolicy p;
  p.legacy_root = "/legacy/vols";  // no trailing slash
  expect_rejected(resolve("/d/f", {{"/legacy/vols2/x", "/d"}}, p), "non-volume-backed mount");
  EXPECT_TRUE(resolve("/d/f", {{"/legacy/vols/x", "/d"}}, p));
}

TEST(PathRules, TiesGoToTheFirstMount) {
  const std::vector<VolumeMount> mounts = {{"/x/fixed_volumes/mounts/one", "/d"},
                                           {"/x/fixed_volumes/mounts/two", "/d/"}};
  auto r = resolve("/d/f", mounts);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->host_root, "/x/fixed_volumes/mounts/one");
}

TEST(PathRules, RootBindNeverMatches) {
  expect_rejected(resolve("/etc/passwd", {{"/x/fixed_volumes/mounts/root", "/"}}), "no mounted volume covers");
}

TEST(PathRules, BindPrefixMustEndAtAComponent) {
  expect_rejected(resolve("/app/database/x"), "no mounted volume covers");
}

TEST(PathRules, DoubleLeadingSlashCannotEscapeAntiRecursion) {
  expect_rejected(resolve("//r1en_system/x"), "anti-recursion");
  auto shape = check_shape("//r1en_system/x");
  ASSERT_FALSE(shape);
  EXPECT_THAT(shape.error().message, HasSubstr("anti-recursion"));
}

TEST(PathRules, ShapeRulesNormalise) {
  auto s = check_shape("//tmp//./generated.txt/");
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, "/tmp/generated.txt");
  EXPECT_FALSE(check_shape("/tmp/.."));
  EXPECT_TRUE(check_shape("/tmp/..x"));  // only an exact ".." segment is traversal
  EXPECT_FALSE(check_shape(std::string_view("/tmp/a\0b", 8)));
}

TEST(PathRules, NormalizePath) {
  EXPECT_EQ(normalize_path("///a//b/./c/"), "/a/b/c");
  EXPECT_EQ(normalize_path("/"), "/");
  EXPECT_EQ(normalize_path("a/./b/"), "a/b");
  EXPECT_EQ(normalize_path("./"), ".");
  EXPECT_EQ(normalize_path("/a/../b"), "/a/../b");  // ".." is left for the shape rules
}

TEST(PathRules, VolumeRootsWildcardsReplaceTheReferenceRule) {
  MountPolicy p;
  p.volume_roots = std::vector<std::string>{"/var/lib/edge/*/fixed_volumes/mounts", "/srv/volumes"};
  const std::vector<VolumeMount> mounts = {
      {"/var/lib/edge/app-a/fixed_volumes/mounts/data", "/a"},
      {"/srv/volumes/v1", "/b"},
      {"/srv/volumes", "/c"},                             // the root itself: not strictly below
      {"/var/lib/edge/a/b/fixed_volumes/mounts/d", "/d"},  // '*' does not cross '/'
      {"/x/fixed_volumes/mounts/appdata", "/e"},          // reference rule is off
  };
  EXPECT_TRUE(resolve("/a/f", mounts, p));
  EXPECT_TRUE(resolve("/b/f", mounts, p));
  expect_rejected(resolve("/c/f", mounts, p), "non-volume-backed mount");
  expect_rejected(resolve("/d/f", mounts, p), "non-volume-backed mount");
  expect_rejected(resolve("/e/f", mounts, p), "non-volume-backed mount");
}

TEST(PathRules, PathWithin) {
  EXPECT_TRUE(path_within("/a/b", "/a/b"));
  EXPECT_TRUE(path_within("/a/b/c", "/a/b"));
  EXPECT_FALSE(path_within("/a/bc", "/a/b"));
  EXPECT_FALSE(path_within("/a", "/a/b"));
  EXPECT_TRUE(path_within("/anything", "/"));
}

}  // namespace
}  // namespace carsync::core
