#pragma once
// The consumer's side of delta transfer (core/delta_index.hpp): what the download step
// needs besides the store. The step itself (runtime/consumer_run) fetches the index, plans,
// fetches the packs and reassembles; every failure falls back to the full archive.
#include "core/delta_index.hpp"
#include "core/delta_record.hpp"
#include "io/delta_files.hpp"
#include "runtime/instance_context.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace carsync::runtime {

// How one archive was fetched: the received history's "transfer".
struct Transfer {
  core::FetchMode mode = core::FetchMode::full;
  std::uint64_t fetched_bytes = 0;  // index + packs (delta), archive (+ index) (full)
  std::uint64_t archive_bytes = 0;
  std::string fallback;             // why a record with a delta was fetched in full; empty: it was not
  boost::json::object to_json() const;
};

// The consumer's base (io::DeltaBase) lives in delta_dir(ctx) (runtime/delta_publish.hpp).
io::DeltaBase consumer_base(const InstanceContext& ctx);

struct DeltaPlanned {
  core::DeltaIndex index;
  std::optional<io::DeltaBase::Loaded> base;
  core::FetchPlan plan;
};

// Blocking. Reads the fetched index (its size and SHA-256 must be the record's), checks it
// describes the record's archive (digest, size, serial), loads the base and plans the fetch.
Result<DeltaPlanned> plan_delta(const InstanceContext& ctx, const core::RecordDelta& delta,
                                const std::filesystem::path& index_file, const io::Sha256Digest& archive_sha256,
                                std::uint64_t archive_size);

// A reassembly's output file in delta_dir (removed by the caller when done with it), and
// removal of anything but the base a crash left there (a reassembly, a base being installed).
std::filesystem::path incoming_archive_path(const InstanceContext& ctx);
void remove_stale_incoming(const InstanceContext& ctx) noexcept;

}  // namespace carsync::runtime
