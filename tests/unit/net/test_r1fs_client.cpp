#include "net/r1fs_client.hpp"
#include "unit/net/devnode_fixture.hpp"

#include <random>

namespace carsync::test {
namespace {

using net::R1fsClient;

std::string random_bytes(std::size_t n) {
  std::mt19937_64 rng(42);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class R1fsClientTest : public DevnodeTest {};

TEST_F(R1fsClientTest, UploadMultiMiBDownloadByteEqualThenDelete) {
  start_devnode();
  const auto payload = random_bytes(5 * 1024 * 1024 + 123);
  write_file(tmp_ / "in" / "state.tar.gz", payload);
  struct Out {
    Result<std::string> cid = std::string();
    Result<std::filesystem::path> path = std::filesystem::path();
    Result<void> deleted;
    Result<std::filesystem::path> after = std::filesystem::path();
  };
  auto out = run([&]() -> net::Task<Out> {
    R1fsClient fs(io_.get_executor(), r1fs_endpoint(), tmp_ / "downloads", quick_options());
    Out o;
    o.cid = co_await fs.add_file(tmp_ / "in" / "state.tar.gz");
    if (!o.cid) co_return o;
    o.path = co_await fs.get_file(*o.cid);
    o.deleted = co_await fs.delete_file(*o.cid, true, false);
    o.after = co_await fs.get_file(*o.cid);
    co_return o;
  }());
  ASSERT_TRUE(out.cid) << out.cid.error().message;
  ASSERT_TRUE(out.path) << out.path.error().message;
  EXPECT_EQ(read_file(*out.path), payload);
  EXPECT_TRUE(out.deleted) << out.deleted.error().message;
  ASSERT_FALSE(out.after);  // the devnode answers with its error envelope
  EXPECT_NE(out.after.error().message.find("Failed to retrieve file"), std::string::npos) << out.after.error().message;
}

TEST_F(R1fsClientTest, CorruptDownloadIsRejectedAgainstTheCid) {
  start_devnode("get_file:corrupt");
  write_file(tmp_ / "in" / "a.bin", random_bytes(300 * 1024));
  auto r = run([&]() -> net::Task<Result<std::filesystem::path>> {
    R1fsClient fs(io_.get_executor(), r1fs_endpoint(), tmp_ / "downloads", quick_options());
    auto cid = co_await fs.add_file(tmp_ / "in" / "a.bin");
    if (!cid) co_return cid.error();
    co_return co_await fs.get_file(*cid);
  }());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::corrupt_archive)) << r.error().message;
  EXPECT_TRUE(std::filesystem::is_empty(tmp_ / "downloads"));  // no partial file left
}

TEST_F(R1fsClientTest, DeletingAnUnknownCidFails) {
  start_devnode();
  auto r = run([&]() -> net::Task<Result<void>> {
    R1fsClient fs(io_.get_executor(), r1fs_endpoint(), tmp_ / "downloads", quick_options());
    co_return co_await fs.delete_file("bafkreia3xxi4vdwgoykesymwxnsnm6e5f6jkuvgfqkheyjlbmyu3svh2ou", true, false);
  }());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("Failed to delete file"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace carsync::test
