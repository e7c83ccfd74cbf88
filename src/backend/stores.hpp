#pragma once
// What the sync lifecycles need from R1FS and ChainStore. Implemented by the embedded
// backend (runtime/local_backend) and, later, by the HTTP clients of src/net. Every call is
// a coroutine; callers put a deadline on each.
#include "core/error.hpp"
#include "io/sha256.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace carsync::backend {

template <class T>
using Task = boost::asio::awaitable<T>;

// A downloaded blob for a reader that verifies while it reads (the consumer's scan).
struct FetchedFile {
  std::filesystem::path path;
  // What the file's bytes must hash to, not yet checked; nullopt: the store verified them
  // already (or has nothing to check them against, as for an opaque IPFS CID).
  std::optional<io::Sha256Digest> sha256;
};

class ContentStore {
 public:
  virtual ~ContentStore() = default;
  virtual Task<Result<std::string>> add_file(std::filesystem::path file) = 0;
  // add_file of a file the caller gives away, whose SHA-256 it already knows (hashed while
  // built): a store on the same filesystem may take the file itself instead of a copy, so
  // `file` may be gone afterwards, whatever the outcome.
  virtual Task<Result<std::string>> add_owned_file(std::filesystem::path file, io::Sha256Digest sha256) {
    (void)sha256;
    co_return co_await add_file(std::move(file));
  }
  // The CID add_owned_file will return for content with this digest, where the store can
  // tell beforehand (the embedded one names blobs by their digest); else nullopt.
  virtual std::optional<std::string> cid_for(const io::Sha256Digest& sha256) const {
    (void)sha256;
    return std::nullopt;
  }
  // A local, verified copy of the blob.
  virtual Task<Result<std::filesystem::path>> get_file(std::string cid) = 0;
  // A local copy of the blob that may still be unverified: then `sha256` says what it must
  // hash to, and the reader checks it as it streams (no separate pass over the bytes).
  virtual Task<Result<FetchedFile>> fetch_file(std::string cid) {
    auto path = co_await get_file(std::move(cid));
    if (!path) co_return path.error();
    co_return FetchedFile{std::move(*path), std::nullopt};
  }
  virtual Task<Result<void>> delete_file(std::string cid, bool unpin_remote,
                                         bool cleanup_local_files) = 0;

  // Whether held_cid can find a blob from the uploaded file alone, so that a kill inside
  // add_file (the store took the blob, the caller never learnt its CID) is recoverable.
  // Only a store that keeps the bytes as given can (the embedded one); R1FS encrypts them.
  virtual bool identifies_content() const noexcept { return false; }
  // The CID under which the store holds `file`'s bytes, or nullopt. Blocking (it reads the
  // whole file): run it on a pool. Start-up recovery only.
  virtual Result<std::optional<std::string>> held_cid(const std::filesystem::path& file) {
    (void)file;
    return std::optional<std::string>{};
  }
  // Whether the store holds a blob under `cid` (cheap, blocking). Start-up recovery only:
  // a store that cannot tell says false, and nothing is adopted on its word.
  virtual bool holds(const std::string& cid) {
    (void)cid;
    return false;
  }
};

class KvStore {
 public:
  virtual ~KvStore() = default;
  // The acknowledgement as the store gives it (false = not acknowledged).
  virtual Task<Result<bool>> hset(std::string hkey, std::string key, boost::json::value value) = 0;
  virtual Task<Result<std::optional<boost::json::value>>> hget(std::string hkey, std::string key) = 0;
  virtual Task<Result<boost::json::object>> hgetall(std::string hkey) = 0;
  virtual Task<Result<void>> hsync(std::string hkey) = 0;

  // Change notification, where the store has one (the embedded store does). The callback
  // runs on the store's executor with the changed key; it must not block. An empty key means
  // "changes may have been missed" (the notification queue overflowed): re-check every key.
  using ChangeCallback = std::function<void(const std::string& hkey, const std::string& key)>;
  virtual bool supports_watch() const noexcept { return false; }
  virtual void watch(ChangeCallback) {}
};

}  // namespace carsync::backend
