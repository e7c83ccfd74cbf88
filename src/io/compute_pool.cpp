#include "io/compute_pool.hpp"

#include "io/signal_blocker.hpp"

#include <sched.h>

#include <algorithm>
#include <utility>

namespace carsync::io {
namespace {

unsigned usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return static_cast<unsigned>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

ComputePool::ComputePool(unsigned threads) {
  if (threads == 0) threads = usable_cpus();
  threads_.reserve(threads);
  const SignalBlocker no_signals;  // the workers inherit it: signals stay with the application
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
