#pragma once
// History entries (spec §9): naming, ordering and the choice of the CID to retire.
// File access lives in io/history_store.
#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::core {

enum class HistoryDir { sent, received };
std::string_view to_string(HistoryDir d) noexcept;

// "<version zero-padded to 10>__<first 12 chars of cid, non-alnum -> '_'>.json"; "" -> no_cid.
std::string history_file_name(std::int64_t version, std::string_view cid);

// carsync orders history by a per-directory monotonic sequence ("sequence"), which a
// wall-clock step cannot reorder (§12 item 22); entries written by the reference have no
// sequence and fall back to history_written_at_ns, then to the file's mtime.
struct HistoryEntry {
  std::string file_name;
  boost::json::object body;
  std::int64_t mtime_ns = 0;
};

struct OrderKey {
  std::int64_t sequence;     // -1 when absent
  std::int64_t written_ns;   // history_written_at_ns, or mtime
  auto operator<=>(const OrderKey&) const = default;
};
OrderKey order_key(const HistoryEntry& e) noexcept;

// Entries sorted oldest -> newest by order_key.
void sort_by_write_order(std::vector<HistoryEntry>& entries);

// The highest sequence in use (0 when none), to continue numbering after a restart.
std::int64_t max_sequence(const std::vector<HistoryEntry>& entries) noexcept;

// §9.3 steps 1-2 over entries sorted oldest -> newest: index of the entry to retire.
std::optional<std::size_t> retirement_target(const std::vector<HistoryEntry>& sorted);

// Every entry a retirement pass deletes, newest first: the §9.3 target and, beyond the
// reference (which retires one entry per pass, §12 item 14), every earlier un-retired entry
// whose CID differs from the latest's. Entries left un-retired by a crash or a failed delete,
// or superseded by a second publish, are then deleted by the next pass instead of leaking
// for good. Empty when retirement_target is none.
std::vector<std::size_t> retirement_targets(const std::vector<HistoryEntry>& sorted);

// History is kept bounded (the reference never prunes it, and reads all of it on every
// operation: spec §12 item 7). Over entries sorted oldest -> newest, the indices (ascending)
// that may go: older than the newest `keep`, and either retired, or with a CID a newer
// entry also holds, or without a CID. An entry still awaiting its retirement (a failed
// delete included: the next pass retries it) is kept, however old.
std::vector<std::size_t> prunable(const std::vector<HistoryEntry>& sorted, std::size_t keep);

// Delta transfer (core/delta_record.hpp): a sent entry's "delta" is
//   {"serial": S, "index": OBJ, "pack": OBJ (absent: no pack), "record_packs": [CID, ...]}
// where OBJ is {"cid","size","sha256"} plus, once retired, "deleted_at"; record_packs are the
// pack CIDs the published record names. One index or pack to delete: every one that the
// newest entry's record does not name (its index and record_packs), not yet deleted.
// A second publish of the same snapshot in the same second has the same file name and
// replaces its entry: the objects it named move to "replaced": [OBJ, ...] in the new one
// (carry_replaced_delta), so they are retired, not forgotten.
struct DeltaRetirement {
  std::size_t entry = 0;   // index into the sorted entries
  std::string part;        // "index", "pack" or "replaced/<n>"
  std::string cid;
};
std::vector<DeltaRetirement> delta_retirement_targets(const std::vector<HistoryEntry>& sorted);
// Whether an entry still names a delta object not yet deleted (it must not be pruned).
bool delta_pending(const HistoryEntry& e) noexcept;
// `replacement` is about to overwrite `old` (same file name): every delta object of `old`
// not yet deleted and not named by `replacement` goes into replacement's delta.replaced.
void carry_replaced_delta(const boost::json::object& old, boost::json::object& replacement);

// The all-null deletion sub-record, and the one written after a retirement attempt.
boost::json::object null_deletion();
boost::json::object deletion_result(std::optional<double> deleted_at, bool succeeded,
                                    std::optional<std::string> error);

}  // namespace carsync::core
