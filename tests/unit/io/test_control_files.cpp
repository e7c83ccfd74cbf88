#include "io/control_files.hpp"

#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using carsync::test::read_file;
using carsync::test::TempDir;
using carsync::test::write_file;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::size_t cap = 1024 * 1024;

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// The one entry whose name starts with `prefix`, or "" when there is not exactly one.
std::string only_entry_with_prefix(const fs::path& dir, std::string_view prefix) {
  std::string found;
  for (const auto& name : names_in(dir)) {
    if (!name.starts_with(prefix)) continue;
    if (!found.empty()) return "";
    found = name;
  }
  return found;
}

class ControlFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(sysvol);
    ASSERT_TRUE(files.provision());
  }

  const Error& unsafe_error(const ClaimOutcome& outcome) {
    const auto* unsafe = std::get_if<ClaimUnsafe>(&outcome);
    if (!unsafe) throw std::runtime_error("claim outcome is not ClaimUnsafe");
    return unsafe->error;
  }

  TempDir tmp;
  TempDir elsewhere;  // stands for host files outside the volume
  fs::path sysvol = tmp / "r1en_system";
  fs::path ctl = sysvol / "volume-sync";
  fs::path request = ctl / "request.json";
  fs::path processing = ctl / "request.json.processing";
  ControlFiles files{sysvol};
};

TEST_F(ControlFilesTest, A04_ClaimWithNothingPending) {
  EXPECT_TRUE(std::holds_alternative<NothingPending>(files.claim(cap)));
  EXPECT_TRUE(names_in(ctl).empty());
}

TEST_F(ControlFilesTest, ClaimWithoutControlDirIsNothingPending) {
  fs::remove(ctl);
  EXPECT_TRUE(std::holds_alternative<NothingPending>(files.claim(cap)));
}

TEST_F(ControlFilesTest, A05_ClaimValidPendingFile) {
  const std::string body = R"({"archive_paths": ["/app/data/"]})";
  write_file(request, body);

  const auto outcome = files.claim(cap);
  const auto* claimed = std::get_if<ClaimedBody>(&outcome);
  ASSERT_NE(claimed, nullptr);
  EXPECT_EQ(claimed->bytes, body);
  EXPECT_FALSE(fs::exists(request));
  EXPECT_EQ(read_file(processing), body);
}

// The claim reports when the app wrote its request (the reaction-latency metric's start).
TEST_F(ControlFilesTest, ClaimReportsTheRequestsModificationTime) {
  write_file(request, R"({"archive_paths": ["/app/data/"]})");
  const timespec times[2] = {{.tv_sec = 1700000000, .tv_nsec = 0}, {.tv_sec = 1700000000, .tv_nsec = 250000000}};
  ASSERT_EQ(::utimensat(AT_FDCWD, request.c_str(), times, 0), 0);
  const auto outcome = files.claim(cap);
  const auto* claimed = std::get_if<ClaimedBody>(&outcome);
  ASSERT_NE(claimed, nullptr);
  EXPECT_DOUBLE_EQ(claimed->mtime, 1700000000.25);
}

// A06-A08: decoding is core's job (core/request); at this layer the claim hands back the
// bytes untouched and leaves `.processing` for the caller's failure handling.
TEST_F(ControlFilesTest, A06_ClaimMalformedJsonReturnsRawBytesProcessingRemains) {
  write_file(request, "not-json{");
  const auto outcome = files.claim(cap);
  ASSERT_TRUE(std::holds_alternative<ClaimedBody>(outcome));
  EXPECT_EQ(std::get<ClaimedBody>(outcome).bytes, "not-json{");
  EXPECT_TRUE(fs::is_regular_file(processing));
}

TEST_F(ControlFilesTest, A07_ClaimInvalidUtf8ReturnsRawBytesProcessingRemains) {
  const std::string body = "{\"a\": \"\xff\xfe\"}";
  write_file(request, body);
  const auto outcome = files.claim(cap);
  ASSERT_TRUE(std::holds_alternative<ClaimedBody>(outcome));
  EXPECT_EQ(std::get<ClaimedBody>(outcome).bytes, body);
  EXPECT_TRUE(fs::is_regular_file(processing));
}

TEST_F(ControlFilesTest, A08_ClaimJsonArrayReturnsRawBytes) {
  write_file(request, "[1, 2]");
  const auto outcome = files.claim(cap);
  ASSERT_TRUE(std::holds_alternative<ClaimedBody>(outcome));
  EXPECT_EQ(std::get<ClaimedBody>(outcome).bytes, "[1, 2]");
}

TEST_F(ControlFilesTest, A09_ClaimSymlinkedRequestIsUnsafe) {
  write_file(elsewhere / "secret", "host secret");
  fs::create_symlink(elsewhere / "secret", request);

  const auto outcome = files.claim(cap);
  const Error& e = unsafe_error(outcome);
  EXPECT_EQ(e.code, make_error_code(errc::unsafe_control_file));
  EXPECT_EQ(e.message, "refusing symlink control file: request.json");
  EXPECT_THAT(e.message, Not(HasSubstr("host secret")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(request)));
  EXPECT_FALSE(fs::exists(fs::symlink_status(processing)));
  EXPECT_EQ(read_file(elsewhere / "secret"), "host secret");
}

TEST_F(ControlFilesTest, A10_ClaimFifoIsUnsafeWithoutBlocking) {
  ASSERT_EQ(::mkfifo(request.c_str(), 0644), 0);
  const auto outcome = files.claim(cap);
  EXPECT_EQ(unsafe_error(outcome).message, "refusing non-regular control file: request.json");
  EXPECT_FALSE(fs::exists(fs::symlink_status(request)));
  EXPECT_FALSE(fs::exists(fs::symlink_status(processing)));
}

TEST_F(ControlFilesTest, A11_ClaimNonEmptyDirectoryIsQuarantined) {
  write_file(request / "inner.txt", "keep me");
  const auto outcome = files.claim(cap);
  EXPECT_EQ(unsafe_error(outcome).message, "refusing non-regular control file: request.json");
  EXPECT_FALSE(fs::exists(request));
  EXPECT_FALSE(fs::exists(processing));

  const auto quarantined = only_entry_with_prefix(ctl, "request.json.unsafe.");
  ASSERT_FALSE(quarantined.empty()) << ::testing::PrintToString(names_in(ctl));
  EXPECT_EQ(quarantined.find_first_not_of("0123456789", std::string("request.json.unsafe.").size()),
            std::string::npos);
  EXPECT_EQ(read_file(ctl / quarantined / "inner.txt"), "keep me");
}

TEST_F(ControlFilesTest, ClaimEmptyDirectoryIsRemoved) {
  fs::create_directory(request);
  const auto outcome = files.claim(cap);
  EXPECT_EQ(unsafe_error(outcome).message, "refusing non-regular control file: request.json");
  EXPECT_TRUE(names_in(ctl).empty());
}

TEST_F(ControlFilesTest, ClaimOversizedBodyIsLimitExceeded) {
  write_file(request, std::string(17, ' '));
  const auto outcome = files.claim(16);
  const Error& e = unsafe_error(outcome);
  EXPECT_EQ(e.code, make_error_code(errc::limit_exceeded));
  EXPECT_EQ(e.message, "request.json exceeds 16 bytes");
}

TEST_F(ControlFilesTest, ClaimRefusesSymlinkedControlDirectory) {
  fs::remove(ctl);
  write_file(elsewhere / "request.json", "{}");
  fs::create_directory_symlink(elsewhere.path(), ctl);
  const auto outcome = files.claim(cap);
  EXPECT_EQ(unsafe_error(outcome).message, "refusing symlink control directory " + ctl.string());
  EXPECT_TRUE(fs::exists(elsewhere / "request.json"));
  EXPECT_FALSE(fs::exists(elsewhere / "request.json.processing"));
}

TEST_F(ControlFilesTest, ClaimRefusesNonDirectoryControlDirectory) {
  fs::remove(ctl);
  write_file(ctl, "not a dir");
  EXPECT_EQ(unsafe_error(files.claim(cap)).message, "refusing non-directory control directory " + ctl.string());
}

TEST_F(ControlFilesTest, A12_DiscardProcessingRemovesRegularFile) {
  write_file(processing, "{}");
  ASSERT_TRUE(files.discard_processing());
  EXPECT_TRUE(names_in(ctl).empty());
}

TEST_F(ControlFilesTest, A13_DiscardProcessingRemovesDanglingSymlink) {
  fs::create_symlink(elsewhere / "missing", processing);
  ASSERT_TRUE(files.discard_processing());
  EXPECT_TRUE(names_in(ctl).empty());
}

TEST_F(ControlFilesTest, A14_DiscardNonEmptyProcessingDirectoryQuarantines) {
  write_file(processing / "inner.txt", "keep me");
  ASSERT_TRUE(files.discard_processing());
  EXPECT_FALSE(fs::exists(processing));
  const auto quarantined = only_entry_with_prefix(ctl, "request.json.processing.unsafe.");
  ASSERT_FALSE(quarantined.empty());
  EXPECT_EQ(read_file(ctl / quarantined / "inner.txt"), "keep me");
}

TEST_F(ControlFilesTest, DiscardWithoutProcessingSucceeds) {
  EXPECT_TRUE(files.discard_processing());
}

TEST_F(ControlFilesTest, A15_RecoveryDeletesSymlinkedProcessing) {
  write_file(elsewhere / "target", "untouched");
  fs::create_symlink(elsewhere / "target", processing);
  auto r = files.recover_stale_processing();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, RecoveryResult::not_recovered);
  EXPECT_TRUE(names_in(ctl).empty());
  EXPECT_EQ(read_file(elsewhere / "target"), "untouched");
}

// A crash between a control file's temp write and its rename leaves the temp: recovery
// removes carsync's own temps and nothing the app keeps there.
TEST_F(ControlFilesTest, RecoveryRemovesTempsOfInterruptedWrites) {
  write_file(ctl / ".response.json.c9acf28e6178b9a9.tmp", "{");
  write_file(ctl / ".last_apply.json.0123456789abcdef.tmp", "{");
  write_file(ctl / ".request.json.invalid.fedcba9876543210.tmp", "{");
  write_file(ctl / ".request.json.app-tmp", "app");
  write_file(ctl / ".response.json.short.tmp", "app");
  fs::create_directory(ctl / ".response.json.aaaaaaaaaaaaaaaa.tmp.d");
  auto r = files.recover_stale_processing();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, RecoveryResult::nothing);
  EXPECT_EQ(names_in(ctl), (std::vector<std::string>{".request.json.app-tmp", ".response.json.aaaaaaaaaaaaaaaa.tmp.d",
                                                      ".response.json.short.tmp"}));
}

TEST_F(ControlFilesTest, A16_RecoveryRenamesOrphanProcessingBack) {
  write_file(processing, "orphan");
  auto r = files.recover_stale_processing();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, RecoveryResult::recovered);
  EXPECT_EQ(read_file(request), "orphan");
  EXPECT_FALSE(fs::exists(processing));
}

TEST_F(ControlFilesTest, A17_RecoveryWithBothPresentKeepsPendingAndProcessing) {
  write_file(processing, "stale");
  write_file(request, "newer");
  auto r = files.recover_stale_processing();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, RecoveryResult::not_recovered);
  EXPECT_EQ(read_file(request), "newer");
  EXPECT_EQ(read_file(processing), "stale");
}

TEST_F(ControlFilesTest, A18_RecoveryQuarantinesNonEmptyProcessingDirectory) {
  write_file(processing / "inner.txt", "keep me");
  auto r = files.recover_stale_processing();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, RecoveryResult::not_recovered);
  const auto quarantined = only_entry_with_prefix(ctl, "request.json.processing.unsafe.");
  ASSERT_FALSE(quarantined.empty());
  EXPECT_EQ(read_file(ctl / quarantined / "inner.txt"), "keep me");
  EXPECT_FALSE(fs::exists(request));
}

// A request the app creates while recovery runs may be anything, even a dangling symlink;
// the no-replace rename must leave it exactly as written and never follow it.
TEST_F(ControlFilesTest, RecoveryNeverReplacesConcurrentRequestOfAnyType) {
  write_file(processing, "stale");
  fs::create_symlink(elsewhere / "not-created", request);
  auto r = files.recover_stale_processing();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, RecoveryResult::not_recovered);
  EXPECT_TRUE(fs::is_symlink(request));
  EXPECT_EQ(read_file(processing), "stale");
  EXPECT_FALSE(fs::exists(elsewhere / "not-created"));
}

TEST_F(ControlFilesTest, RecoveryRefusesSymlinkedControlDirectory) {
  fs::remove(ctl);
  write_file(elsewhere / "request.json.processing", "outside");
  fs::create_directory_symlink(elsewhere.path(), ctl);
  auto r = files.recover_stale_processing();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "refusing symlink control directory " + ctl.string());
  EXPECT_EQ(names_in(elsewhere.path()), std::vector<std::string>{"request.json.processing"});
}

TEST_F(ControlFilesTest, A19_WriteLandsRelativeToControlRoot) {
  ASSERT_TRUE(files.write(response_name, json::value{{"status", "ok"}}));
  EXPECT_EQ(json::parse(read_file(ctl / "response.json")), (json::value{{"status", "ok"}}));
  EXPECT_EQ(fs::status(ctl / "response.json").permissions(), fs::perms(0644));
  EXPECT_EQ(names_in(ctl), std::vector<std::string>{"response.json"});
}

TEST_F(ControlFilesTest, WriteIntoSymlinkedControlDirWritesNothing) {
  fs::remove(ctl);
  fs::create_directory_symlink(elsewhere.path(), ctl);
  auto r = files.write(response_name, json::value{{"status", "ok"}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::unsafe_control_file));
  EXPECT_TRUE(fs::is_empty(elsewhere.path()));
}

TEST_F(ControlFilesTest, RemoveInvalidIsIdempotent) {
  write_file(ctl / "request.json.invalid", "{}");
  ASSERT_TRUE(files.remove_invalid());
  EXPECT_FALSE(fs::exists(ctl / "request.json.invalid"));
  EXPECT_TRUE(files.remove_invalid());
}

TEST_F(ControlFilesTest, RequestPendingSeesAnyTypeWithoutFollowing) {
  EXPECT_FALSE(files.request_pending());
  fs::create_symlink(elsewhere / "missing", request);
  EXPECT_TRUE(files.request_pending());
}

class ProvisionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "provisioning chowns to 0:0 and needs root";
    fs::create_directories(sysvol);
  }
  TempDir tmp;
  TempDir elsewhere;
  fs::path sysvol = tmp / "r1en_system";
  fs::path ctl = sysvol / "volume-sync";
  ControlFiles files{sysvol};
};

TEST_F(ProvisionTest, K145_K147_MountRoot0755ControlDirSticky1777OwnedByRoot) {
  // Start from what a wrong owner and loose modes would leave behind.
  fs::create_directory(ctl);
  ASSERT_EQ(::chown(sysvol.c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chown(ctl.c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chmod(sysvol.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(ctl.c_str(), 0700), 0);

  auto r = files.provision();
  ASSERT_TRUE(r) << r.error().message;

  struct stat root {}, dir {};
  ASSERT_EQ(::lstat(sysvol.c_str(), &root), 0);
  ASSERT_EQ(::lstat(ctl.c_str(), &dir), 0);
  EXPECT_EQ(root.st_mode & 07777, 0755u);
  EXPECT_EQ(dir.st_mode & 07777, 01777u);
  EXPECT_TRUE(S_ISDIR(dir.st_mode));
  EXPECT_EQ(root.st_uid, 0u);
  EXPECT_EQ(root.st_gid, 0u);
  EXPECT_EQ(dir.st_uid, 0u);
  EXPECT_EQ(dir.st_gid, 0u);
}

TEST_F(ProvisionTest, K146_SymlinkedControlDirIsReplacedAndTargetUntouched) {
  write_file(elsewhere / "host.txt", "host");
  ASSERT_EQ(::chmod(elsewhere.path().c_str(), 0700), 0);
  fs::create_directory_symlink(elsewhere.path(), ctl);

  ASSERT_TRUE(files.provision());

  EXPECT_FALSE(fs::is_symlink(ctl));
  ASSERT_TRUE(fs::is_directory(fs::symlink_status(ctl)));
  EXPECT_EQ(fs::status(ctl).permissions(), fs::perms(01777));
  EXPECT_EQ(fs::status(sysvol).permissions(), fs::perms(0755));
  EXPECT_EQ(fs::status(elsewhere.path()).permissions(), fs::perms(0700));
  EXPECT_EQ(names_in(elsewhere.path()), std::vector<std::string>{"host.txt"});
}

TEST_F(ProvisionTest, RegularFileInPlaceOfControlDirIsReplaced) {
  write_file(ctl, "junk");
  ASSERT_TRUE(files.provision());
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(ctl)));
}

TEST_F(ProvisionTest, MissingMountRootFails) {
  ControlFiles missing{tmp / "not-mounted"};
  EXPECT_FALSE(missing.provision());
}

TEST_F(ControlFilesTest, L148_NothingToRecover) {
  auto r = files.recover_stale_processing();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, RecoveryResult::nothing);
  EXPECT_FALSE(fs::exists(request));

  fs::remove(ctl);
  auto no_dir = files.recover_stale_processing();
  ASSERT_TRUE(no_dir);
  EXPECT_EQ(*no_dir, RecoveryResult::nothing);
}

TEST_F(ControlFilesTest, L149_OrphanProcessingIsRenamedBack) {
  write_file(processing, R"({"archive_paths": ["/app/data/"]})");
  auto r = files.recover_stale_processing();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, RecoveryResult::recovered);
  EXPECT_EQ(names_in(ctl), std::vector<std::string>{"request.json"});
  // The recovered request is claimable again (at-least-once).
  EXPECT_TRUE(std::holds_alternative<ClaimedBody>(files.claim(cap)));
}

TEST_F(ControlFilesTest, L150_BothPresentPendingPreservedProcessingUntouched) {
  write_file(processing, "stale");
  write_file(request, "pending");
  struct stat before {};
  ASSERT_EQ(::lstat(processing.c_str(), &before), 0);

  ASSERT_TRUE(files.recover_stale_processing());

  struct stat after {};
  ASSERT_EQ(::lstat(processing.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(read_file(request), "pending");
}

}  // namespace
}  // namespace carsync::io
