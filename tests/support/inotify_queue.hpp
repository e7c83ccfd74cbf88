#pragma once
// fs.inotify.max_queued_events: how many events a test must queue to overflow an inotify
// queue (0 when unreadable).
#include <cstddef>
#include <fstream>

namespace carsync::test {

inline std::size_t max_queued_events() {
  std::ifstream in("/proc/sys/fs/inotify/max_queued_events");
  std::size_t n = 0;
  in >> n;
  return n;
}

}  // namespace carsync::test
