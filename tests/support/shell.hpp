#pragma once
// Shell commands from tests: quoting, and a run that captures stdout and the exit code
// (stderr goes where the command line sends it).
#include <sys/wait.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

namespace carsync::test {

struct ShellRun {
  int exit_code = -1;  // -1: killed by a signal
  std::string out;
};

// One argument for /bin/sh, whatever it holds.
inline std::string shell_quote(std::string_view s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline ShellRun shell(const std::string& cmd) {
  ShellRun r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + cmd);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) r.out.append(buf, n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace carsync::test
