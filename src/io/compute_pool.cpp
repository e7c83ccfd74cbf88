#include "io/compute_pool.hpp"

#include <algorithm>
#include <utility>

namespace carsync::io {

ComputePool::ComputePool(unsigned threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

ComputePool::~ComputePool() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void ComputePool::post(std::function<void()> job) {
  {
    std::lock_guard lk(mu_);
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void ComputePool::work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lk(mu_);
      wake_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
      // Stopping still drains: a queued job may own state its poster waits on.
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace carsync::io
