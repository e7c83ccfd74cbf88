#pragma once
// `carsync watch`: follows GET /v1/events and redraws the WatchModel on a terminal, or prints
// one line per change when stdout is not one. Returns the exit code.
#include <string>

namespace carsync::cmd {

struct WatchOptions {
  std::string socket;
  bool json = false;  // print each event's data (the raw API JSON), one per line
  // After the stream ends (carsyncd restarting), how long to keep reconnecting before giving
  // up with exit 5; 0: give up at once. A watch that never connected gives up at once.
  double reconnect_for_s = 30;
};

int run_watch(const WatchOptions& options);

}  // namespace carsync::cmd
