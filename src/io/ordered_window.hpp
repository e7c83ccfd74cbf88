#pragma once
// The bounded, ordered window of the parallel compressors (parallel_gzip, chunked_compressor):
// the input is cut into jobs, each job is compressed on the compute pool independently of the
// others, and the results leave strictly in submission order. At most `window` jobs (input
// and output) are in flight, so memory is bounded whatever the stream's size.
//
// When the window is full the writing thread waits for the oldest job; if no pool thread is
// working on this stream (the pool is busy with other builds), it runs the oldest queued job
// itself, so a busy pool slows a build but cannot stall it. Without a pool every job runs on
// the writer's thread as it is submitted.
#include "core/error.hpp"

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>

namespace carsync::io {

class ComputePool;

class OrderedWindow {
 public:
  // One unit of work. run() is called once, on a pool thread or the writer's, and must keep
  // its results (or its error) in the job: the writer reads them only after run() returned.
  class Job {
   public:
    virtual ~Job() = default;
    virtual void run() noexcept = 0;

   private:
    friend class OrderedWindow;
    bool done_ = false;  // under the window's mutex
  };
  // Hands a finished job to the stream (in order); an error stops the draining.
  using Emit = std::function<Result<void>(Job&)>;

  // window: jobs in flight at most (at least 1).
  OrderedWindow(ComputePool* compute, std::size_t window);
  // Abandons: queued jobs are dropped; waits only for those running right now (one job's
  // work each), so no job of this stream runs once it is gone.
  ~OrderedWindow();
  OrderedWindow(const OrderedWindow&) = delete;
  OrderedWindow& operator=(const OrderedWindow&) = delete;

  // Queues `job` (or runs it now without a pool), then emits finished jobs in order until at
  // most `keep` are in flight (window - 1 keeps the window full; 0 drains everything).
  Result<void> submit(std::shared_ptr<Job> job, std::size_t keep, const Emit& emit);
  Result<void> drain(std::size_t keep, const Emit& emit);

  std::size_t window() const noexcept { return window_; }

  struct Shared;

 private:
  std::shared_ptr<Shared> shared_;
  ComputePool* compute_;
  std::size_t window_;
  std::deque<std::shared_ptr<Job>> in_flight_;  // oldest first
};

}  // namespace carsync::io
