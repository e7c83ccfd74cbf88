#include "io/ordered_window.hpp"

#include "io/compute_pool.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <utility>

namespace carsync::io {

// What the writer and the pool's jobs share. Pool jobs hold it by shared_ptr, so a pool job
// that starts after the writer is gone finds the queue empty and returns.
struct OrderedWindow::Shared {
  std::mutex mu;
  std::condition_variable changed;  // a job is done, or a run ended
  std::deque<std::shared_ptr<Job>> queued;  // not yet started, oldest first
  unsigned running = 0;

  // A pool job: runs the oldest queued job, if any is left.
  void run_one() {
    std::shared_ptr<Job> j;
    {
      std::lock_guard lk(mu);
      if (queued.empty()) return;  // the writer took it, or abandoned the stream
      j = std::move(queued.front());
      queued.pop_front();
      ++running;
    }
    run(*j);
  }

  // Runs a job taken from the queue (running already counts it).
  void run(Job& j) {
    j.run();
    {
      std::lock_guard lk(mu);
      j.done_ = true;
      --running;
    }
    changed.notify_all();
  }
};

OrderedWindow::OrderedWindow(ComputePool* compute, std::size_t window)
    : shared_(std::make_shared<Shared>()), compute_(compute), window_(std::max<std::size_t>(window, 1)) {}

OrderedWindow::~OrderedWindow() {
  std::unique_lock lk(shared_->mu);
  shared_->queued.clear();
  shared_->changed.wait(lk, [&] { return shared_->running == 0; });
}

Result<void> OrderedWindow::submit(std::shared_ptr<Job> job, std::size_t keep, const Emit& emit) {
  in_flight_.push_back(job);
  if (compute_) {
    {
      std::lock_guard lk(shared_->mu);
      shared_->queued.push_back(std::move(job));
    }
    compute_->post([s = shared_] { s->run_one(); });
  } else {
    {
      std::lock_guard lk(shared_->mu);
      ++shared_->running;
    }
    shared_->run(*job);
  }
  return drain(keep, emit);
}

Result<void> OrderedWindow::drain(std::size_t keep, const Emit& emit) {
  for (;;) {
    while (!in_flight_.empty()) {
      {
        std::lock_guard lk(shared_->mu);
        if (!in_flight_.front()->done_) break;
      }
      if (auto r = emit(*in_flight_.front()); !r) return r;
      in_flight_.pop_front();
    }
    if (in_flight_.size() <= keep) return {};
    // The window is full: wait for the oldest job. While pool threads work on this stream
    // one of them ends soon (and takes the oldest next, the queue being FIFO); the writer
    // only waits, so it refills the window at once and the pool never runs dry (helping
    // then would leave the pool idle while the writer compresses, as measured). When no pool
    // thread works on this stream (the pool is busy with other builds, or has no thread
    // free), the writer runs the oldest job itself: a build never depends on the pool.
    std::shared_ptr<Job> help;
    {
      std::unique_lock lk(shared_->mu);
      const auto& oldest = in_flight_.front();
      // Not done and nothing running: the oldest is still queued (at the front).
      shared_->changed.wait(lk, [&] { return oldest->done_ || shared_->running == 0; });
      if (!oldest->done_) {
        help = std::move(shared_->queued.front());
        shared_->queued.pop_front();
        ++shared_->running;
      }
    }
    if (help) shared_->run(*help);
  }
}

}  // namespace carsync::io
