#include "net/cstore_client.hpp"
#include "unit/net/devnode_fixture.hpp"

#include <boost/json/parse.hpp>

namespace carsync::test {
namespace {

namespace json = boost::json;
using net::CStoreClient;

class CStoreClientTest : public DevnodeTest {};

TEST_F(CStoreClientTest, HsetHgetHgetallRoundTripObjectAndStringUnchanged) {
  start_devnode();
  const json::value record = json::parse(R"({"cid":"bafk","version":1714742401,"metadata":{"epoch":1},"list":[1,"x",null]})");
  const json::value text = json::value("{\"a\":1}");  // what SDK users store: a JSON string
  auto done = run([&]() -> net::Task<bool> {
    CStoreClient kv(io_.get_executor(), cstore_endpoint(), quick_options());
    auto ack1 = co_await kv.hset("CHAINSTORE_SYNC", "slot 1/ü", record);
    auto ack2 = co_await kv.hset("CHAINSTORE_SYNC", "sdk", text);
    EXPECT_TRUE(ack1 && *ack1);
    EXPECT_TRUE(ack2 && *ack2);
    auto got_record = co_await kv.hget("CHAINSTORE_SYNC", "slot 1/ü");
    auto got_text = co_await kv.hget("CHAINSTORE_SYNC", "sdk");
    auto absent = co_await kv.hget("CHAINSTORE_SYNC", "nope");
    auto all = co_await kv.hgetall("CHAINSTORE_SYNC");
    auto none = co_await kv.hgetall("no-such-hkey");
    EXPECT_TRUE(got_record && *got_record && **got_record == record);
    EXPECT_TRUE(got_text && *got_text && (*got_text)->is_string() && **got_text == text);
    EXPECT_TRUE(absent && !*absent);
    EXPECT_TRUE(all && all->size() == 2 && all->at("slot 1/ü") == record && all->at("sdk") == text);
    EXPECT_TRUE(none && none->empty());
    co_return true;
  }());
  EXPECT_TRUE(done);
}

TEST_F(CStoreClientTest, HsyncSucceeds) {
  start_devnode();
  auto r = run([&]() -> net::Task<Result<void>> {
    CStoreClient kv(io_.get_executor(), cstore_endpoint(), quick_options());
    co_return co_await kv.hsync("CHAINSTORE_SYNC");
  }());
  EXPECT_TRUE(r) << r.error().message;
}

TEST_F(CStoreClientTest, ServerErrorIsAnErrorNamingTheCall) {
  start_devnode("hset:500");
  auto r = run([&]() -> net::Task<Result<bool>> {
    CStoreClient kv(io_.get_executor(), cstore_endpoint(), quick_options());
    co_return co_await kv.hset("h", "k", json::value(1));
  }());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("cstore hset: HTTP 500"), std::string::npos) << r.error().message;
}

TEST_F(CStoreClientTest, HgetRetriesAfter5xxButHsetDoesNot) {
  start_devnode("hget:503:#2,hset:503:#1");
  auto r = run([&]() -> net::Task<std::pair<bool, std::string>> {
    CStoreClient kv(io_.get_executor(), cstore_endpoint(), quick_options());
    auto set = co_await kv.hset("h", "k", json::value(7));  // one 503, not retried
    auto get = co_await kv.hget("h", "k");                 // two 503s, then the answer
    co_return std::pair{static_cast<bool>(set), get ? (*get ? "a value" : "") : get.error().message};
  }());
  EXPECT_FALSE(r.first);
  EXPECT_EQ(r.second, "");  // third attempt answered: nothing was stored by the failed hset
}

}  // namespace
}  // namespace carsync::test
