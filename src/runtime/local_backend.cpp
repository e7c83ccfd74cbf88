#include "runtime/local_backend.hpp"

#include <sys/inotify.h>
#include <unistd.h>

namespace carsync::runtime {

namespace json = boost::json;

LocalContentStore::LocalContentStore(std::filesystem::path root, std::filesystem::path download_dir,
                                     BlockingPool& pool)
    : cas_(std::move(root)), download_dir_(std::move(download_dir)), pool_(pool) {
  // What killed writers left: put temps of dead processes, and this node's own partial
  // downloads (one process per data_dir, so every temp there is a dead run's).
  cas_.sweep_temps();
  std::error_code ec;
  for (std::filesystem::directory_iterator it(download_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    std::error_code ignored;
    if (name.starts_with(".") && name.ends_with(".tmp")) std::filesystem::remove(it->path(), ignored);
  }
}

backend::Task<Result<std::string>> LocalContentStore::add_file(std::filesystem::path file) {
  co_return co_await pool_.run([&] { return cas_.put(file); });
}

backend::Task<Result<std::string>> LocalContentStore::add_owned_file(std::filesystem::path file,
                                                                     io::Sha256Digest sha256) {
  co_return co_await pool_.run([&] { return cas_.adopt(file, sha256); });
}

backend::Task<Result<backend::FetchedFile>> LocalContentStore::fetch_file(std::string cid) {
  co_return co_await pool_.run([&]() -> Result<backend::FetchedFile> {
    auto digest = backend::digest_from_cid(cid);  // refuses anything but a valid CID first
    if (!digest) return digest.error();
    std::error_code ec;
    std::filesystem::create_directories(download_dir_, ec);
    if (ec) return os_error(ec.value(), "mkdir " + download_dir_.string());
    auto out = download_dir_ / cid;
    if (auto r = cas_.link_to(cid, out); !r) return r.error();
    return backend::FetchedFile{std::move(out), *digest};
  });
}

backend::Task<Result<std::filesystem::path>> LocalContentStore::get_file(std::string cid) {
  co_return co_await pool_.run([&]() -> Result<std::filesystem::path> {
    std::error_code ec;
    std::filesystem::create_directories(download_dir_, ec);
    if (ec) return os_error(ec.value(), "mkdir " + download_dir_.string());
    auto out = download_dir_ / cid;  // fetch_to refuses anything but a valid CID first
    if (auto r = cas_.fetch_to(cid, out); !r) return r.error();
    return out;
  });
}

backend::Task<Result<void>> LocalContentStore::delete_file(std::string cid, bool unpin_remote,
                                                           bool cleanup_local_files) {
  co_return co_await pool_.run([&]() -> Result<void> {
    if (cleanup_local_files && backend::digest_from_cid(cid)) ::unlink((download_dir_ / cid).c_str());
    if (!unpin_remote) return {};
    return cas_.remove(cid);
  });
}

LocalKvStore::LocalKvStore(std::filesystem::path root, BlockingPool& pool,
                           boost::asio::any_io_executor ex)
    : kv_(std::move(root)), pool_(pool), watcher_(std::move(ex)) {
  // A full inotify queue drops events: every watcher is told that any key may have changed.
  watcher_.on_overflow([this] {
    for (const auto& hkey : hkeys_)
      for (const auto& cb : callbacks_) cb(hkey, std::string());
  });
}

backend::Task<Result<bool>> LocalKvStore::hset(std::string hkey, std::string key, json::value value) {
  auto r = co_await pool_.run([&] { return kv_.hset(hkey, key, value); });
  if (!r) co_return r.error();
  co_return true;  // durable on disk: acknowledged
}

backend::Task<Result<std::optional<json::value>>> LocalKvStore::hget(std::string hkey, std::string key) {
  co_return co_await pool_.run([&] { return kv_.hget(hkey, key); });
}

backend::Task<Result<json::object>> LocalKvStore::hgetall(std::string hkey) {
  co_return co_await pool_.run([&] { return kv_.hgetall(hkey); });
}

backend::Task<Result<void>> LocalKvStore::hsync(std::string) { co_return Result<void>{}; }

Result<void> LocalKvStore::watch_hkey(const std::string& hkey) {
  auto dir = kv_.hkey_dir(hkey);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return os_error(ec.value(), "create " + dir.string());
  // Values are replaced by rename, so IN_MOVED_TO is the commit of a write.
  auto wd = watcher_.watch(dir, IN_MOVED_TO, [this, hkey](const io::InotifyEvent& ev) {
    if (auto key = backend::LocalKv::key_of_file(ev.name))
      for (const auto& cb : callbacks_) cb(hkey, *key);
  });
  if (!wd) return wd.error();
  hkeys_.push_back(hkey);
  return {};
}

}  // namespace carsync::runtime

namespace carsync::backend {

boost::asio::awaitable<Result<void>> NoContainer::stop() { co_return Result<void>{}; }
boost::asio::awaitable<Result<void>> NoContainer::start() { co_return Result<void>{}; }
boost::asio::awaitable<Result<void>> NoContainer::export_path(std::string, std::filesystem::path) {
  co_return make_error(errc::runtime_unavailable, "online provider capture requires a running container");
}

}  // namespace carsync::backend
