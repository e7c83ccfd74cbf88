// carsyncd start-up: a configuration file that cannot be used stops it with the reason.
#include "support/shell.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <string>

namespace carsync::test {
namespace {

// The command's stdout and stderr together.
ShellRun run(const std::string& cmd) { return shell(cmd + " 2>&1"); }

TEST(DaemonConfig, UnparseableFileStopsStartupWithReason) {
  TempDir dir;
  write_file(dir / "node.json", "{not json");
  auto r = run(std::string(CARSYNCD_PATH) + " --config " + (dir / "node.json").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("node.json"), std::string::npos) << r.out;
}

TEST(DaemonConfig, MissingDataDirStopsStartupNamingTheField) {
  TempDir dir;
  write_file(dir / "node.json", R"({"instances": []})");
  auto r = run(std::string(CARSYNCD_PATH) + " --config " + (dir / "node.json").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("data_dir"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace carsync::test
