#pragma once
// A test device that holds every thread of a compute pool, for tests of the parallel
// compressors (parallel_gzip, chunked_compressor) with a pool that takes no job.
#include "io/compute_pool.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace carsync::test {

// Holds every thread of a pool until opened (a test device: real jobs never wait). If the
// code under test deadlocks, a watchdog opens it after a deadline and says so.
class PoolBlocker {
 public:
  explicit PoolBlocker(io::ComputePool& pool) : threads_(pool.size()) {
    for (unsigned i = 0; i < threads_; ++i)
      pool.post([this] {
        std::unique_lock lk(mu_);
        ++blocked_;
        cv_.notify_all();
        cv_.wait(lk, [&] { return open_; });
      });
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return blocked_ == threads_; });
    watchdog_ = std::thread([this] {
      std::unique_lock lk(mu_);
      if (!cv_.wait_for(lk, std::chrono::seconds(60), [&] { return open_; })) {
        timed_out_ = true;
        open_ = true;
        cv_.notify_all();
      }
    });
  }
  ~PoolBlocker() {
    open();
    watchdog_.join();
  }
  void open() {
    std::lock_guard lk(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool timed_out() {
    std::lock_guard lk(mu_);
    return timed_out_;
  }

 private:
  const unsigned threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  unsigned blocked_ = 0;
  bool open_ = false;
  bool timed_out_ = false;
  std::thread watchdog_;
};

}  // namespace carsync::test
