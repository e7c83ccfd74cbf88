// Online provider capture through the runtime (spec §7.2, §7.3 "online entry"): the
// container's export is published without stopping the container, and the exported stream
// never outlives the build.
#include "support/fakes.hpp"
#include "support/provider_fixture.hpp"
#include "support/temp_dir.hpp"
#include "unit/io/archive_reader.hpp"
#include "unit/io/docker_tar.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace carsync::test {
namespace {

namespace json = boost::json;
using core::ProviderStage;

// Every byte value, several times: catches text-mode or truncation bugs.
std::string binary_bytes() {
  std::string s;
  for (int round = 0; round < 300; ++round)
    for (int b = 0; b < 256; ++b) s.push_back(static_cast<char>(b ^ round));
  return s;
}

constexpr std::string_view generated_request =
    R"({"archive_paths": ["/tmp/generated.txt"], "runtime": {"provider_capture": "online"}})";

class OnlineProvider : public ::testing::Test, protected ProviderFixture {
 protected:
  OnlineProvider() { config.sync.allow_online_capture = true; }

  // What the fake container's export answers with, for any path.
  void serve(const std::vector<TarMember>& members) {
    const auto file = tmp / "served.tar";
    write_tar(file, members);
    container.export_tar = read_file(file);
  }

  ReadBack stored_archive(const std::string& cid) {
    auto file = tmp / ("fetched_" + cid + ".tar.gz");
    write_file(file, cas.blobs.at(cid));
    auto back = read_archive(file);
    EXPECT_TRUE(back) << (back ? "" : back.error().message);
    return back ? *back : ReadBack{};
  }

  json::object response() { return control_json(io::response_name).as_object(); }
};

TEST_F(OnlineProvider, G83_OnlineCaptureStoresTheContainersFile) {
  const std::string bytes = binary_bytes();
  serve({tar_file("generated.txt", bytes)});
  write_request(generated_request);
  const std::string cid = cas.next_cid();

  auto out = run_once();
  ASSERT_TRUE(out.succeeded) << out.error;
  EXPECT_EQ(out.cid, cid);
  EXPECT_EQ(container.exported, (std::vector<std::string>{"/tmp/generated.txt"}));

  ASSERT_EQ(kv.hsets.size(), 1u);
  const json::value& manifest = kv.hsets[0].value.at("manifest");
  EXPECT_EQ(manifest.at("runtime").at("provider_capture"), json::value("online"));
  EXPECT_EQ(manifest.at("archive_paths"), json::value(json::array{"/tmp/generated.txt"}));

  auto back = stored_archive(cid);
  ASSERT_EQ(back.members.size(), 1u);
  EXPECT_EQ(back.members[0].name, "tmp/generated.txt");
  EXPECT_EQ(back.members[0].type, unsigned(AE_IFREG));
  EXPECT_EQ(back.members[0].content, bytes);
  // Neither the export stream nor the archive stays in scratch.
  EXPECT_TRUE(scratch_entries().empty());
}

TEST_F(OnlineProvider, M157_OnlineCaptureNeverStopsTheContainer) {
  serve({tar_file("generated.txt", "hello\n")});
  write_request(generated_request);

  auto out = run_once();
  ASSERT_TRUE(out.succeeded) << out.error;
  EXPECT_TRUE(container.lifecycle.empty());
  EXPECT_EQ(response().at("status"), json::value("ok"));
  EXPECT_FALSE(control_exists(io::processing_name));
}

TEST_F(OnlineProvider, EveryPathIsExportedInRequestOrder) {
  serve({tar_dir("cache/"), tar_file("cache/a.txt", "alpha")});
  write_request(R"({"archive_paths": ["/app/cache/", "/var/cache"], "runtime": {"provider_capture": "online"}})");
  const std::string cid = cas.next_cid();

  auto out = run_once();
  ASSERT_TRUE(out.succeeded) << out.error;
  EXPECT_EQ(container.exported, (std::vector<std::string>{"/app/cache", "/var/cache"}));
  std::vector<std::string> names;
  for (const auto& m : stored_archive(cid).members) names.push_back(m.name);
  EXPECT_EQ(names, (std::vector<std::string>{"app/cache/", "app/cache/a.txt", "var/cache/", "var/cache/a.txt"}));
  EXPECT_TRUE(scratch_entries().empty());
}

TEST_F(OnlineProvider, SymlinkInTheExportFailsAtArchiveBuild) {
  serve({tar_dir("cache/"), TarMember{.name = "cache/link", .type = AE_IFLNK, .perm = 0777, .symlink = "/etc"}});
  write_request(R"({"archive_paths": ["/app/cache"], "runtime": {"provider_capture": "online"}})");

  auto out = run_once();
  ASSERT_FALSE(out.succeeded);
  EXPECT_EQ(out.failed_stage, ProviderStage::archive_build);
  EXPECT_NE(out.error.find("cache/link"), std::string::npos) << out.error;
  EXPECT_NE(out.error.find("symlink"), std::string::npos) << out.error;
  EXPECT_EQ(response().at("stage"), json::value("archive_build"));
  EXPECT_TRUE(cas.added.empty());
  EXPECT_TRUE(kv.hsets.empty());
  EXPECT_TRUE(container.lifecycle.empty());
  EXPECT_TRUE(scratch_entries().empty());
}

TEST_F(OnlineProvider, ExportFailureFailsAtArchiveBuildWithItsCause) {
  container.export_error = "no such container: app";
  write_request(generated_request);

  auto out = run_once();
  ASSERT_FALSE(out.succeeded);
  EXPECT_EQ(out.failed_stage, ProviderStage::archive_build);
  EXPECT_NE(out.error.find("no such container: app"), std::string::npos) << out.error;
  EXPECT_NE(out.error.find("/tmp/generated.txt"), std::string::npos) << out.error;
  EXPECT_TRUE(cas.added.empty());
  EXPECT_TRUE(scratch_entries().empty());
}

TEST_F(OnlineProvider, RootPathIsRefusedWithoutExporting) {
  serve({tar_file("x", "data")});
  write_request(R"({"archive_paths": ["/"], "runtime": {"provider_capture": "online"}})");

  auto out = run_once();
  ASSERT_FALSE(out.succeeded);
  EXPECT_EQ(out.failed_stage, ProviderStage::archive_build);
  EXPECT_TRUE(container.exported.empty());
  EXPECT_TRUE(scratch_entries().empty());
}

}  // namespace
}  // namespace carsync::test
