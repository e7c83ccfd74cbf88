#pragma once
// The consumer's durable apply state, state/current_apply.json (spec §8.8), and the dedupe
// decision built on it (§8.1 step 3).
//
// carsync adds a durable halt (§12 item 11): the `uncertain` document carries
// "halted": true, meaning the container stays stopped and no further record is applied,
// across carsyncd restarts, until an operator clears it.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::core {

enum class ApplyState { preparing, failed_preflight, applying, applied, failed_rolled_back, uncertain };
std::string_view to_string(ApplyState s) noexcept;

// The record fields every state document repeats (raw values; null when absent).
struct ApplyIdentity {
  boost::json::value cid;
  boost::json::value version;
};
ApplyIdentity identity_of(const boost::json::value& record);

// Sets "extracted_paths" to the paths an apply wrote, as far as they fit
// max_extracted_paths_bytes as written; a longer list stops there and the document also
// holds "extracted_paths_truncated": true and "extracted_count" (an archive may hold a
// million members, and a state or history file must stay readable: max_json_file_bytes).
inline constexpr std::size_t max_extracted_paths_bytes = 4 * 1024 * 1024;
void put_extracted_paths(boost::json::object& doc, const std::vector<std::string>& paths);

// {"state", "cid", "version", "timestamp": now}
boost::json::object apply_state_document(ApplyState s, const ApplyIdentity& id, double now);
// ... + "stage", "error"
boost::json::object failed_preflight_state(const ApplyIdentity& id, double now, std::string_view stage,
                                           std::string_view error);
// ... + "extracted_paths"
boost::json::object applied_state(const ApplyIdentity& id, double now, const std::vector<std::string>& extracted);
// state failed_rolled_back + "error", "extracted_paths"
boost::json::object rolled_back_state(const ApplyIdentity& id, double now, std::string_view error,
                                      const std::vector<std::string>& extracted);
// state uncertain + "error", "extracted_paths", "halted": true
boost::json::object uncertain_state(const ApplyIdentity& id, double now, std::string_view error,
                                    const std::vector<std::string>& extracted);

// True when the parsed current_apply.json (nullptr: absent/unparseable) asks to stay halted.
bool is_halted(const boost::json::value* current_apply) noexcept;
// The operator's release: "halted" removed, "halt_cleared_at": now recorded. The state
// stays non-applied, so the next tick retries the record the halt interrupted.
boost::json::object clear_halt(boost::json::object current_apply, double now);

// The CID already applied: current_apply.json's cid when its state is "applied" and the
// cid a non-empty string; else its "applied_cid" (carsync's carry-over of the CID applied
// before a later, unfinished attempt); otherwise the latest received-history entry's
// (§9.2). Either argument may be nullptr (absent or unparseable).
std::optional<std::string> dedupe_cid(const boost::json::value* current_apply,
                                      const boost::json::object* latest_received);

}  // namespace carsync::core
