#include "cmd/log_format.hpp"
#include "cmd/log_setup.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <spdlog/details/log_msg.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>

namespace carsync::cmd {
namespace {

namespace json = boost::json;
using namespace std::chrono;

// 2026-11-30T07:37:59.123Z
const system_clock::time_point t0 = sys_days{year{2026} / 11 / 30} + 7h + 37min + 59s + 123ms;

json::object parse_line(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one event, one line";
  boost::system::error_code ec;
  auto v = json::parse(line, ec);
  EXPECT_FALSE(ec) << ec.message() << ": " << line;
  return ec ? json::object{} : v.as_object();
}

TEST(LogFormat, TimestampsAreUtcIso8601WithMillisecondsAndZ) {
  EXPECT_EQ(utc_timestamp(t0), "2026-11-30T07:37:59.123Z");
  EXPECT_EQ(utc_timestamp(sys_days{year{1999} / 12 / 31} + 23h + 59min + 59s + 999ms + 900us),
            "1999-12-31T23:59:59.999Z");
}

TEST(LogFormat, TextLineIsTimestampLevelMessage) {
  EXPECT_EQ(format_log_line(LogFormat::text, false, t0, spdlog::level::info, "[a] sync enabled"),
            "2026-11-30T07:37:59.123Z info  [a] sync enabled\n");
  EXPECT_EQ(format_log_line(LogFormat::text, false, t0, spdlog::level::warn, "x"),
            "2026-11-30T07:37:59.123Z warning x\n");
}

TEST(LogFormat, TextLineEscapesEmbeddedNewlinesSoOneEventStaysOneLine) {
  EXPECT_EQ(format_log_line(LogFormat::text, false, t0, spdlog::level::err, "bad\nthing\r"),
            "2026-11-30T07:37:59.123Z error bad\\nthing\\r\n");
}

TEST(LogFormat, JournalLinesStartWithTheSyslogPriorityAndLeaveTheTimestampToJournald) {
  EXPECT_EQ(format_log_line(LogFormat::text, true, t0, spdlog::level::err, "[a] boom"), "<3>error [a] boom\n");
  EXPECT_EQ(format_log_line(LogFormat::text, true, t0, spdlog::level::critical, "x").substr(0, 3), "<2>");
  EXPECT_EQ(format_log_line(LogFormat::text, true, t0, spdlog::level::warn, "x").substr(0, 3), "<4>");
  EXPECT_EQ(format_log_line(LogFormat::text, true, t0, spdlog::level::info, "x").substr(0, 3), "<6>");
  EXPECT_EQ(format_log_line(LogFormat::text, true, t0, spdlog::level::debug, "x").substr(0, 3), "<7>");
  EXPECT_EQ(format_log_line(LogFormat::text, true, t0, spdlog::level::trace, "x").substr(0, 3), "<7>");
  // JSON for a shipper reading the journal: the prefix is journald's, the object follows.
  const auto line = format_log_line(LogFormat::json, true, t0, spdlog::level::warn, "[a] x");
  ASSERT_EQ(line.substr(0, 3), "<4>");
  EXPECT_EQ(parse_line(line.substr(3)).at("instance"), "a");
}

TEST(LogFormat, JsonLineCarriesTsLevelInstanceMessageStageAndCid) {
  const auto o = parse_line(format_log_line(
      LogFormat::json, false, t0, spdlog::level::warn,
      "[cons-1] consumer: cid=QmAbc123 quarantined at stage r1fs_download (failure 2): timeout"));
  EXPECT_EQ(o.at("ts"), "2026-11-30T07:37:59.123Z");
  EXPECT_EQ(o.at("level"), "warning");
  EXPECT_EQ(o.at("instance"), "cons-1");
  EXPECT_EQ(o.at("message"), "consumer: cid=QmAbc123 quarantined at stage r1fs_download (failure 2): timeout");
  EXPECT_EQ(o.at("stage"), "r1fs_download");
  EXPECT_EQ(o.at("cid"), "QmAbc123");
  EXPECT_EQ(o.size(), 6u);
}

TEST(LogFormat, JsonLineWithoutPrefixStageOrCidHasOnlyTheFieldsItHas) {
  const auto o = parse_line(format_log_line(LogFormat::json, false, t0, spdlog::level::info,
                                            "carsyncd ready: node=n instances=2"));
  EXPECT_EQ(o.at("message"), "carsyncd ready: node=n instances=2");
  EXPECT_FALSE(o.contains("instance"));
  EXPECT_FALSE(o.contains("stage"));
  EXPECT_FALSE(o.contains("cid"));
  EXPECT_EQ(o.size(), 3u);
}

TEST(LogFormat, JsonEscapesQuotesBackslashesControlCharactersAndInvalidUtf8) {
  const std::string payload = std::string("[a] path \"x\\y\"\n\ttab \x01 ") + "caf\xc3\xa9 bad:\xff\xc3 end";
  const auto line = format_log_line(LogFormat::json, false, t0, spdlog::level::info, payload);
  const auto o = parse_line(line);
  EXPECT_EQ(o.at("message"), "path \"x\\y\"\n\ttab \x01 caf\xc3\xa9 bad:\xef\xbf\xbd\xef\xbf\xbd end");
  EXPECT_NE(line.find("\\u0001"), std::string::npos) << line;
}

TEST(LogFormat, JsonReplacesOverlongAndSurrogateSequences) {
  std::string out;
  append_json_string(out, "\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xf0\x9f\x98\x80");
  EXPECT_EQ(out, "\"\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\\ufffd|\xf0\x9f\x98\x80\"");
}

TEST(LogFormat, InstancePrefixIsOnlyABracketedIdWithoutSpaces) {
  EXPECT_EQ(parse_log_message("[prov-a] sync enabled").instance, "prov-a");
  EXPECT_EQ(parse_log_message("[prov-a] sync enabled").message, "sync enabled");
  EXPECT_EQ(parse_log_message("[two words] x").instance, "");
  EXPECT_EQ(parse_log_message("[] x").instance, "");
  EXPECT_EQ(parse_log_message("[a]x").instance, "");
  EXPECT_EQ(parse_log_message("x [a] y").instance, "");
  EXPECT_EQ(parse_log_message("[a] ").message, "");
}

TEST(LogFormat, CidAndStageAreTakenAtWordBoundariesOnly) {
  EXPECT_EQ(parse_log_message("[a] retired previous cid=bafy2 (sent)").cid, "bafy2");
  EXPECT_EQ(parse_log_message("[a] published cid=Qm9, next").cid, "Qm9");
  EXPECT_EQ(parse_log_message("[a] oldcid=zz").cid, "");
  EXPECT_EQ(parse_log_message("[a] cid= nothing").cid, "");
  EXPECT_EQ(parse_log_message("[a] failed at stage=commit").stage, "commit");
  EXPECT_EQ(parse_log_message("[a] failed at stage chainstore_publish: x").stage, "chainstore_publish");
  EXPECT_EQ(parse_log_message("[a] backstage pass").stage, "");
}

TEST(LogFormat, JournalStreamMustNameStderrsDeviceAndInode) {
  EXPECT_TRUE(is_journal_stream("8:12345", 8, 12345));
  EXPECT_FALSE(is_journal_stream("8:12345", 8, 12346));
  EXPECT_FALSE(is_journal_stream("9:12345", 8, 12345));
  EXPECT_FALSE(is_journal_stream(nullptr, 8, 12345));
  EXPECT_FALSE(is_journal_stream("", 8, 12345));
  EXPECT_FALSE(is_journal_stream("8:", 8, 0));
  EXPECT_FALSE(is_journal_stream("8:12345x", 8, 12345));
  EXPECT_FALSE(is_journal_stream("garbage", 8, 12345));
}

TEST(LogFormat, StderrIsTheJournalOnlyWhenJournalStreamMatchesIt) {
  struct stat st{};
  ASSERT_EQ(::fstat(STDERR_FILENO, &st), 0);
  const std::string match = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  ::setenv("JOURNAL_STREAM", match.c_str(), 1);
  EXPECT_TRUE(stderr_is_journal());
  const std::string other = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
  ::setenv("JOURNAL_STREAM", other.c_str(), 1);
  EXPECT_FALSE(stderr_is_journal());
  ::unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(stderr_is_journal());
}

TEST(LogFormat, SinkWritesWholeLinesToItsDescriptor) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  auto sink = make_log_sink(fds[1], LogFormat::json, true);
  sink->log(spdlog::details::log_msg(t0, {}, "carsyncd", spdlog::level::err, "[a] cid=c1 failed"));
  sink->log(spdlog::details::log_msg(t0, {}, "carsyncd", spdlog::level::info, "second"));
  ::close(fds[1]);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  EXPECT_EQ(got,
            "<3>{\"ts\":\"2026-11-30T07:37:59.123Z\",\"level\":\"error\",\"instance\":\"a\",\"message\":\"cid=c1 "
            "failed\",\"cid\":\"c1\"}\n"
            "<6>{\"ts\":\"2026-11-30T07:37:59.123Z\",\"level\":\"info\",\"message\":\"second\"}\n");
}

}  // namespace
}  // namespace carsync::cmd
