#pragma once
// The per-instance control directory `<system volume>/volume-sync/` (spec §2.1 steps 4-6,
// §2.2, §5.2 steps 1-5, §5.4 discard, §10.1 recovery). Every operation re-opens the
// directory from the system volume's root with no-follow resolution, so a symlink swapped
// in for `volume-sync` is refused, never followed.
#include "core/error.hpp"
#include "io/unique_fd.hpp"

#include <boost/json/value.hpp>

#include <filesystem>
#include <string>
#include <variant>

namespace carsync::io {

inline constexpr std::string_view control_subdir = "volume-sync";
inline constexpr std::string_view request_name = "request.json";
inline constexpr std::string_view processing_name = "request.json.processing";
inline constexpr std::string_view invalid_name = "request.json.invalid";
inline constexpr std::string_view response_name = "response.json";
inline constexpr std::string_view last_apply_name = "last_apply.json";

// Outcome of a claim attempt (§5.2 steps 1-5).
struct NothingPending {};
struct ClaimFailedToRename { std::string why; };  // step 4: request stays pending; why names path and reason
struct ClaimedBody {
  std::string bytes;  // .processing read (size-capped)
  double mtime = 0;   // request.json's modification time, seconds since the epoch (0: not a file)
};
// Steps 1, 3, 5 failures: reported as `validation` with no body and no raw_body.
struct ClaimUnsafe { Error error; };
using ClaimOutcome = std::variant<NothingPending, ClaimFailedToRename, ClaimedBody, ClaimUnsafe>;

enum class RecoveryResult { nothing, recovered, not_recovered };

class ControlFiles {
 public:
  explicit ControlFiles(std::filesystem::path system_volume);

  const std::filesystem::path& system_volume() const noexcept { return system_volume_; }
  std::filesystem::path control_dir() const { return system_volume_ / control_subdir; }

  // §2.1 steps 4-6: mount root 0:0 0755, control dir 0:0 01777 (a symlink or non-directory
  // `volume-sync` is unlinked and replaced by a real directory).
  Result<void> provision();

  // §5.2 steps 1-5. A body larger than max_bytes yields ClaimUnsafe with
  // errc::limit_exceeded (reported as a `validation` failure without raw_body).
  ClaimOutcome claim(std::size_t max_bytes);

  // Writes a control file atomically (0644) relative to the control dir.
  Result<void> write(std::string_view name, const boost::json::value& v);

  // Removes request.json.invalid if present (missing is success).
  Result<void> remove_invalid();

  // §5.4 discard of request.json.processing: regular/symlink/other -> unlink; directory ->
  // rmdir, or rename to `request.json.processing.unsafe.<ns>` when not empty.
  Result<void> discard_processing();

  // §10.1 stale-processing recovery; first, carsync's own control-file temps that a crash
  // left behind (".response.json.<hex>.tmp", ...) are removed.
  Result<RecoveryResult> recover_stale_processing();

  // True when request.json exists (any type), without following links.
  bool request_pending() const;

 private:
  Result<unique_fd> open_control_dir() const;  // lstat-checked, O_DIRECTORY|O_NOFOLLOW
  std::filesystem::path system_volume_;
};

}  // namespace carsync::io
