#include "net/store_reply.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace carsync::net {
namespace {

using ::testing::HasSubstr;

TEST(StoreReply, EnvelopeYieldsResultOrNamesWhatWentWrong) {
  auto ok = envelope_result_of(R"({"result": {"cid": "Qm1"}, "EE_ID": "e"})", "add_file");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(add_file_cid(*ok, "add_file").value(), "Qm1");

  auto not_json = envelope_result_of("<html>\n502</html>", "hget");
  ASSERT_FALSE(not_json);
  EXPECT_EQ(not_json.error().code, make_error_code(errc::store_failure));
  EXPECT_THAT(not_json.error().message, HasSubstr("hget: response is not JSON: <html> 502"));

  EXPECT_THAT(envelope_result_of(R"({"x": 1})", "w").error().message, HasSubstr("no \"result\""));
  EXPECT_THAT(envelope_result_of(R"({"result": {"error": "gone"}})", "w").error().message, HasSubstr("w: gone"));
  EXPECT_THAT(envelope_result_of(R"({"result": {"error": 5}})", "w").error().message, HasSubstr("w: 5"));
}

// Two readers of a reply with a repeated key could see two different records: refused,
// naming the key and where it is.
TEST(StoreReply, DuplicateKeyIsRefusedNamingIt) {
  auto dup = envelope_result_of(R"({"result": {"cid": "Qm1", "version": 1, "cid": "QmEvil"}})", "hget");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, make_error_code(errc::store_failure));
  EXPECT_THAT(dup.error().message, HasSubstr("hget: response refused: duplicate key \"cid\" in $.result"));
  auto nested = envelope_result_of(R"({"result": {"k": {"manifest": {"a": 1, "a": 2}}}})", "hgetall");
  ASSERT_FALSE(nested);
  EXPECT_THAT(nested.error().message, HasSubstr("duplicate key \"a\" in $.result.k.manifest"));
  EXPECT_TRUE(envelope_result_of(R"({"result": {"a": {"cid": 1}, "b": {"cid": 2}}})", "hgetall"));
}

TEST(StoreReply, EachCallReadsItsResultShape) {
  EXPECT_EQ(add_file_cid(boost::json::object{{"cid", ""}}, "a").error().code, make_error_code(errc::no_cid));
  EXPECT_TRUE(delete_file_outcome(boost::json::object{{"success", true}}, "d"));
  EXPECT_THAT(delete_file_outcome(boost::json::object{{"success", false}, {"message", "pinned"}}, "d").error().message,
              HasSubstr("d: pinned"));
  EXPECT_FALSE(hset_outcome(nullptr, "s").value());
  EXPECT_TRUE(hset_outcome(true, "s").value());
  EXPECT_FALSE(hset_outcome("yes", "s"));
  EXPECT_TRUE(hgetall_outcome(nullptr, "g").value().empty());
  EXPECT_EQ(hgetall_outcome(boost::json::object{{"k", 1}}, "g").value().size(), 1u);
  EXPECT_FALSE(hgetall_outcome(boost::json::array{}, "g"));
  EXPECT_TRUE(hsync_outcome(boost::json::object{}, "h"));
  EXPECT_FALSE(hsync_outcome(nullptr, "h"));
}

}  // namespace
}  // namespace carsync::net
