#pragma once
// What a carsync node exposes to Prometheus (prefix `carsync_`): the events the lifecycles
// report as they happen (claims, publishes, applies, failures by stage, bytes, durations),
// plus, at render time, the gauges a NodeStatus already holds (instances by phase,
// quarantined, halted, last success per instance) and the build. Thread-safe: the
// lifecycles report on the node's executor, Node::metrics_text() renders from any thread.
// The series and their meaning are listed in README.md ("Metrics").
#include "carsync/status.hpp"
#include "runtime/metrics.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace carsync::runtime {

class NodeMetrics {
 public:
  NodeMetrics();

  // An instance joined: its role's series exist from now on, at zero.
  void add_instance(std::string_view id, Role role);
  // An instance left the node: every series labelled with it goes away.
  void remove_instance(std::string_view id);

  // Provider. A claim of request.json or an API publish; `reaction_s`: from request.json's
  // modification time to its claim (file claims only).
  void claimed(std::string_view id);
  void reaction_latency(std::string_view id, double seconds);
  void published(std::string_view id, double claim_to_response_s);
  void archived(std::string_view id, std::uint64_t bytes);
  void uploaded(std::string_view id, std::uint64_t bytes);

  // Consumer.
  void downloaded(std::string_view id, std::uint64_t bytes);
  void applied_bytes(std::string_view id, std::uint64_t bytes);
  void applied(std::string_view id, double fetch_to_applied_s);
  // A snapshot fetched (README "Delta transfer"): `mode` "delta" (index and packs) or "full"
  // (the archive, and the index when the record has one); `archive_bytes`: the archive's
  // size, so a delta counts what it saved. `fallback`: why a record with a delta was fetched
  // in full (core::to_string(FullReason) or delta_errc), empty when it was not.
  void fetched(std::string_view id, std::string_view mode, std::uint64_t fetched_bytes, std::uint64_t archive_bytes,
               std::string_view fallback);

  // A consumer's poll of ChainStore that failed: `op` "hget" (its record) or "hsync". Nothing
  // else counts these: the consumer keeps its snapshot and tries again at the next poll.
  void store_poll_failed(std::string_view id, std::string_view op);

  // A request or apply that failed (not a cancellation), by the stage it failed at.
  void failed(std::string_view id, Stage stage);
  // Consumer with trusted keys: a record whose signature did not verify (refused, or applied
  // under policy warn), by core::to_string(signature_errc) ("bad_signature", "rollback", ...).
  void signature_failed(std::string_view id, std::string_view reason);

  // The live series plus those computed from `status`, in the text format 0.0.4.
  std::string render(const NodeStatus& status) const;

  const metrics::Registry& registry() const noexcept { return registry_; }

 private:
  metrics::Registry registry_;
};

}  // namespace carsync::runtime
