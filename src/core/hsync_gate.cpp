#include "core/hsync_gate.hpp"

#include <algorithm>

namespace carsync::core {

void HsyncGate::on_failure(double now) noexcept {
  const double retry = std::min(hsync_failure_retry_s, interval_);
  last_ = now - std::max(0.0, interval_ - retry);
}

}  // namespace carsync::core
