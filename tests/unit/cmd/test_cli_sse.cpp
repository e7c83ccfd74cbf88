#include "cmd/cli_sse.hpp"

#include <gtest/gtest.h>

namespace carsync::cmd {
namespace {

TEST(SseParser, EventsSplitAnywhereComeOutWhole) {
  const std::string stream =
      "event: snapshot\nid: 7\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: instance\r\ndata: x\r\ndata: y\r\n\r\n";
  // Every split point, including inside "\r\n", gives the same two events.
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    SseParser p;
    auto first = p.feed(std::string_view(stream).substr(0, cut));
    auto rest = p.feed(std::string_view(stream).substr(cut));
    first.insert(first.end(), rest.begin(), rest.end());
    ASSERT_EQ(first.size(), 2u) << "cut at " << cut;
    EXPECT_EQ(first[0].event, "snapshot");
    EXPECT_EQ(first[0].id, "7");
    EXPECT_EQ(first[0].data, "{\"a\":1}");
    EXPECT_EQ(first[1].event, "instance");
    EXPECT_EQ(first[1].data, "x\ny");
  }
}

TEST(SseParser, CommentsAndEventsWithoutDataDispatchNothing) {
  SseParser p;
  EXPECT_TRUE(p.feed(": keep-alive\n\nevent: lonely\n\n").empty());
  auto e = p.feed("data:no-space\n\n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].event, "message");  // the field did not carry over from the dropped event
  EXPECT_EQ(e[0].data, "no-space");
}

TEST(SseParser, AnUnfinishedEventWaitsForItsBlankLine) {
  SseParser p;
  EXPECT_TRUE(p.feed("event: instance\ndata: {}\n").empty());
  EXPECT_EQ(p.feed("\n").size(), 1u);
}

}  // namespace
}  // namespace carsync::cmd
