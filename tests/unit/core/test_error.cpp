// carsync's error category, over every value (after Beast's http/error tests).
#include "core/error.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <set>
#include <string>

namespace carsync {
namespace {

constexpr int first = static_cast<int>(errc::invalid_request);
constexpr int last = static_cast<int>(errc::system_volume_unavailable);

TEST(ErrorCategory, EveryValueHasItsOwnMessageInTheCarsyncCategory) {
  std::set<std::string> seen;
  for (int v = first; v <= last; ++v) {
    const auto ec = make_error_code(static_cast<errc>(v));
    EXPECT_STREQ(ec.category().name(), "carsync");
    EXPECT_EQ(ec.value(), v);
    EXPECT_TRUE(ec.failed());
    const std::string text = ec.message();
    EXPECT_FALSE(text.empty()) << v;
    EXPECT_NE(text, "unknown carsync error") << v;
    EXPECT_TRUE(seen.insert(text).second) << "two values share the message \"" << text << "\"";
  }
  EXPECT_EQ(make_error_code(static_cast<errc>(last + 1)).message(), "unknown carsync error");
}

TEST(ErrorCategory, ErrorsCompareByCodeAndCarryTextAndField) {
  const Error e = make_error(errc::bad_config, "instance \"a\": SYNC.KEY must be a non-empty string", "SYNC.KEY");
  EXPECT_EQ(e.code, errc::bad_config);
  EXPECT_NE(e.code, errc::invalid_request);
  EXPECT_EQ(e.field, "SYNC.KEY");
  Result<int> r = e;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, e.message);
  const Error os = os_error(ENOENT, "open /x");
  EXPECT_EQ(os.code.category(), boost::system::system_category());
  EXPECT_EQ(os.message.rfind("open /x: ", 0), 0u);
}

}  // namespace
}  // namespace carsync
