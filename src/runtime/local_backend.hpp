#pragma once
// The embedded default backend behind the async store interfaces: LocalCas and LocalKv
// run on the blocking pool, and KV changes (from this process or another one sharing the
// data directory, such as `carsync kv hset`) reach watchers through inotify.
#include "backend/container_runtime.hpp"
#include "backend/local_cas.hpp"
#include "backend/local_kv.hpp"
#include "backend/stores.hpp"
#include "runtime/blocking_pool.hpp"
#include "runtime/dir_watcher.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace carsync::runtime {

class LocalContentStore final : public backend::ContentStore {
 public:
  // get_file puts the node's own verified copy of a blob in `download_dir` as "<cid>", as
  // the R1FS client does: a provider retiring the CID meanwhile cannot pull it from under
  // a consumer that is about to scan it.
  LocalContentStore(std::filesystem::path root, std::filesystem::path download_dir, BlockingPool& pool);
  backend::Task<Result<std::string>> add_file(std::filesystem::path file) override;
  // Renames `file` into the store (same filesystem), else copies it; see LocalCas::adopt.
  backend::Task<Result<std::string>> add_owned_file(std::filesystem::path file, io::Sha256Digest sha256) override;
  std::optional<std::string> cid_for(const io::Sha256Digest& sha256) const override {
    return backend::cid_from_digest(sha256);
  }
  backend::Task<Result<std::filesystem::path>> get_file(std::string cid) override;
  // get_file's copy as a hard link, unverified: the digest the CID names comes with it.
  backend::Task<Result<backend::FetchedFile>> fetch_file(std::string cid) override;
  // One store serves every instance: only unpin_remote (the publisher retiring its own
  // content) removes the blob; cleanup_local_files removes the node's downloaded copy.
  backend::Task<Result<void>> delete_file(std::string cid, bool unpin_remote,
                                          bool cleanup_local_files) override;
  bool identifies_content() const noexcept override { return true; }
  Result<std::optional<std::string>> held_cid(const std::filesystem::path& file) override {
    return cas_.held_cid(file);
  }
  bool holds(const std::string& cid) override { return cas_.contains(cid); }

 private:
  backend::LocalCas cas_;
  std::filesystem::path download_dir_;
  BlockingPool& pool_;
};

class LocalKvStore final : public backend::KvStore {
 public:
  LocalKvStore(std::filesystem::path root, BlockingPool& pool, boost::asio::any_io_executor ex);
  backend::Task<Result<bool>> hset(std::string hkey, std::string key, boost::json::value value) override;
  backend::Task<Result<std::optional<boost::json::value>>> hget(std::string hkey, std::string key) override;
  backend::Task<Result<boost::json::object>> hgetall(std::string hkey) override;
  backend::Task<Result<void>> hsync(std::string hkey) override;  // the replica is local: no-op

  bool supports_watch() const noexcept override { return true; }
  void watch(ChangeCallback cb) override { callbacks_.push_back(std::move(cb)); }
  // Starts watching hkey's directory; events are dispatched by run_watcher().
  Result<void> watch_hkey(const std::string& hkey);
  boost::asio::awaitable<void> run_watcher() { return watcher_.run(); }
  void close() { watcher_.close(); }

 private:
  backend::LocalKv kv_;
  BlockingPool& pool_;
  DirWatcher watcher_;
  std::vector<ChangeCallback> callbacks_;
  std::vector<std::string> hkeys_;  // watched
};

}  // namespace carsync::runtime
