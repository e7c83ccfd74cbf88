#pragma once
// sync_history/{sent,received} on the host (spec §9): append, latest, retirement updates.
#include "core/error.hpp"
#include "core/history.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <vector>

namespace carsync::io {

class HistoryStore {
 public:
  // root = <instance data dir>/sync_history
  explicit HistoryStore(std::filesystem::path root);

  // §9.1: adds history_written_at_ns (wall_ns), sequence (monotonic per directory) and the
  // null deletion sub-record unless present; atomic write. Returns the file name.
  Result<std::string> append(core::HistoryDir dir, boost::json::object entry, std::int64_t wall_ns);

  // Every parseable entry, oldest -> newest (unparseable files are skipped).
  std::vector<core::HistoryEntry> entries(core::HistoryDir dir) const;
  std::optional<core::HistoryEntry> latest(core::HistoryDir dir) const;

  // §9.3 step 4: rewrites the entry named from (version, cid) with the deletion result.
  // A missing file logs "history file missing" and succeeds.
  Result<void> record_deletion(core::HistoryDir dir, std::int64_t version, std::string_view cid,
                               std::optional<double> deleted_at, bool succeeded,
                               std::optional<std::string> error);

  // Delta transfer: records the deletion of the entry's delta `part` ("index" or "pack"):
  // "deleted_at" on success, else "deletion_error" (the next pass retries it).
  Result<void> record_delta_deletion(core::HistoryDir dir, const std::string& file_name, std::string_view part,
                                     std::optional<double> deleted_at, std::optional<std::string> error);

  // Deletes the entries core::prunable picks beyond the newest `keep`; returns how many.
  Result<std::size_t> prune(core::HistoryDir dir, std::size_t keep);

  std::filesystem::path dir_path(core::HistoryDir dir) const;

 private:
  std::filesystem::path root_;
  mutable std::mutex mu_;
  std::int64_t next_seq_[2] = {0, 0};  // 0 = not yet loaded
};

}  // namespace carsync::io
