#include "tools/devnode/request_parse.hpp"

#include <gtest/gtest.h>

namespace carsync::net {
namespace {

TEST(DevnodeRequestParse, TargetRouteAndDecodedQuery) {
  auto t = parse_request_target("/hget?hkey=CHAINSTORE_SYNC&key=app+a%2Fx");
  EXPECT_EQ(t.route, "hget");
  EXPECT_EQ(t.query.at("hkey"), "CHAINSTORE_SYNC");
  EXPECT_EQ(t.query.at("key"), "app a/x");
  auto bad = parse_request_target("http://elsewhere/hget");
  EXPECT_TRUE(bad.route.empty());
  EXPECT_TRUE(bad.query.empty());
}

TEST(DevnodeRequestParse, FindsTheFilePartInAnyOrder) {
  const std::string body =
      "--B\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\n{}\r\n"
      "--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"s.tar.gz\"\r\n\r\nA\r\nB\r\n--B--\r\n";
  auto part = find_file_part(body, "multipart/form-data; boundary=\"B\"");
  ASSERT_TRUE(part);
  EXPECT_EQ(part->filename, "s.tar.gz");
  EXPECT_EQ(part->content, "A\r\nB");
  EXPECT_FALSE(find_file_part(body, "multipart/form-data"));                      // no boundary
  EXPECT_FALSE(find_file_part(body.substr(0, body.size() - 12), "x; boundary=B"));  // cut short
}

// A part with an empty header block ("--B\r\n\r\n") has no disposition: its headers are not
// the rest of the body (found by fuzz_devnode_request: the multipart stream and this reader
// then named different parts the upload).
TEST(DevnodeRequestParse, AnEmptyHeaderBlockIsNotTheRestOfTheBody) {
  const std::string body =
      "--B\r\n\r\nnot the file\r\n"
      "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nTHE FILE\r\n--B--\r\n";
  auto part = find_file_part(body, "multipart/form-data; boundary=B");
  ASSERT_TRUE(part);
  EXPECT_EQ(part->content, "THE FILE");
}

}  // namespace
}  // namespace carsync::net
