#include "net/docker_reply.hpp"

#include <gtest/gtest.h>

namespace carsync::net {
namespace {

TEST(DockerReply, ReadsVersionInspectAndCreateBodies) {
  EXPECT_EQ(version_reply_api(R"({"ApiVersion": "1.43"})"), (std::pair{1, 43}));
  EXPECT_FALSE(version_reply_api(R"({"ApiVersion": "1.43x"})"));
  EXPECT_FALSE(version_reply_api(R"({"ApiVersion": "1.99999999999999999999"})"));  // out of int range
  EXPECT_FALSE(version_reply_api("not json"));
  EXPECT_EQ(inspect_reply_running(R"({"State": {"Running": false}})"), false);
  EXPECT_FALSE(inspect_reply_running(R"({"State": {"Running": "yes"}})"));
  EXPECT_EQ(create_reply_id(R"({"Id": "abc", "Warnings": []})"), "abc");
  EXPECT_FALSE(create_reply_id(R"(["abc"])"));
}

TEST(DockerReply, EngineReasonQuotesMessageElseRawTextElseStatus) {
  EXPECT_EQ(engine_reason(404, "{\"message\": \"No such container: x\\n\"}"), "HTTP 404: No such container: x");
  EXPECT_EQ(engine_reason(500, "boom\r\n"), "HTTP 500: boom");
  EXPECT_EQ(engine_reason(502, ""), "HTTP 502");
}

}  // namespace
}  // namespace carsync::net
