#pragma once
// backend::ContentStore over the node's R1FS manager API (r1-http-api.md §6).
//
// get_file downloads into `download_dir` as "<cid>" (a safe rendering of it) and returns
// that path; the file is written under a temporary name and renamed into place complete.
// When the CID is one of ours (CIDv1 raw sha2-256, what devnode and the embedded store
// produce) the bytes are checked against it while downloading; an IPFS CID is opaque and
// trusted. delete_file with cleanup_local_files also removes our downloaded copy.
#include "backend/stores.hpp"
#include "net/http_client.hpp"

#include <filesystem>

namespace carsync::net {

class R1fsClient final : public backend::ContentStore {
 public:
  R1fsClient(boost::asio::any_io_executor ex, Endpoint endpoint, std::filesystem::path download_dir,
             HttpOptions options = {}, std::uint64_t max_download_bytes = std::uint64_t{64} << 30);

  backend::Task<Result<std::string>> add_file(std::filesystem::path file) override;
  backend::Task<Result<std::filesystem::path>> get_file(std::string cid) override;
  backend::Task<Result<void>> delete_file(std::string cid, bool unpin_remote, bool cleanup_local_files) override;

  // Where get_file puts `cid`.
  std::filesystem::path download_path(std::string_view cid) const;

 private:
  HttpClient http_;
  std::filesystem::path download_dir_;
  std::uint64_t max_download_bytes_;
};

}  // namespace carsync::net
