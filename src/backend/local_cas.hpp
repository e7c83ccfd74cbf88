#pragma once
// The embedded content store: blobs named by CID under <data_dir>/cas/blobs/, written
// atomically (temp + fsync + rename + dir fsync) and verified against their CID on read.
#include "backend/cid.hpp"
#include "core/error.hpp"
#include "io/file_engine.hpp"

#include <filesystem>
#include <optional>
#include <string>

namespace carsync::backend {

class LocalCas {
 public:
  explicit LocalCas(std::filesystem::path root);  // <data_dir>/cas

  // Hashes and stores a copy of `file`; returns its CID. Re-adding existing content is a no-op.
  Result<std::string> put(const std::filesystem::path& file);
  // Takes `file` itself as the blob of `sha256` (its digest, computed while it was written):
  // fsync, rename into blobs/ and fsync blobs/, no second read or copy. A blob already held
  // under that CID makes it just unlink `file`. On another filesystem (EXDEV) it falls back
  // to put's copy, then unlinks `file`. Returns the CID, cid_from_digest(sha256).
  Result<std::string> adopt(const std::filesystem::path& file, const Sha256Digest& sha256);
  // Verifies the stored blob against its CID (a corrupt blob is errc::corrupt_archive) and
  // returns its path. A missing blob is errc::not_found.
  Result<std::filesystem::path> get(std::string_view cid);
  // Copies the verified blob to `out` (CLI `cas get`).
  Result<void> export_to(std::string_view cid, const std::filesystem::path& out);
  // A consumer's own copy at `out`, verified: a hard link where the filesystem allows (a
  // blob is never rewritten, so sharing its inode is safe), else a copy. Retiring the blob
  // afterwards leaves the copy readable. A missing blob is errc::not_found.
  Result<void> fetch_to(std::string_view cid, const std::filesystem::path& out);
  // fetch_to without the verification, for a reader that checks the CID's digest while it
  // reads: a hard link (unverified), else a copy (verified as it is made).
  Result<void> link_to(std::string_view cid, const std::filesystem::path& out);
  // Removes the temps of puts whose process is gone (a kill mid-upload); returns how many.
  // Temps of live processes sharing the store are left alone.
  std::size_t sweep_temps();
  // Removes the blob; a missing blob is not an error.
  Result<void> remove(std::string_view cid);
  bool contains(std::string_view cid) const;
  // The CID of `file`'s bytes when the store holds them, else nullopt (reads the whole file).
  Result<std::optional<std::string>> held_cid(const std::filesystem::path& file) const;

  const std::filesystem::path& root() const noexcept { return root_; }

 private:
  // A hard link to the blob at a temp name beside `out` (the caller renames it), or nullopt
  // when the filesystem refused a link and a verified copy went to `out` instead.
  Result<std::optional<std::filesystem::path>> link_beside(std::string_view cid, const std::filesystem::path& out);
  std::filesystem::path blob_path(std::string_view cid) const;
  std::filesystem::path root_;
};

}  // namespace carsync::backend
