#pragma once
// `carsync watch`: follows GET /v1/events and redraws the WatchModel on a terminal, or prints
// one line per change when stdout is not one. Returns the exit code.
#include <string>

namespace carsync::cmd {

struct WatchOptions {
  std::string socket;
  bool json = false;  // print each event's data (the raw API JSON), one per line
};

int run_watch(const WatchOptions& options);

}  // namespace carsync::cmd
