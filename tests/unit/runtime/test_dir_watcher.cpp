// Control-directory change notification under load: when the inotify queue overflows, the
// watcher must say so (the node then pokes every instance, so a request whose event was
// dropped is still served) and keep delivering the events that follow.
#include "runtime/dir_watcher.hpp"
#include "support/inotify_queue.hpp"
#include "support/run_until.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <sys/inotify.h>

#include <fstream>
#include <set>
#include <string>

namespace carsync::test {
namespace {

namespace fs = std::filesystem;

TEST(DirWatcher, QueueOverflowIsReportedAndLaterEventsStillArrive) {
  const std::size_t queue = max_queued_events();
  if (queue == 0 || queue > 200'000) GTEST_SKIP() << "inotify queue size " << queue << " unknown or too large to fill";
  TempDir tmp;
  const fs::path dir = tmp / "volume-sync";
  fs::create_directories(dir);
  boost::asio::io_context ioc;
  runtime::DirWatcher watcher(ioc.get_executor());
  int overflows = 0;
  std::set<std::string> names;
  watcher.on_overflow([&] { ++overflows; });
  ASSERT_TRUE(watcher.watch(dir, IN_CLOSE_WRITE | IN_MOVED_TO, [&](const io::InotifyEvent& ev) { names.insert(ev.name); }));

  // More events than the queue holds while nobody reads (a daemon busy elsewhere).
  for (std::size_t i = 0; i < queue + 64; ++i) std::ofstream(dir / ("noise-" + std::to_string(i))) << "x";

  bool ended = false;
  boost::asio::co_spawn(ioc, watcher.run(), [&](std::exception_ptr) { ended = true; });
  ASSERT_TRUE(run_until(ioc, [&] { return overflows > 0; })) << "the overflow was not reported";
  EXPECT_FALSE(names.count("noise-" + std::to_string(queue + 63))) << "an event past the full queue was delivered";

  // The queue drained: the next request's rename is delivered as usual.
  std::ofstream(dir / ".request.json.tmp") << "{}";
  fs::rename(dir / ".request.json.tmp", dir / "request.json");
  EXPECT_TRUE(run_until(ioc, [&] { return names.count("request.json") > 0; })) << "no event after the overflow";
  EXPECT_EQ(overflows, 1);
  watcher.close();
  EXPECT_TRUE(run_until(ioc, [&] { return ended; }));
}

}  // namespace
}  // namespace carsync::test
