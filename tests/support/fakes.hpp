#pragma once
// Test doubles for what the runtime reaches the world through (spec §11 harness): a settable
// clock, in-memory content and key-value stores with failure switches, and a container that
// records its lifecycle. The stores' coroutines complete without suspending, on the caller's
// executor, like a store whose answer is already there.
#include "backend/container_runtime.hpp"
#include "backend/stores.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/value.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace carsync::test {

// now() returns the set time; with advance_per_read (the reference fake) every now() and
// now_ns() read moves the time forward by one second afterwards. steady() follows set()
// but not jump(): jump() is a wall-clock step (NTP, an operator), set() is time passing.
class FakeClock final : public core::Clock {
 public:
  explicit FakeClock(double start = 1714742400.25, bool advance_per_read = false)
      : t_(start), advance_(advance_per_read) {}

  void set(double t) {
    std::lock_guard lock(mu_);
    t_ = t;
  }
  // Steps the wall clock by `seconds` (either way); steady time does not move.
  void jump(double seconds) {
    std::lock_guard lock(mu_);
    t_ += seconds;
    steady_offset_ -= seconds;
  }
  void set_advance_per_read(bool on) {
    std::lock_guard lock(mu_);
    advance_ = on;
  }
  // The time the next read returns.
  double peek() const {
    std::lock_guard lock(mu_);
    return t_;
  }

  double now() const override { return read(); }
  std::int64_t now_ns() const override { return static_cast<std::int64_t>(std::llround(read() * 1e9)); }
  double steady() const override {
    std::lock_guard lock(mu_);
    return t_ + steady_offset_;
  }

 private:
  double read() const {
    std::lock_guard lock(mu_);
    double t = t_;
    if (advance_) t_ += 1.0;
    return t;
  }
  mutable std::mutex mu_;
  mutable double t_;
  double steady_offset_ = 0;
  bool advance_;
};

// Waits until the awaiting coroutine is cancelled, then fails with errc::cancelled: an
// operation that hangs and honours cancellation, as the real clients do.
template <class T>
boost::asio::awaitable<Result<T>> hang() {
  boost::asio::steady_timer forever(co_await boost::asio::this_coro::executor,
                                    boost::asio::steady_timer::time_point::max());
  boost::system::error_code ec;
  co_await forever.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  co_return make_error(errc::cancelled, "cancelled while hanging");
}

class FakeContentStore final : public backend::ContentStore {
 public:
  struct DeleteCall {
    std::string cid;
    bool unpin_remote;
    bool cleanup_local_files;
  };

  // get_file materialises blobs under `scratch` (one file per CID).
  explicit FakeContentStore(std::filesystem::path scratch) : scratch_(std::move(scratch)) {}

  // Failure switches: an error text makes the call fail with it.
  std::optional<std::string> error_on_add, error_on_get, error_on_delete;
  bool empty_cid = false;  // add_file "succeeds" without a CID
  // Called when add_file is entered (before any failure switch), to observe ordering.
  std::function<void(const std::filesystem::path&)> on_add;

  std::map<std::string, std::string> blobs;  // cid -> bytes of the uploaded file
  std::vector<std::filesystem::path> added;  // every add_file argument
  std::vector<DeleteCall> deletes;
  std::vector<std::string> gets;  // every get_file argument

  // add_file never answers until its coroutine is cancelled (a hung upload).
  bool hang_on_add = false;
  // Behave as a store that keeps bytes as given (the embedded one): held_cid finds blobs.
  bool identifies = false;

  bool identifies_content() const noexcept override { return identifies; }
  bool holds(const std::string& cid) override { return identifies && blobs.count(cid) > 0; }

  // Behave as the embedded store's hand-off: add_owned_file takes the file (it is gone
  // afterwards) and stores it under cid_for(sha256), which it announces beforehand.
  bool adopts = false;
  // What fetch_file says a blob must hash to (unverified, as the embedded store's CID
  // names it): set by add_owned_file, or by a test; a test that then swaps blobs[cid] sees
  // whether the reader checks it.
  std::map<std::string, io::Sha256Digest> sha256s;
  std::vector<std::filesystem::path> owned;  // every add_owned_file argument
  std::vector<std::string> fetches;          // every fetch_file argument

  std::optional<std::string> cid_for(const io::Sha256Digest& sha256) const override {
    if (!adopts) return std::nullopt;
    return "bafkown" + io::to_hex(sha256).substr(0, 16);
  }

  backend::Task<Result<std::string>> add_owned_file(std::filesystem::path file, io::Sha256Digest sha256) override {
    owned.push_back(file);
    if (!adopts) co_return co_await add_file(std::move(file));
    added.push_back(file);
    if (on_add) on_add(file);
    if (error_on_add) co_return make_error(errc::store_failure, *error_on_add);
    std::string cid = *cid_for(sha256);
    blobs[cid] = read_file(file);
    sha256s[cid] = sha256;
    std::filesystem::remove(file);
    co_return cid;
  }

  backend::Task<Result<backend::FetchedFile>> fetch_file(std::string cid) override {
    fetches.push_back(cid);
    auto path = co_await get_file(cid);
    if (!path) co_return path.error();
    backend::FetchedFile out{std::move(*path), std::nullopt};
    if (auto it = sha256s.find(cid); it != sha256s.end()) out.sha256 = it->second;
    co_return out;
  }
  Result<std::optional<std::string>> held_cid(const std::filesystem::path& file) override {
    const std::string bytes = read_file(file);
    for (const auto& [cid, held] : blobs)
      if (identifies && held == bytes) return std::optional<std::string>{cid};
    return std::optional<std::string>{};
  }

  backend::Task<Result<std::string>> add_file(std::filesystem::path file) override {
    added.push_back(file);
    if (on_add) on_add(file);
    if (hang_on_add) co_return co_await hang<std::string>();
    if (error_on_add) co_return make_error(errc::store_failure, *error_on_add);
    if (empty_cid) co_return std::string();
    char cid[32];
    std::snprintf(cid, sizeof cid, "bafkfake%06d", ++counter_);
    blobs[cid] = read_file(file);
    co_return std::string(cid);
  }

  backend::Task<Result<std::filesystem::path>> get_file(std::string cid) override {
    gets.push_back(cid);
    if (error_on_get) co_return make_error(errc::store_failure, *error_on_get);
    auto it = blobs.find(cid);
    if (it == blobs.end()) co_return make_error(errc::not_found, "no blob " + cid);
    auto path = scratch_ / cid;
    write_file(path, it->second);
    co_return path;
  }

  backend::Task<Result<void>> delete_file(std::string cid, bool unpin_remote,
                                          bool cleanup_local_files) override {
    deletes.push_back({cid, unpin_remote, cleanup_local_files});
    if (error_on_delete) co_return make_error(errc::store_failure, *error_on_delete);
    blobs.erase(cid);
    co_return Result<void>{};
  }

  // The CID the next successful add_file returns.
  std::string next_cid() const {
    char cid[32];
    std::snprintf(cid, sizeof cid, "bafkfake%06d", counter_ + 1);
    return cid;
  }

 private:
  std::filesystem::path scratch_;
  int counter_ = 0;
};

class FakeKvStore final : public backend::KvStore {
 public:
  struct HsetCall {
    std::string hkey, key;
    boost::json::value value;
  };

  bool ack = true;  // the acknowledgement hset answers with
  std::optional<std::string> error_on_hset, error_on_hsync, error_on_hget;
  bool watching = false;  // what supports_watch() answers (a remote replica has no watch)

  // Called when hget is entered, to act at a known point of a consumer pass.
  std::function<void(const std::string& hkey, const std::string& key)> on_hget;
  // Called when hset is entered: what the caller left on disk at the publish.
  std::function<void()> on_hset;

  std::vector<HsetCall> hsets;
  std::vector<std::string> hsyncs;
  std::vector<std::string> hgets;  // keys asked for
  std::map<std::string, std::map<std::string, boost::json::value>> data;

  backend::Task<Result<bool>> hset(std::string hkey, std::string key, boost::json::value value) override {
    hsets.push_back({hkey, key, value});
    if (on_hset) on_hset();
    if (error_on_hset) co_return make_error(errc::store_failure, *error_on_hset);
    data[hkey][key] = std::move(value);
    co_return ack;
  }

  backend::Task<Result<std::optional<boost::json::value>>> hget(std::string hkey, std::string key) override {
    hgets.push_back(key);
    if (on_hget) on_hget(hkey, key);
    if (error_on_hget) co_return make_error(errc::store_failure, *error_on_hget);
    std::optional<boost::json::value> out;
    if (auto h = data.find(hkey); h != data.end())
      if (auto k = h->second.find(key); k != h->second.end()) out = k->second;
    co_return out;
  }

  backend::Task<Result<boost::json::object>> hgetall(std::string hkey) override {
    boost::json::object out;
    if (auto h = data.find(hkey); h != data.end())
      for (const auto& [k, v] : h->second) out[k] = v;
    co_return out;
  }

  backend::Task<Result<void>> hsync(std::string hkey) override {
    hsyncs.push_back(hkey);
    if (error_on_hsync) co_return make_error(errc::store_failure, *error_on_hsync);
    co_return Result<void>{};
  }

  bool supports_watch() const noexcept override { return watching; }
};

class FakeContainer final : public backend::ContainerRuntime {
 public:
  std::vector<std::string> lifecycle;  // "stop" / "start", in call order
  std::optional<std::string> stop_error;   // stop not confirmed
  std::optional<std::string> start_error;
  // Called inside stop(), before it answers: what the runtime left on disk at that point.
  std::function<void()> on_stop;
  // Called inside start(), before it answers: what the app finds on disk when it starts.
  std::function<void()> on_start;

  // export_path writes this Docker-style tar stream, or fails with export_error.
  std::string export_tar;
  std::optional<std::string> export_error;
  std::vector<std::string> exported;  // container paths asked for

  bool hang_on_stop = false;  // stop never answers until cancelled

  boost::asio::awaitable<Result<void>> stop() override {
    lifecycle.emplace_back("stop");
    if (on_stop) on_stop();
    if (hang_on_stop) co_return co_await hang<void>();
    if (stop_error) co_return make_error(errc::runtime_stop_failed, *stop_error);
    co_return Result<void>{};
  }

  boost::asio::awaitable<Result<void>> start() override {
    lifecycle.emplace_back("start");
    if (on_start) on_start();
    if (start_error) co_return make_error(errc::runtime_unavailable, *start_error);
    co_return Result<void>{};
  }

  boost::asio::awaitable<Result<void>> export_path(std::string container_path,
                                                  std::filesystem::path out) override {
    exported.push_back(container_path);
    if (export_error) co_return make_error(errc::runtime_unavailable, *export_error);
    write_file(out, export_tar);
    co_return Result<void>{};
  }

  bool has_container() const noexcept override { return true; }
};

}  // namespace carsync::test
