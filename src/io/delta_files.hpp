#pragma once
// The files of a delta transfer (core/delta_index.hpp): the provider's pack and index, the
// consumer's reassembly and its base (the last archive it applied, with that archive's
// index, in host-private state). Blocking: run on a pool.
#include "core/delta_index.hpp"
#include "core/error.hpp"
#include "io/sha256.hpp"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <vector>

namespace carsync::io {

// A file written and hashed in one pass.
struct FileSeal {
  std::uint64_t size = 0;
  Sha256Digest sha256{};
};

// ---- provider ----------------------------------------------------------------------------

// Copies `pieces` of `archive` (the frames new in this version), in order, into `pack`
// (created O_EXCL, 0600, not fsynced: it is uploaded, then deleted). On failure `pack` is
// removed.
Result<FileSeal> write_pack(const std::filesystem::path& archive, std::span<const core::PackPiece> pieces,
                            const std::filesystem::path& pack);

// Writes `bytes` to `file` (O_EXCL, 0600) and hashes them; `durable`: fsync the file and its
// directory (the provider keeps its last index as the next version's base). On failure
// `file` is removed.
Result<FileSeal> write_file_sealed(const std::filesystem::path& file, std::span<const std::byte> bytes,
                                   bool durable);

// Reads and parses an index file of at most `max_bytes`; with `expected`, its size and
// SHA-256 must be those (delta_errc::index_mismatch otherwise).
struct ExpectedBytes {
  std::uint64_t size = 0;
  Sha256Digest sha256{};
};
Result<core::DeltaIndex> read_index(const std::filesystem::path& file, const std::optional<ExpectedBytes>& expected);

// ---- consumer ----------------------------------------------------------------------------

// Writes the archive `next` describes to `out` (O_EXCL, 0600) from the base archive and the
// fetched packs, as `plan` (core::plan_fetch, mode delta) says. Before a byte is written
// every pack is checked against its PackRef (size; SHA-256 while it is read). Every frame
// taken from a pack is hashed and must equal its chunk id (frame_mismatch) and must
// decompress to exactly its entry's plain size (frame_size_mismatch; decompression stops at
// that size + 1, so a frame that would expand further costs nothing). Base frames are covered
// by the whole archive's hash, which must equal `expected` (archive_mismatch). Memory: one
// copy buffer and the plan; never the archive. On any failure `out` is removed (an `out` that
// existed already is left alone and refused). Every fault of the inputs (a pack, a frame, the
// base, the digest) is in core::delta_category: pack_mismatch for a pack missing, of another
// size or SHA-256, or too short for a frame; base_unusable for a base missing or too short.
// Writing `out` fails with the OS error (no fallback would do better), cancel with
// errc::cancelled.
struct AssembleInput {
  const std::filesystem::path* base_archive = nullptr;  // required when a source is from_base
  const core::DeltaIndex* next = nullptr;
  const core::FetchPlan* plan = nullptr;
  std::map<std::uint64_t, std::filesystem::path> packs;  // serial -> fetched file
  Sha256Digest expected{};
  const std::atomic<bool>* cancel = nullptr;  // checked between frames (errc::cancelled)
};
Result<FileSeal> reassemble(const AssembleInput& in, const std::filesystem::path& out);

// The consumer's base: <dir>/base.archive and <dir>/base.index, replaced together after an
// apply. A base whose index does not parse or does not match the archive's size is unusable
// (load returns nullopt and says why in `why`); the whole-archive hash of every reassembly
// catches what a size check cannot.
class DeltaBase {
 public:
  explicit DeltaBase(std::filesystem::path dir);

  struct Loaded {
    core::DeltaIndex index;
    std::filesystem::path archive;
  };
  std::optional<Loaded> load(std::string* why = nullptr) const;

  // Makes `archive` (verified, its index `index_bytes`) the base: hard-linked when on the
  // same filesystem, else copied; index then archive renamed into place; the directory
  // fsynced. `archive` itself is left where it is; hard-linked, it shares the base's inode,
  // so the caller may remove it but must not rewrite it in place.
  Result<void> install(const std::filesystem::path& archive, std::span<const std::byte> index_bytes);

  // Removes the base (delta disabled, or the instance removed).
  void clear() noexcept;

  const std::filesystem::path& dir() const noexcept { return dir_; }

 private:
  std::filesystem::path dir_;
};

}  // namespace carsync::io
