#pragma once
// The provider's side of delta transfer (core/delta_index.hpp): after a chunked archive is
// sealed, the index and pack of the new version are written (prepare_delta), uploaded beside
// the archive, and named in the record and the sent history entry (delta_fields). Nothing
// here fails a publish: a version without its delta is an ordinary one.
#include "core/delta_index.hpp"
#include "core/delta_record.hpp"
#include "io/delta_files.hpp"
#include "runtime/instance_context.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace carsync::runtime {

// <state>/delta: the provider's last index (the next version's base), the consumer's base.
std::filesystem::path delta_dir(const InstanceContext& ctx);

// The archive just sealed, as the delta needs it.
struct SealedArchive {
  std::filesystem::path file;
  std::uint64_t size = 0;
  io::Sha256Digest sha256{};
  std::uint64_t plain_size = 0;
  std::vector<core::FrameInfo> frames;  // empty: not chunked
};

struct PreparedDelta {
  std::uint64_t serial = 0;
  std::filesystem::path index_file;  // in scratch, handed to the store
  io::FileSeal index;
  std::optional<std::filesystem::path> pack_file;  // in scratch; none when most frames are new
  io::FileSeal pack;
  std::uint64_t new_frames = 0;
  std::vector<core::PackRef> earlier_packs;  // live packs of the last K-1 versions (history)
};

// Blocking. nullopt: this version gets no delta (SYNC.DELTA off, an archive that is not
// chunked or has less plain tar than SYNC.DELTA_MIN_BYTES). The new index is also kept
// durably in delta_dir as the next version's base.
Result<std::optional<PreparedDelta>> prepare_delta(const InstanceContext& ctx, const SealedArchive& archive);

// The record's "delta" field and the sent history entry's, once the index (and pack) are
// uploaded.
struct DeltaFields {
  boost::json::object record;
  boost::json::object history;
};
DeltaFields delta_fields(const PreparedDelta& d, const std::string& index_cid, const std::optional<std::string>& pack_cid);

// Blocking. Removes the provider's kept indexes but the one of `serial`, and any scratch
// files of a prepared delta that the store did not take.
void prune_provider_indexes(const InstanceContext& ctx, std::uint64_t serial);
void remove_prepared(const PreparedDelta& d) noexcept;

// The serial of a sent history entry's delta (0: none).
std::uint64_t delta_serial_of(const core::HistoryEntry& e) noexcept;

}  // namespace carsync::runtime
