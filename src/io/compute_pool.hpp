#pragma once
// A node-wide pool of threads for CPU-only jobs (compressing a block, hashing a buffer): a job
// never blocks on I/O or waits for another job, so a fixed number of threads always drains the
// queue. Jobs run in the order posted (FIFO). Callers that must not depend on the pool being
// free (the archive writer) do the same work themselves while they wait, so a busy pool slows
// them but never stalls them.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace carsync::io {

class ComputePool {
 public:
  // 0: one thread per CPU this process may run on (its affinity mask, so a cpuset or taskset
  // is honoured; std::thread::hardware_concurrency() where that is unknown; at least 1).
  explicit ComputePool(unsigned threads);
  // Runs every job already queued, then joins the threads.
  ~ComputePool();
  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;

  unsigned size() const noexcept { return static_cast<unsigned>(threads_.size()); }
  // Queues `job`; returns at once. A job must not throw (it reports through its own state):
  // an escaping exception terminates the process, as from any std::thread.
  void post(std::function<void()> job);

 private:
  void work();

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace carsync::io
