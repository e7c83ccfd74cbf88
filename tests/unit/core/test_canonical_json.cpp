// RFC 8785 canonical JSON (what record signatures cover) and the duplicate-key check.
#include "core/canonical_json.hpp"

#include "core/json_text.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

namespace carsync::core {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

std::string canon(const json::value& v) {
  auto r = canonical_json(v);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r ? *r : std::string();
}

std::string canon_text(std::string_view text) {
  auto v = parse_json(text);
  EXPECT_TRUE(v) << text;
  return v ? canon(*v) : std::string();
}

// RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript text.
struct NumberCase {
  std::uint64_t bits;
  const char* text;
};
constexpr NumberCase rfc8785_numbers[] = {
    {0x0000000000000000, "0"},
    {0x8000000000000000, "0"},  // -0
    {0x0000000000000001, "5e-324"},
    {0x8000000000000001, "-5e-324"},
    {0x7fefffffffffffff, "1.7976931348623157e+308"},
    {0xffefffffffffffff, "-1.7976931348623157e+308"},
    {0x4340000000000000, "9007199254740992"},
    {0xc340000000000000, "-9007199254740992"},
    {0x4430000000000000, "295147905179352830000"},
    {0x44b52d02c7e14af5, "9.999999999999997e+22"},
    {0x44b52d02c7e14af6, "1e+23"},
    {0x44b52d02c7e14af7, "1.0000000000000001e+23"},
    {0x444b1ae4d6e2ef4e, "999999999999999700000"},
    {0x444b1ae4d6e2ef4f, "999999999999999900000"},
    {0x444b1ae4d6e2ef50, "1e+21"},
    {0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
    {0x3eb0c6f7a0b5ed8d, "0.000001"},
    {0x41b3de4355555553, "333333333.3333332"},
    {0x41b3de4355555554, "333333333.33333325"},
    {0x41b3de4355555555, "333333333.3333333"},
    {0x41b3de4355555556, "333333333.3333334"},
    {0x41b3de4355555557, "333333333.33333343"},
    {0xbecbf647612f3696, "-0.0000033333333333333333"},
    {0x43143ff3c1cb0959, "1424953923781206.2"},
};

TEST(CanonicalJson, NumbersOfRfc8785AppendixB) {
  for (const auto& c : rfc8785_numbers)
    EXPECT_EQ(canon(json::value(std::bit_cast<double>(c.bits))), c.text) << std::hex << c.bits;
}

TEST(CanonicalJson, NumbersAroundTheExponentThresholds) {
  EXPECT_EQ(canon(1e21), "1e+21");
  EXPECT_EQ(canon(1e20), "100000000000000000000");
  EXPECT_EQ(canon(1.2345678901234568e20), "123456789012345680000");
  EXPECT_EQ(canon(1.2345678901234568e21), "1.2345678901234568e+21");
  EXPECT_EQ(canon(1e-7), "1e-7");
  EXPECT_EQ(canon(1.5e-7), "1.5e-7");
  EXPECT_EQ(canon(1e-6), "0.000001");
  EXPECT_EQ(canon(1.5e-6), "0.0000015");
  EXPECT_EQ(canon(-0.0), "0");
  EXPECT_EQ(canon(0.1), "0.1");
  EXPECT_EQ(canon(-1.5), "-1.5");
  EXPECT_EQ(canon(123.456), "123.456");
  EXPECT_EQ(canon(1e23), "1e+23");
  EXPECT_EQ(canon(1.7e9), "1700000000");
  EXPECT_EQ(canon(1700000000.5), "1700000000.5");
  EXPECT_EQ(canon(5e-324), "5e-324");
}

TEST(CanonicalJson, FloatTimestampSpellingsGiveOneText) {
  EXPECT_EQ(canon_text("1.7e9"), "1700000000");
  EXPECT_EQ(canon_text("1700000000.0"), "1700000000");
  EXPECT_EQ(canon_text("1700000000"), "1700000000");
  EXPECT_EQ(canon_text("17000000000E-1"), "1700000000");
  EXPECT_EQ(canon_text("1732980000.123456"), canon(1732980000.123456));
}

TEST(CanonicalJson, IntegersUpTo2Pow53AreExactBeyondRefusedNamingThePath) {
  constexpr std::int64_t two53 = std::int64_t{1} << 53;
  EXPECT_EQ(canon(json::value(two53)), "9007199254740992");
  EXPECT_EQ(canon(json::value(-two53)), "-9007199254740992");
  EXPECT_EQ(canon(json::value(std::uint64_t{1} << 53)), "9007199254740992");

  json::object rec{{"metadata", json::object{{"n", two53 + 1}}}};
  auto r = canonical_json(rec);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_record);
  EXPECT_THAT(r.error().message, HasSubstr("metadata.n"));
  EXPECT_THAT(r.error().message, HasSubstr("9007199254740993"));

  rec = {{"metadata", json::object{{"n", -two53 - 1}}}};
  EXPECT_FALSE(canonical_json(rec));
  rec = {{"metadata", json::object{{"n", std::numeric_limits<std::uint64_t>::max()}}}};
  EXPECT_FALSE(canonical_json(rec));
  rec = {{"metadata", json::object{{"n", std::numeric_limits<std::int64_t>::min()}}}};
  EXPECT_FALSE(canonical_json(rec));

  // Beyond 2^53, an integer whose double prints the same digits is the double's text.
  EXPECT_EQ(canon(json::value(std::int64_t{106479179934990340})), "106479179934990340");
  r = canonical_json(json::value(std::uint64_t{1} << 63));  // its double prints 9223372036854776000
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("9223372036854776000"));

  json::value paths = json::parse(R"({"manifest":{"archive_paths":["/a/","/b/",18014398509481985]}})");
  r = canonical_json(paths);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("manifest.archive_paths[2]"));
}

TEST(CanonicalJson, NanAndInfinitiesAreRefused) {
  for (double d : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                   -std::numeric_limits<double>::infinity()}) {
    auto r = canonical_json(json::object{{"timestamp", d}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::invalid_record);
    EXPECT_THAT(r.error().message, HasSubstr("timestamp"));
  }
  EXPECT_FALSE(canonical_json(json::value(std::numeric_limits<double>::quiet_NaN())));
}

TEST(CanonicalJson, Rfc8785Section322Example) {
  const std::string input = R"({
    "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
    "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
    "literals": [null, true, false]
  })";
  EXPECT_EQ(canon_text(input),
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
            "\"string\":\"\xE2\x82\xAC$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
}

TEST(CanonicalJson, StringsEscapeOnlyWhatMustBeEscaped) {
  EXPECT_EQ(canon(json::value("a\"b\\c")), R"("a\"b\\c")");
  EXPECT_EQ(canon(json::value("\b\f\n\r\t")), R"("\b\f\n\r\t")");
  EXPECT_EQ(canon(json::value(std::string("\x00\x01\x1f", 3))), R"("\u0000\u0001\u001f")");
  EXPECT_EQ(canon(json::value("/\x7f")), "\"/\x7f\"");  // no \/ and DEL is not a control here
  EXPECT_EQ(canon(json::value("\xC3\xB6\xE2\x82\xAC\xF0\x9F\x98\x80")), "\"\xC3\xB6\xE2\x82\xAC\xF0\x9F\x98\x80\"");
  // Built in code rather than parsed: invalid UTF-8 cannot be canonicalised.
  auto r = canonical_json(json::object{{"metadata", json::object{{"s", "\xff"}}}});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("metadata.s"));
}

TEST(CanonicalJson, KeysSortByUtf16CodeUnitsNotUtf8Bytes) {
  // RFC 8785 §3.2.3: U+1F600 is the surrogate pair D83D DE00, below U+FB33, although its
  // UTF-8 (F0 ...) sorts after U+FB33's (EF ...).
  const std::string input = R"({"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh",
    "1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"})";
  EXPECT_EQ(canon_text(input),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xC2\x80\":\"Control\","
            "\"\xC3\xB6\":\"Latin Small Letter O With Diaeresis\",\"\xE2\x82\xAC\":\"Euro Sign\","
            "\"\xF0\x9F\x98\x80\":\"Emoji: Grinning Face\",\"\xEF\xAC\xB3\":\"Hebrew Letter Dalet With Dagesh\"}");
  EXPECT_EQ(canon_text(R"({"\uffff":1,"\ud800\udc00":2,"\ue000":3})"),
            "{\"\xF0\x90\x80\x80\":2,\"\xEE\x80\x80\":3,\"\xEF\xBF\xBF\":1}");
  EXPECT_EQ(canon_text(R"({"b":1,"a":{"d":[],"c":{}},"":null,"aa":true})"),
            R"({"":null,"a":{"c":{},"d":[]},"aa":true,"b":1})");
}

TEST(CanonicalJson, WhitespaceKeyOrderAndEscapesDoNotChangeTheText) {
  const std::string a = R"({"cid":"Qm1","version":1,"metadata":{"k":"v\u00e9"},"timestamp":1700000000.25})";
  const std::string b = "{ \"timestamp\" : 1.70000000025e9 ,\n \"metadata\" : { \"\\u006b\" : \"\\u0076\xC3\xA9\" },"
                        "\t\"version\":1, \"c\\u0069d\":\"Qm1\" }";
  EXPECT_EQ(canon_text(a), canon_text(b));
  EXPECT_EQ(canon_text(a), "{\"cid\":\"Qm1\",\"metadata\":{\"k\":\"v\xC3\xA9\"},\"timestamp\":1700000000.25,\"version\":1}");
}

// A random JSON value: finite doubles of every magnitude, integers within 2^53, strings
// with controls, escapes and code points from every UTF-8 length.
json::value random_value(std::mt19937_64& rng, int depth) {
  const auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  const auto random_string = [&] {
    static constexpr char32_t samples[] = {0x00, 0x08, 0x1f, '"', '\\', '/', 'a', 'Z', 0x7f, 0x80, 0xff,
                                           0x7ff, 0x800, 0x20ac, 0xd7ff, 0xe000, 0xfb33, 0xffff, 0x10000,
                                           0x1f600, 0x10ffff};
    std::string s;
    for (int i = pick(6); i > 0; --i) {
      const char32_t cp = samples[pick(std::size(samples))];
      if (cp < 0x80) s += static_cast<char>(cp);
      else if (cp < 0x800) s += static_cast<char>(0xC0 | (cp >> 6)), s += static_cast<char>(0x80 | (cp & 0x3F));
      else if (cp < 0x10000)
        s += static_cast<char>(0xE0 | (cp >> 12)), s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
            s += static_cast<char>(0x80 | (cp & 0x3F));
      else
        s += static_cast<char>(0xF0 | (cp >> 18)), s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
            s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  };
  switch (depth > 3 ? pick(6) : pick(8)) {
    case 0: return nullptr;
    case 1: return pick(2) == 0;
    case 2: return static_cast<std::int64_t>(rng() % (std::uint64_t{1} << 54)) - (std::int64_t{1} << 53);
    case 3: {
      double d = 0;
      do d = std::bit_cast<double>(rng()); while (!std::isfinite(d));
      return d;
    }
    case 4: return std::ldexp(static_cast<double>(pick(1000000)), pick(80) - 40);
    case 5: return json::string(random_string());
    case 6: {
      json::array a;
      for (int i = pick(4); i > 0; --i) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      json::object o;
      for (int i = pick(5); i > 0; --i) o[random_string()] = random_value(rng, depth + 1);
      return o;
    }
  }
}

TEST(CanonicalJson, PropertyParsingTheCanonicalTextGivesItBack) {
  std::mt19937_64 rng(20261130);
  for (int i = 0; i < 3000; ++i) {
    const json::value v = random_value(rng, 0);
    const std::string text = canon(v);
    ASSERT_TRUE(check_unique_keys(text)) << text;
    auto again = parse_json(text);
    ASSERT_TRUE(again) << text;
    ASSERT_EQ(canon(*again), text) << "iteration " << i;
    // And after a store re-serialising it its own way (Python-like, ASCII-escaped, indented).
    auto reserialised = parse_json(to_reference_json(v));
    ASSERT_TRUE(reserialised);
    ASSERT_EQ(canon(*reserialised), text) << "iteration " << i;
  }
}

TEST(CheckUniqueKeys, NamesTheDuplicateAndTheObjectHoldingIt) {
  auto r = check_unique_keys(R"({"cid":"a","version":1,"cid":"b"})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_record);
  EXPECT_EQ(r.error().message, "duplicate key \"cid\" in $");

  r = check_unique_keys(R"({"cid":"a","manifest":{"archive_paths":[],"archive_paths":["/x/"]}})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "duplicate key \"archive_paths\" in $.manifest");

  r = check_unique_keys(R"({"a":[0,"1",[2],{"x":1,"y":{},"x":2}]})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "duplicate key \"x\" in $.a[3]");

  r = check_unique_keys(R"([{"k":1},{"k":1,"k":1}])");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "duplicate key \"k\" in $[1]");
}

TEST(CheckUniqueKeys, EscapedSpellingsOfOneKeyAreDuplicates) {
  auto r = check_unique_keys(R"({"cid":1,"c\u0069d":2})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "duplicate key \"cid\" in $");
  // A key that reaches the handler in parts (its escapes) is joined before the check.
  r = check_unique_keys(R"({"long\nkey\twith\u00e9escapes":1,"long\u000akey\u0009with\u00E9escapes":2})");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("in $"));
}

TEST(CheckUniqueKeys, SameKeyInDifferentObjectsIsFine) {
  EXPECT_TRUE(check_unique_keys(R"({"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}],"c":{"a":1,"b":2}})"));
  EXPECT_TRUE(check_unique_keys(R"({"k":{"x":1},"j":{"x":1}})"));
  EXPECT_TRUE(check_unique_keys("[]"));
  EXPECT_TRUE(check_unique_keys("1"));
}

TEST(CheckUniqueKeys, MalformedTextIsLeftToTheParser) {
  EXPECT_TRUE(check_unique_keys(R"({"a":1,)"));
  EXPECT_TRUE(check_unique_keys("not json"));
  EXPECT_TRUE(check_unique_keys(""));
}

TEST(CheckUniqueKeys, DeepDocumentsAreCheckedToTheParsersDepth) {
  std::string deep;
  for (int i = 0; i < 300; ++i) deep += R"({"a":)";
  deep += R"({"z":1,"z":2})";
  for (int i = 0; i < 300; ++i) deep += "}";
  auto r = check_unique_keys(deep);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("duplicate key \"z\" in $.a.a.a"));
  std::string too_deep(100000, '[');  // beyond any parser's depth: refused there, not here
  EXPECT_TRUE(check_unique_keys(too_deep));
}

}  // namespace
}  // namespace carsync::core
