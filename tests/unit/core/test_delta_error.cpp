// The delta error category, over every value (after Beast's http/error tests).
#include "core/delta_error.hpp"

#include "core/error.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace carsync::core {
namespace {

constexpr int first = static_cast<int>(delta_errc::malformed_field);
constexpr int last = static_cast<int>(delta_errc::archive_mismatch);

TEST(DeltaErrorCategory, EveryValueHasItsOwnMessageAndLabel) {
  std::set<std::string> messages;
  std::set<std::string_view> labels;
  for (int v = first; v <= last; ++v) {
    const auto e = static_cast<delta_errc>(v);
    const boost::system::error_code ec = e;  // is_error_code_enum: implicit conversion
    EXPECT_STREQ(ec.category().name(), "carsync.delta");
    EXPECT_EQ(ec.category(), delta_category());
    EXPECT_EQ(ec.value(), v);
    EXPECT_TRUE(ec.failed());
    EXPECT_EQ(ec, make_error_code(e));
    EXPECT_EQ(ec, e);
    EXPECT_NE(ec, make_error_code(static_cast<delta_errc>(v == first ? last : v - 1)));
    const std::string text = ec.message();
    EXPECT_FALSE(text.empty()) << v;
    EXPECT_NE(text, "unknown delta error") << v;
    EXPECT_TRUE(messages.insert(text).second) << "two values share the message \"" << text << "\"";
    const auto label = to_string(e);
    EXPECT_FALSE(label.empty()) << v;
    EXPECT_NE(label, "unknown") << v;
    EXPECT_TRUE(labels.insert(label).second) << "two values share the label " << label;
  }
  EXPECT_EQ(messages.size(), 9u);
  EXPECT_EQ(make_error_code(static_cast<delta_errc>(last + 1)).message(), "unknown delta error");
  EXPECT_EQ(to_string(static_cast<delta_errc>(last + 1)), "unknown");
}

TEST(DeltaErrorCategory, LabelsAreTheValuesNames) {
  EXPECT_EQ(to_string(delta_errc::malformed_field), "malformed_field");
  EXPECT_EQ(to_string(delta_errc::unsupported_format), "unsupported_format");
  EXPECT_EQ(to_string(delta_errc::malformed_index), "malformed_index");
  EXPECT_EQ(to_string(delta_errc::index_mismatch), "index_mismatch");
  EXPECT_EQ(to_string(delta_errc::pack_mismatch), "pack_mismatch");
  EXPECT_EQ(to_string(delta_errc::frame_mismatch), "frame_mismatch");
  EXPECT_EQ(to_string(delta_errc::frame_size_mismatch), "frame_size_mismatch");
  EXPECT_EQ(to_string(delta_errc::base_unusable), "base_unusable");
  EXPECT_EQ(to_string(delta_errc::archive_mismatch), "archive_mismatch");
}

TEST(DeltaErrorCategory, IsNotCarsyncsGeneralCategory) {
  const boost::system::error_code ec = delta_errc::malformed_field;
  EXPECT_NE(ec, make_error_code(errc::invalid_request));  // same value 1, other category
}

}  // namespace
}  // namespace carsync::core
