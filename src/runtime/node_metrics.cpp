#include "runtime/node_metrics.hpp"

#ifndef CARSYNC_VERSION
#define CARSYNC_VERSION "unknown"
#endif

namespace carsync::runtime {

namespace {

using metrics::Labels;
using metrics::Type;

constexpr std::string_view claims = "carsync_claims_total";
constexpr std::string_view publishes = "carsync_publishes_total";
constexpr std::string_view applies = "carsync_applies_total";
constexpr std::string_view failures = "carsync_failures_total";
constexpr std::string_view signature_failures = "carsync_signature_failures_total";
constexpr std::string_view reaction = "carsync_reaction_latency_seconds";
constexpr std::string_view publish_duration = "carsync_publish_duration_seconds";
constexpr std::string_view apply_duration = "carsync_apply_duration_seconds";
constexpr std::string_view archived_bytes = "carsync_archived_bytes_total";
constexpr std::string_view uploaded_bytes = "carsync_uploaded_bytes_total";
constexpr std::string_view downloaded_bytes = "carsync_downloaded_bytes_total";
constexpr std::string_view applied_bytes_total = "carsync_applied_bytes_total";
constexpr std::string_view fetched_bytes = "carsync_fetched_bytes_total";
constexpr std::string_view delta_saved = "carsync_delta_saved_bytes_total";
constexpr std::string_view delta_fallbacks = "carsync_delta_fallbacks_total";
constexpr std::string_view poll_failures = "carsync_store_poll_failures_total";
constexpr std::string_view instances = "carsync_instances";
constexpr std::string_view quarantined = "carsync_instances_quarantined";
constexpr std::string_view halted = "carsync_instances_halted";
constexpr std::string_view last_success = "carsync_last_success_timestamp_seconds";
constexpr std::string_view build_info = "carsync_build_info";

Labels of(std::string_view id) { return Labels{{"instance", std::string(id)}}; }

}  // namespace

NodeMetrics::NodeMetrics() {
  auto& r = registry_;
  r.declare(std::string(claims), Type::counter, "Requests a provider claimed (request.json or an API publish).");
  r.declare(std::string(publishes), Type::counter, "Snapshots a provider published.");
  r.declare(std::string(applies), Type::counter, "Snapshots a consumer applied.");
  r.declare(std::string(failures), Type::counter,
            "Requests and applies that failed (cancellations excluded), by the stage they failed at.");
  // Inotify makes a claim take milliseconds; the periodic rescan (when events are lost)
  // takes up to its interval, hence the long tail.
  r.declare(std::string(signature_failures), Type::counter,
            "Records whose signature did not verify on a consumer with trusted keys (refused under policy enforce, "
            "applied under warn), by reason.");
  r.declare(std::string(reaction), Type::histogram,
            "Seconds from request.json's modification time to its claim by the provider.",
            {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300});
  const std::vector<double> long_steps{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
  r.declare(std::string(publish_duration), Type::histogram,
            "Seconds from the claim of a request to its response, for successful publishes.", long_steps);
  r.declare(std::string(apply_duration), Type::histogram,
            "Seconds from the fetch of a record to its snapshot applied, for successful applies.", long_steps);
  r.declare(std::string(archived_bytes), Type::counter, "Bytes of archives a provider built.");
  r.declare(std::string(uploaded_bytes), Type::counter, "Bytes of archives a provider uploaded to the content store.");
  r.declare(std::string(downloaded_bytes), Type::counter, "Bytes of archives a consumer downloaded.");
  r.declare(std::string(applied_bytes_total), Type::counter, "Bytes of file content a consumer applied to its volumes.");
  r.declare(std::string(fetched_bytes), Type::counter,
            "Bytes a consumer fetched for snapshots, by transfer mode (delta: index and packs; full: the archive).");
  r.declare(std::string(delta_saved), Type::counter,
            "Archive bytes a consumer did not fetch because it reassembled the archive from its base and packs.");
  r.declare(std::string(delta_fallbacks), Type::counter,
            "Records with a delta that a consumer fetched in full, by reason.");
  r.declare(std::string(poll_failures), Type::counter,
            "A consumer's reads of its record from ChainStore that failed (the next poll tries again), by "
            "operation (hget, hsync).");
  r.declare(std::string(instances), Type::gauge, "Instances by the phase they are in.");
  r.declare(std::string(quarantined), Type::gauge, "Consumers whose current record is quarantined (backing off).");
  r.declare(std::string(halted), Type::gauge, "Consumers halted after an uncertain apply, waiting for unhalt.");
  r.declare(std::string(last_success), Type::gauge,
            "When the instance last published (provider) or applied (consumer) a snapshot, seconds since the epoch.");
  r.declare(std::string(build_info), Type::gauge, "The carsync build serving these metrics (always 1).");
}

void NodeMetrics::add_instance(std::string_view id, Role role) {
  const auto l = of(id);
  if (role == Role::provider) {
    for (auto name : {claims, publishes, reaction, publish_duration, archived_bytes, uploaded_bytes})
      registry_.touch(name, l);
  } else if (role == Role::consumer) {
    for (auto name : {applies, apply_duration, downloaded_bytes, applied_bytes_total, delta_saved}) registry_.touch(name, l);
  }
}

void NodeMetrics::remove_instance(std::string_view id) { registry_.erase("instance", id); }

void NodeMetrics::claimed(std::string_view id) { registry_.inc(claims, of(id)); }

void NodeMetrics::reaction_latency(std::string_view id, double seconds) {
  // A request written by a host whose clock is ahead, or an mtime set by hand: not below 0.
  registry_.observe(reaction, of(id), seconds < 0 ? 0 : seconds);
}

void NodeMetrics::published(std::string_view id, double claim_to_response_s) {
  registry_.inc(publishes, of(id));
  registry_.observe(publish_duration, of(id), claim_to_response_s);
}

void NodeMetrics::archived(std::string_view id, std::uint64_t bytes) {
  registry_.inc(archived_bytes, of(id), static_cast<double>(bytes));
}

void NodeMetrics::uploaded(std::string_view id, std::uint64_t bytes) {
  registry_.inc(uploaded_bytes, of(id), static_cast<double>(bytes));
}

void NodeMetrics::downloaded(std::string_view id, std::uint64_t bytes) {
  registry_.inc(downloaded_bytes, of(id), static_cast<double>(bytes));
}

void NodeMetrics::applied_bytes(std::string_view id, std::uint64_t bytes) {
  registry_.inc(applied_bytes_total, of(id), static_cast<double>(bytes));
}

void NodeMetrics::applied(std::string_view id, double fetch_to_applied_s) {
  registry_.inc(applies, of(id));
  registry_.observe(apply_duration, of(id), fetch_to_applied_s);
}

void NodeMetrics::fetched(std::string_view id, std::string_view mode, std::uint64_t fetched, std::uint64_t archive_bytes,
                          std::string_view fallback) {
  registry_.inc(fetched_bytes, Labels{{"instance", std::string(id)}, {"mode", std::string(mode)}},
                static_cast<double>(fetched));
  if (mode == "delta" && archive_bytes > fetched)
    registry_.inc(delta_saved, of(id), static_cast<double>(archive_bytes - fetched));
  if (!fallback.empty())
    registry_.inc(delta_fallbacks, Labels{{"instance", std::string(id)}, {"reason", std::string(fallback)}});
}

void NodeMetrics::failed(std::string_view id, Stage stage) {
  registry_.inc(failures, Labels{{"instance", std::string(id)}, {"stage", std::string(to_string(stage))}});
}

void NodeMetrics::store_poll_failed(std::string_view id, std::string_view op) {
  registry_.inc(poll_failures, Labels{{"instance", std::string(id)}, {"op", std::string(op)}});
}

void NodeMetrics::signature_failed(std::string_view id, std::string_view reason) {
  registry_.inc(signature_failures, Labels{{"instance", std::string(id)}, {"reason", std::string(reason)}});
}

std::string NodeMetrics::render(const NodeStatus& status) const {
  metrics::Registry snapshot(registry_);
  // Every phase, zero included, so a dashboard's series never vanish. Phase's enumerators
  // run from 0 without gaps; to_string() names each and says "unknown" past the last.
  for (int p = 0; to_string(static_cast<Phase>(p)) != "unknown"; ++p)
    snapshot.set(instances, Labels{{"phase", std::string(to_string(static_cast<Phase>(p)))}}, 0);
  double n_quarantined = 0, n_halted = 0;
  for (const auto& i : status.instances) {
    const Labels phase{{"phase", std::string(to_string(i.phase))}};
    snapshot.set(instances, phase, snapshot.value(instances, phase) + 1);
    if (i.quarantine) ++n_quarantined;
    if (i.halted) ++n_halted;
    const auto& last = i.role == Role::provider ? i.last_publish : i.last_apply;
    if (last && last->time > 0)
      snapshot.set(last_success, Labels{{"instance", i.id}, {"role", std::string(to_string(i.role))}}, last->time);
  }
  snapshot.set(quarantined, {}, n_quarantined);
  snapshot.set(halted, {}, n_halted);
  snapshot.set(build_info, Labels{{"version", CARSYNC_VERSION}}, 1);
  return snapshot.render();
}

}  // namespace carsync::runtime
