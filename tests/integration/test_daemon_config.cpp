// carsyncd start-up: a configuration file that cannot be used stops it with the reason.
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace carsync::test {
namespace {

struct RunResult {
  int exit_code;
  std::string output;
};

RunResult run(const std::string& cmd) {
  RunResult r{-1, {}};
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  while (auto n = std::fread(buf.data(), 1, buf.size(), p)) r.output.append(buf.data(), n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(DaemonConfig, UnparseableFileStopsStartupWithReason) {
  TempDir dir;
  write_file(dir / "node.json", "{not json");
  auto r = run(std::string(CARSYNCD_PATH) + " --config " + (dir / "node.json").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("node.json"), std::string::npos) << r.output;
}

TEST(DaemonConfig, MissingDataDirStopsStartupNamingTheField) {
  TempDir dir;
  write_file(dir / "node.json", R"({"instances": []})");
  auto r = run(std::string(CARSYNCD_PATH) + " --config " + (dir / "node.json").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("data_dir"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace carsync::test
