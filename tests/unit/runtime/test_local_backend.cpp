// The embedded store's change notification under load: when the inotify queue overflows,
// watchers are told that any key may have changed instead of silently missing records.
#include "runtime/local_backend.hpp"
#include "support/inotify_queue.hpp"
#include "support/run_until.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <cstdio>
#include <optional>
#include <fstream>
#include <set>
#include <span>
#include <string>

namespace carsync::test {
namespace {

namespace fs = std::filesystem;

// 300 consumers used to stay asleep until the next safety rescan after a burst like this.
TEST(LocalKvStore, QueueOverflowTellsWatchersThatAnyKeyMayHaveChanged) {
  const std::size_t queue = max_queued_events();
  if (queue == 0 || queue > 200'000) GTEST_SKIP() << "inotify queue size " << queue << " unknown or too large to fill";
  TempDir tmp;
  boost::asio::io_context ioc;
  runtime::BlockingPool pool(1);
  runtime::LocalKvStore store(tmp / "kv", pool, ioc.get_executor());
  std::set<std::string> seen;
  store.watch([&](const std::string&, const std::string& key) { seen.insert(key); });
  ASSERT_TRUE(store.watch_hkey("CHAINSTORE_SYNC"));

  // More events than the queue holds, while nobody reads: then the record that matters.
  const fs::path dir = backend::LocalKv(tmp / "kv").hkey_dir("CHAINSTORE_SYNC");
  const fs::path outside = tmp / "outside";
  fs::create_directories(outside);
  for (std::size_t i = 0; i < queue + 64; ++i) {
    const auto name = "noise-" + std::to_string(i);
    { std::ofstream(outside / name) << "x"; }
    fs::rename(outside / name, dir / name);
  }
  backend::LocalKv writer(tmp / "kv");
  ASSERT_TRUE(writer.hset("CHAINSTORE_SYNC", "late-key", boost::json::value(1)));

  bool watcher_ended = false;
  boost::asio::co_spawn(ioc, store.run_watcher(), [&](std::exception_ptr) { watcher_ended = true; });
  ASSERT_TRUE(run_until(ioc, [&] { return seen.count("") || seen.count("late-key"); }))
      << "the late record's change was lost with the overflow";
  EXPECT_TRUE(seen.count("")) << "no overflow signal";
  store.close();
  EXPECT_TRUE(run_until(ioc, [&] { return watcher_ended; }));
}

// A provider retiring a CID while a consumer downloads it used to pull the file from under
// the consumer's scan (quarantined at "extract"). The consumer now reads its own copy, and
// a CID already gone fails the download itself (errc::not_found, stage r1fs_download).
TEST(LocalContentStore, DownloadIsTheNodesOwnCopyUntilCleanedUp) {
  TempDir tmp;
  boost::asio::io_context ioc;
  runtime::BlockingPool pool(1);
  runtime::LocalContentStore store(tmp / "cas", tmp / "downloads", pool);
  test::write_file(tmp / "archive.tar.gz", "archive bytes");

  auto step = [&](auto task) {
    using R = typename decltype(task)::value_type;
    std::optional<R> out;
    boost::asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e, R r) {
      if (e) std::rethrow_exception(e);
      out.emplace(std::move(r));
    });
    EXPECT_TRUE(run_until(ioc, [&] { return out.has_value(); }));
    return std::move(*out);
  };
  auto cid = step(store.add_file(tmp / "archive.tar.gz"));
  ASSERT_TRUE(cid) << cid.error().message;
  auto path = step(store.get_file(*cid));
  ASSERT_TRUE(path) << path.error().message;
  EXPECT_EQ(path->parent_path(), tmp / "downloads");

  ASSERT_TRUE(step(store.delete_file(*cid, /*unpin_remote=*/true, /*cleanup_local_files=*/false)));
  EXPECT_EQ(test::read_file(*path), "archive bytes");
  auto gone = step(store.get_file(*cid));
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, make_error_code(errc::not_found));

  ASSERT_TRUE(step(store.delete_file(*cid, /*unpin_remote=*/false, /*cleanup_local_files=*/true)));
  EXPECT_FALSE(fs::exists(*path));
}

// Issue 10: the provider's archive goes into the store by rename, and the consumer's copy
// is a hard link handed over unverified with the digest its CID names (the scan checks it
// while it streams); get_file keeps verifying (CLI and other readers do not scan).
TEST(LocalContentStore, OwnedFileIsTakenAndFetchedUnverifiedWithItsDigest) {
  TempDir tmp;
  boost::asio::io_context ioc;
  runtime::BlockingPool pool(1);
  runtime::LocalContentStore store(tmp / "cas", tmp / "downloads", pool);
  auto step = [&](auto task) {
    using R = typename decltype(task)::value_type;
    std::optional<R> out;
    boost::asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e, R r) {
      if (e) std::rethrow_exception(e);
      out.emplace(std::move(r));
    });
    EXPECT_TRUE(run_until(ioc, [&] { return out.has_value(); }));
    return std::move(*out);
  };
  const std::string bytes = "archive bytes";
  io::Sha256 h;
  h.update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  const io::Sha256Digest digest = h.finish();
  test::write_file(tmp / "archive.tar.gz", bytes);

  ASSERT_EQ(store.cid_for(digest), backend::cid_from_digest(digest));
  auto cid = step(store.add_owned_file(tmp / "archive.tar.gz", digest));
  ASSERT_TRUE(cid) << cid.error().message;
  EXPECT_EQ(*cid, backend::cid_from_digest(digest));
  EXPECT_FALSE(fs::exists(tmp / "archive.tar.gz"));
  EXPECT_TRUE(store.holds(*cid));

  auto fetched = step(store.fetch_file(*cid));
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(fetched->path, tmp / "downloads" / *cid);
  ASSERT_TRUE(fetched->sha256.has_value());
  EXPECT_EQ(*fetched->sha256, digest);
  EXPECT_EQ(test::read_file(fetched->path), bytes);

  // Bytes swapped in the store come through fetch_file (the reader's check catches them)
  // but never through get_file.
  fs::remove(fetched->path);
  fs::remove(tmp / "cas" / "blobs" / *cid);
  test::write_file(tmp / "cas" / "blobs" / *cid, "archive bytez");
  auto swapped = step(store.fetch_file(*cid));
  ASSERT_TRUE(swapped) << swapped.error().message;
  EXPECT_EQ(test::read_file(swapped->path), "archive bytez");
  EXPECT_EQ(*swapped->sha256, digest);
  fs::remove(swapped->path);
  auto verified = step(store.get_file(*cid));
  ASSERT_FALSE(verified);
  EXPECT_EQ(verified.error().code, make_error_code(errc::corrupt_archive));
  auto bad = step(store.fetch_file("../x"));
  EXPECT_FALSE(bad);
}

}  // namespace
}  // namespace carsync::test
