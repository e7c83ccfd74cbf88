#include "tools/devnode/devnode.hpp"
#include "net/http_client.hpp"
#include "unit/net/devnode_fixture.hpp"

#include <boost/json/parse.hpp>

namespace carsync::test {
namespace {

namespace json = boost::json;
using net::HttpClient;

TEST(FaultPlan, ParsesRulesAndCountsFirstN) {
  auto plan = net::FaultPlan::parse("hset:500:0,get_file:truncate,*:503:#1");
  ASSERT_TRUE(plan) << plan.error().message;
  auto first = plan->pick("hset");  // probability 0 never fires; "*" #1 does, once
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 503u);
  EXPECT_FALSE(plan->pick("hset"));
  auto trunc = plan->pick("get_file");
  ASSERT_TRUE(trunc);
  EXPECT_EQ(trunc->action, net::FaultPlan::Action::truncate);
  EXPECT_FALSE(net::FaultPlan::parse("hset:200"));
  EXPECT_FALSE(net::FaultPlan::parse("hset:500:2"));
  EXPECT_FALSE(net::FaultPlan::parse("hset"));
}

class DevnodeServerTest : public DevnodeTest {};

TEST_F(DevnodeServerTest, EnvelopeHasTheEightKeysAndErrorsHaveStatuses) {
  start_devnode();
  struct Out {
    Result<net::HttpResponse> status = net::HttpResponse{};
    Result<net::HttpResponse> missing = net::HttpResponse{};
    Result<net::HttpResponse> wrong_port = net::HttpResponse{};
    Result<net::HttpResponse> absent = net::HttpResponse{};
  };
  auto out = run([&]() -> net::Task<Out> {
    HttpClient cstore(io_.get_executor(), cstore_endpoint(), quick_options());
    HttpClient r1fs(io_.get_executor(), r1fs_endpoint(), quick_options());
    Out o;
    o.status = co_await cstore.get("/get_status", "status");
    o.missing = co_await cstore.post_json("/hset", R"({"hkey":"h"})", false, "hset");
    o.wrong_port = co_await r1fs.get("/hget?hkey=h&key=k", "hget");
    o.absent = co_await r1fs.get("/get_file?cid=nope", "get_file");
    co_return o;
  }());
  ASSERT_TRUE(out.status) << out.status.error().message;
  EXPECT_EQ(out.status->content_type, "application/json");
  auto doc = json::parse(out.status->body).as_object();
  for (const char* key : {"result", "server_node_addr", "evm_network", "ee_node_alias", "ee_node_address",
                          "ee_node_eth_address", "ee_node_network", "ee_node_ver"})
    EXPECT_TRUE(doc.contains(key)) << key;
  ASSERT_FALSE(out.missing);
  EXPECT_NE(out.missing.error().message.find("HTTP 422"), std::string::npos) << out.missing.error().message;
  ASSERT_FALSE(out.wrong_port);
  EXPECT_NE(out.wrong_port.error().message.find("HTTP 404"), std::string::npos);
  ASSERT_TRUE(out.absent);  // §4: a missing CID is data, not a status
  auto result = net::envelope_result(*out.absent, "get_file");
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("Failed to retrieve file with CID 'nope'"), std::string::npos);
}

TEST_F(DevnodeServerTest, HangFaultMakesTheClientDeadlineFire) {
  start_devnode("get_status:hang");
  auto options = quick_options();
  options.io_timeout = std::chrono::milliseconds(150);
  options.attempts = 1;
  auto r = run([&]() -> net::Task<Result<net::HttpResponse>> {
    HttpClient http(io_.get_executor(), cstore_endpoint(), options);
    co_return co_await http.get("/get_status", "status");
  }());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::timeout));
}

TEST_F(DevnodeServerTest, TruncatedDownloadFailsAndLeavesNoFile) {
  start_devnode("get_file:truncate");
  write_file(tmp_ / "in" / "f.bin", std::string(200 * 1024, 'x'));
  auto r = run([&]() -> net::Task<Result<net::HttpResponse>> {
    HttpClient http(io_.get_executor(), r1fs_endpoint(), quick_options());
    auto up = co_await http.post_file("/add_file", tmp_ / "in" / "f.bin", "f.bin", "add_file");
    if (!up) co_return up.error();
    auto cid = net::envelope_result(*up, "add_file");
    if (!cid) co_return cid.error();
    net::DownloadTarget target;
    target.path = tmp_ / "out.bin";
    target.max_bytes = 1 << 30;
    const std::string route = "/get_file" + net::form_query({{"cid", std::string(cid->at("cid").as_string())}});
    co_return co_await http.download(route, target, "get_file");
  }());
  ASSERT_FALSE(r);
  EXPECT_FALSE(std::filesystem::exists(tmp_ / "out.bin"));
}

}  // namespace
}  // namespace carsync::test
