#pragma once
// The threads of this process (/proc/self/task), for tests that assert a component leaves
// none behind.
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <thread>

namespace carsync::test {

inline std::size_t threads_now() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// The count to compare against later. One thread is started and joined first: a runtime
// that adds a helper on the first thread creation (ThreadSanitizer's background thread)
// has done so by then, so its helper is in the baseline, not counted as left behind.
inline std::size_t thread_baseline() {
  std::thread([] {}).join();
  return threads_now();
}

// A joined thread leaves the list a moment after join() returns: waits (bounded) for the
// count to come back to `expected`.
inline bool threads_settle_to(std::size_t expected,
                              std::chrono::steady_clock::duration limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (threads_now() != expected) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace carsync::test
