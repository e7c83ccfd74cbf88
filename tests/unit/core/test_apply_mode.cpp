// Local apply-mode resolution (spec §8.3).
#include "core/apply_mode.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace carsync::core {
namespace {

namespace json = boost::json;

TEST(ApplyMode, OfflineRestartResolvesToItselfWithoutReason) {
  const auto r = resolve_apply_mode("offline_restart");
  EXPECT_EQ(r, (ApplyModeResolution{"offline_restart", "offline_restart", std::nullopt}));
  EXPECT_EQ(r.to_json(), (json::object{{"requested_mode", "offline_restart"},
                                       {"effective_mode", "offline_restart"},
                                       {"reason", nullptr}}));
}

TEST(ApplyMode, N164_OnlineNoRestartIsForcedOffline) {
  const auto r = resolve_apply_mode("online_no_restart");
  EXPECT_EQ(r, (ApplyModeResolution{"online_no_restart", "offline_restart", "online_apply_disabled"}));
  EXPECT_EQ(r.to_json(), (json::object{{"requested_mode", "online_no_restart"},
                                       {"effective_mode", "offline_restart"},
                                       {"reason", "online_apply_disabled"}}));
}

TEST(ApplyMode, N165_OnlineRestartIsForcedOffline) {
  EXPECT_EQ(resolve_apply_mode("online_restart"),
            (ApplyModeResolution{"online_restart", "offline_restart", "online_apply_disabled"}));
}

TEST(ApplyMode, UnknownModeFallsBackToOfflineRestart) {
  EXPECT_EQ(resolve_apply_mode("whatever"), (ApplyModeResolution{"whatever", "offline_restart", "unknown_mode"}));
  EXPECT_EQ(resolve_apply_mode(""), (ApplyModeResolution{"", "offline_restart", "unknown_mode"}));
  // Matching is exact: no case folding or trimming.
  EXPECT_EQ(resolve_apply_mode("Offline_Restart").reason, "unknown_mode");
}

}  // namespace
}  // namespace carsync::core
