#pragma once
// The write-ahead journal of one staged apply (io/staged_apply): everything recovery needs
// to finish or undo a commit after a crash, kept in host-private state. It is written
// before the first change to any volume and rewritten once, at the commit point; its
// phase decides the direction of recovery.
#include "core/error.hpp"

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::io {

enum class JournalPhase {
  prepared,   // temps may exist; nothing existing was modified -> recovery rolls back
  committed,  // every temp is complete and durable -> recovery rolls forward
};

// A path below the root of journal volume `volume`.
struct JournalPath {
  std::size_t volume = 0;
  std::string rel;
};

struct JournalFile {
  std::size_t volume = 0;
  std::string rel;   // the target
  std::string temp;  // file name of the temp, in the target's parent directory
};

struct JournalDir {
  std::size_t volume = 0;
  std::string rel;
  mode_t mode = 0;
  std::int64_t mtime_sec = 0;
  std::int64_t mtime_nsec = 0;
};

struct ApplyJournal {
  std::string apply_id;  // random hex; every temp name carries it
  std::string cid;
  JournalPhase phase = JournalPhase::prepared;
  bool fsync_each = false;               // durability mode the apply was started with
  std::vector<std::string> volumes;      // host roots
  std::vector<JournalFile> files;
  std::vector<JournalDir> dirs;          // planned directory members (metadata set in phase B)
  std::vector<JournalPath> created_dirs; // in creation order (parents first)
  std::vector<JournalPath> removals;     // mirror: parents before their contents
};

// Atomic replace with fsync of the file and its directory (io::write_json_file).
Result<void> write_journal(const std::filesystem::path& file, const ApplyJournal& journal);

// std::nullopt when there is no journal. A journal that does not parse or describes
// impossible paths is an error: recovery must not guess.
Result<std::optional<ApplyJournal>> read_journal(const std::filesystem::path& file);

// unlink + fsync of the directory; a missing journal is fine.
Result<void> remove_journal(const std::filesystem::path& file);

// A relative path as plans and journals hold them: "" (the root) or '/'-separated
// components, none empty, "." or "..", and no NUL byte.
bool is_clean_rel(std::string_view rel) noexcept;

// True when a journal exists (a commit is in flight or awaiting recovery).
bool journal_exists(const std::filesystem::path& file);

}  // namespace carsync::io
