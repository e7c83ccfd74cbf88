#pragma once
// What one event-stream client has not been sent yet. Every event is kept, in generation
// order, while the client keeps up; past `bound` pending events only the newest per
// instance is kept (the client may skip phases but always ends on the current state), so a
// stalled reader costs bounded memory and never slows the node.
#include "carsync/status.hpp"

#include <algorithm>
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace carsync::runtime {

class EventQueue {
 public:
  explicit EventQueue(std::size_t bound) : bound_(bound) {}

  void push(const StatusEvent& e) {
    pending_.push_back(e);
    if (pending_.size() > bound_) coalesce();
  }
  // Everything pending, in generation order; the queue is empty afterwards.
  std::vector<StatusEvent> take() { return std::exchange(pending_, {}); }
  bool empty() const noexcept { return pending_.empty(); }
  std::size_t size() const noexcept { return pending_.size(); }

 private:
  void coalesce() {
    std::map<std::string, StatusEvent> newest;
    for (auto& p : pending_) {
      auto& slot = newest[p.instance.id];
      if (slot.generation <= p.generation) slot = std::move(p);
    }
    pending_.clear();
    for (auto& entry : newest) pending_.push_back(std::move(entry.second));
    std::sort(pending_.begin(), pending_.end(),
              [](const StatusEvent& a, const StatusEvent& b) { return a.generation < b.generation; });
  }

  std::size_t bound_;
  std::vector<StatusEvent> pending_;  // in generation order
};

}  // namespace carsync::runtime
