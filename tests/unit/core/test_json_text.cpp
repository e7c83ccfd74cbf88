#include "core/json_text.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <random>
#include <limits>

namespace carsync::core {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

TEST(JsonText, ReferenceFormatSortsKeysAndIndentsByTwo) {
  const json::value v = {{"b", json::array{1, 2}}, {"a", json::object{{"z", nullptr}, {"y", true}}}};
  EXPECT_EQ(to_reference_json(v),
            "{\n"
            "  \"a\": {\n"
            "    \"y\": true,\n"
            "    \"z\": null\n"
            "  },\n"
            "  \"b\": [\n"
            "    1,\n"
            "    2\n"
            "  ]\n"
            "}");
}

TEST(JsonText, EmptyContainersStayOnOneLine) {
  const json::value v = {{"a", json::object{}}, {"b", json::array{}}};
  EXPECT_EQ(to_reference_json(v), "{\n  \"a\": {},\n  \"b\": []\n}");
  EXPECT_EQ(to_reference_json(json::object{}), "{}");
  EXPECT_EQ(to_reference_json(json::array{}), "[]");
}

TEST(JsonText, NonAsciiIsEscapedWithSurrogatePairs) {
  // é (U+00E9), € (U+20AC), 😀 (U+1F600)
  const json::value v = json::string("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  EXPECT_EQ(to_reference_json(v), R"("\u00e9\u20ac\ud83d\ude00")");
}

TEST(JsonText, ControlCharactersUsePythonEscapes) {
  const json::value v = json::string(std::string("q\"b\\n\n\t\r\b\f\x01\x7f", 12));
  EXPECT_EQ(to_canonical_json(v), R"("q\"b\\n\n\t\r\b\f\u0001\u007f")");
}

TEST(JsonText, DoublesLookLikePythonFloats) {
  EXPECT_EQ(to_canonical_json(1.0), "1.0");
  EXPECT_EQ(to_canonical_json(-0.0), "-0.0");
  EXPECT_EQ(to_canonical_json(1714742401.73), "1714742401.73");
  EXPECT_EQ(to_canonical_json(0.1), "0.1");
  EXPECT_EQ(to_canonical_json(0.0001), "0.0001");
  EXPECT_EQ(to_canonical_json(0.00001), "1e-05");
  EXPECT_EQ(to_canonical_json(1e15), "1000000000000000.0");
  EXPECT_EQ(to_canonical_json(1e16), "1e+16");
  EXPECT_EQ(to_canonical_json(1.5e300), "1.5e+300");
  EXPECT_EQ(to_canonical_json(123.456), "123.456");
}

TEST(JsonText, DoublesRoundTrip) {
  for (double d : {0.1 + 0.2, 1.0 / 3.0, 6.02214076e23, 5e-324, 1.7976931348623157e308}) {
    auto parsed = parse_json(to_canonical_json(d));
    ASSERT_TRUE(parsed);
    ASSERT_TRUE(parsed->is_double());
    EXPECT_EQ(parsed->get_double(), d);
  }
}

TEST(JsonText, IntegersStayIntegers) {
  EXPECT_EQ(to_canonical_json(json::value(std::int64_t{-42})), "-42");
  EXPECT_EQ(to_canonical_json(json::value(std::uint64_t{18446744073709551615ull})), "18446744073709551615");
}

TEST(JsonText, CanonicalIsCompactAndSorted) {
  const json::value v = {{"manifest", json::object{{"b", 1}, {"a", "x"}}}, {"cid", "Qm"}};
  EXPECT_EQ(to_canonical_json(v), R"({"cid":"Qm","manifest":{"a":"x","b":1}})");
}

TEST(JsonText, ReferenceOutputParsesBackToTheSameValue) {
  const json::value v = {{"k", json::array{1, 2.5, "s\xC3\xA9", nullptr, json::object{{"n", false}}}}};
  auto parsed = parse_json(to_reference_json(v));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, v);
}

TEST(JsonText, CheckUtf8AcceptsValidText) {
  EXPECT_TRUE(check_utf8(""));
  EXPECT_TRUE(check_utf8("plain"));
  EXPECT_TRUE(check_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF"));
}

TEST(JsonText, CheckUtf8RejectsMalformedSequences) {
  for (std::string_view bad : {
           std::string_view("\xFF"),              // never valid
           std::string_view("\xC0\xAF"),          // overlong '/'
           std::string_view("\xE0\x80\xAF"),      // overlong
           std::string_view("\xED\xA0\x80"),      // surrogate U+D800
           std::string_view("\xF4\x90\x80\x80"),  // above U+10FFFF
           std::string_view("\xC3"),              // truncated
           std::string_view("\x80"),              // lone continuation
       }) {
    EXPECT_FALSE(check_utf8(bad)) << testing::PrintToString(bad);
  }
}

TEST(JsonText, CheckUtf8NamesTheOffendingByteAndPosition) {
  auto r = check_utf8("ok\xFF");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("0xff"));
  EXPECT_THAT(r.error().message, HasSubstr("position 2"));
}

TEST(JsonText, ParseErrorsCarryParserDetail) {
  auto r = parse_json("not-json{");
  ASSERT_FALSE(r);
  EXPECT_FALSE(r.error().message.empty());
  EXPECT_FALSE(parse_json("{\"a\": 1,}"));
  EXPECT_FALSE(parse_json("{} extra"));
  EXPECT_FALSE(parse_json("\xEF\xBB\xBF{}"));  // a BOM is not JSON
  EXPECT_FALSE(parse_json(""));
}

TEST(JsonText, DuplicateKeysKeepTheLast) {
  auto r = parse_json(R"({"a": 1, "a": 2})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->at("a"), 2);
}

TEST(JsonText, DoublesAreCorrectlyRoundedFromTheirText) {
  // Boost.JSON 1.81's own parser gives 0x41b3de4355555554 for the RFC 8785 spelling.
  auto r = parse_json("[333333333.33333329, 1.3927926388013963e-143, 5.409760742964738e+124, 1e999, 1e-999, -0.0]");
  ASSERT_TRUE(r);
  const auto& a = r->get_array();
  EXPECT_EQ(std::bit_cast<std::uint64_t>(a[0].get_double()), 0x41b3de4355555555u);
  EXPECT_EQ(a[1].get_double(), 1.3927926388013963e-143);
  EXPECT_EQ(a[2].get_double(), 5.409760742964738e+124);
  EXPECT_EQ(a[3].get_double(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(a[4].get_double(), 0.0);
  EXPECT_TRUE(std::signbit(a[5].get_double()));
  // Every shortest spelling parses back to its double (~10% did not before).
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    const double d = std::bit_cast<double>(rng());
    if (!std::isfinite(d)) continue;
    std::array<char, 64> buf{};
    const auto end = std::to_chars(buf.data(), buf.data() + buf.size(), d).ptr;
    auto v = parse_json(std::string_view(buf.data(), static_cast<std::size_t>(end - buf.data())));
    ASSERT_TRUE(v);
    ASSERT_EQ(v->to_number<double>(), d) << buf.data();
  }
  // Integers stay integers; nesting, strings and keys are built as before.
  auto doc = parse_json(R"({"i":-3,"u":18446744073709551615,"s":"x\u00e9","a":[{"k":[true,null]}]})");
  ASSERT_TRUE(doc);
  EXPECT_EQ(*doc, json::parse(R"({"i":-3,"u":18446744073709551615,"s":"x\u00e9","a":[{"k":[true,null]}]})"));
  EXPECT_TRUE(doc->at("i").is_int64());
  EXPECT_TRUE(doc->at("u").is_uint64());
}

TEST(JsonText, PythonDialectRefusesDuplicateKeys) {
  auto r = parse_json_python(R"({"cid": "a", "manifest": {"x": NaN, "x": 1}})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_record);
  EXPECT_EQ(r.error().message, "duplicate key \"x\" in $.manifest");
  EXPECT_EQ(parse_json_python(R"({"a": 1,)").error().code, errc::invalid_request);
  r = parse_json_python(R"({"cid": "a", "cid": "b"})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "duplicate key \"cid\" in $");
  EXPECT_TRUE(parse_json_python(R"({"cid": "a", "m": {"cid": "b"}, "t": NaN})"));
}

TEST(JsonText, FirstCodePointsCountsCharactersNotBytes) {
  EXPECT_EQ(first_code_points("abc", 2), "ab");
  EXPECT_EQ(first_code_points("abc", 5), "abc");
  EXPECT_EQ(first_code_points("\xC3\xA9\xC3\xA9x", 2), "\xC3\xA9\xC3\xA9");
  EXPECT_EQ(first_code_points("\xF0\x9F\x98\x80z", 1), "\xF0\x9F\x98\x80");
  EXPECT_EQ(first_code_points("abc", 0), "");
}

TEST(JsonText, TruthyFollowsPython) {
  for (const json::value& falsy : {json::value(nullptr), json::value(false), json::value(0), json::value(0.0),
                                   json::value(""), json::value(json::array{}), json::value(json::object{})}) {
    EXPECT_FALSE(truthy(falsy)) << falsy;
  }
  for (const json::value& t : {json::value(true), json::value(-1), json::value(0.5), json::value("0"),
                               json::value(json::array{0}), json::value(json::object{{"a", nullptr}})}) {
    EXPECT_TRUE(truthy(t)) << t;
  }
}

}  // namespace
}  // namespace carsync::core

namespace carsync::core {
namespace {

TEST(JsonTextWithin, SameTextWithinTheLimitNothingBeyondIt) {
  const auto v = json::parse(R"({"b": [1, {"c": "x"}], "a": null})");
  const auto full = to_reference_json(v);
  EXPECT_EQ(to_reference_json_within(v, full.size()), full);
  EXPECT_EQ(to_reference_json_within(v, full.size() - 1), std::nullopt);
  // Deep nesting with a wide array grows to gigabytes indented: it stops near the limit.
  json::value deep = json::array(100'000, json::value(0));
  for (int i = 0; i < 400; ++i) deep = json::array{std::move(deep)};
  EXPECT_EQ(to_reference_json_within(deep, 1024 * 1024), std::nullopt);
}

// A reference provider (Python's json module) writes non-finite floats as bare tokens.
TEST(JsonTextPython, ReadsNanAndInfinityTokensOutsideStrings) {
  auto v = parse_json_python(R"({"a": NaN, "b": [Infinity, -Infinity, 1.5], "s": "NaN Infinity \" NaN", "NaN": 2})");
  ASSERT_TRUE(v) << v.error().message;
  const auto& o = v->as_object();
  EXPECT_TRUE(std::isnan(o.at("a").as_double()));
  EXPECT_EQ(o.at("b").as_array()[0].as_double(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(o.at("b").as_array()[1].as_double(), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(o.at("b").as_array()[2].as_double(), 1.5);
  EXPECT_EQ(o.at("s").as_string(), "NaN Infinity \" NaN");
  EXPECT_EQ(o.at("NaN").as_int64(), 2);
  // What carsync writes back for them stays readable by any strict reader.
  EXPECT_TRUE(parse_json(to_reference_json(*v)));
}

TEST(JsonTextPython, StrictJsonReadsTheSameAsTheStrictParser) {
  const std::string text = R"({"cid": "Qm", "version": 3, "x": [1e3, -0.5, null, true]})";
  EXPECT_EQ(*parse_json_python(text), *parse_json(text));
}

TEST(JsonTextPython, RefusesWhatIsNotATokenAndAStringLookingLikeTheMarker) {
  for (const char* bad : {"[NaNa]", "[Infinityx]", "[nan]", "[-NaN]", "[Inf]", "{\"a\": NaN"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(parse_json_python(bad));
  }
  auto marker = parse_json_python(R"(["\u0000carsync:NaN", NaN])");
  ASSERT_FALSE(marker);
  EXPECT_THAT(marker.error().message, ::testing::HasSubstr("NaN marker"));
  // Without any NaN token, such a string is just a string.
  auto plain = parse_json_python(R"(["\u0000carsync:NaN"])");
  ASSERT_TRUE(plain);
  EXPECT_TRUE(plain->as_array()[0].is_string());
}

}  // namespace
}  // namespace carsync::core
