// The signature error category, over every value (after Beast's http/error tests).
#include "core/signature_error.hpp"

#include "core/error.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace carsync::core {
namespace {

constexpr int first = static_cast<int>(signature_errc::unsigned_record);
constexpr int last = static_cast<int>(signature_errc::equivocation);

TEST(SignatureErrorCategory, EveryValueHasItsOwnMessageAndLabel) {
  std::set<std::string> messages;
  std::set<std::string_view> labels;
  for (int v = first; v <= last; ++v) {
    const auto e = static_cast<signature_errc>(v);
    const boost::system::error_code ec = e;  // is_error_code_enum: implicit conversion
    EXPECT_STREQ(ec.category().name(), "carsync.signature");
    EXPECT_EQ(ec.category(), signature_category());
    EXPECT_EQ(ec.value(), v);
    EXPECT_TRUE(ec.failed());
    EXPECT_EQ(ec, make_error_code(e));
    EXPECT_EQ(ec, e);
    EXPECT_NE(ec, make_error_code(static_cast<signature_errc>(v == first ? last : v - 1)));
    const std::string text = ec.message();
    EXPECT_FALSE(text.empty()) << v;
    EXPECT_NE(text, "unknown signature error") << v;
    EXPECT_TRUE(messages.insert(text).second) << "two values share the message \"" << text << "\"";
    const auto label = to_string(e);
    EXPECT_FALSE(label.empty()) << v;
    EXPECT_NE(label, "unknown") << v;
    EXPECT_TRUE(labels.insert(label).second) << "two values share the label " << label;
  }
  EXPECT_EQ(messages.size(), 10u);
  EXPECT_EQ(make_error_code(static_cast<signature_errc>(last + 1)).message(), "unknown signature error");
  EXPECT_EQ(to_string(static_cast<signature_errc>(last + 1)), "unknown");
}

TEST(SignatureErrorCategory, LabelsAreTheMetricReasonsTheHeaderNames) {
  EXPECT_EQ(to_string(signature_errc::unsigned_record), "unsigned");
  EXPECT_EQ(to_string(signature_errc::malformed_signature), "malformed");
  EXPECT_EQ(to_string(signature_errc::unsupported_algorithm), "algorithm");
  EXPECT_EQ(to_string(signature_errc::unknown_key), "unknown_key");
  EXPECT_EQ(to_string(signature_errc::bad_signature), "bad_signature");
  EXPECT_EQ(to_string(signature_errc::wrong_sync_key), "wrong_sync_key");
  EXPECT_EQ(to_string(signature_errc::not_canonical), "not_canonical");
  EXPECT_EQ(to_string(signature_errc::missing_archive_hash), "missing_archive_hash");
  EXPECT_EQ(to_string(signature_errc::rollback), "rollback");
  EXPECT_EQ(to_string(signature_errc::equivocation), "equivocation");
}

TEST(SignatureErrorCategory, IsNotCarsyncsGeneralCategory) {
  const boost::system::error_code ec = signature_errc::unsigned_record;
  EXPECT_NE(ec, make_error_code(errc::invalid_request));  // same value 1, other category
}

}  // namespace
}  // namespace carsync::core
