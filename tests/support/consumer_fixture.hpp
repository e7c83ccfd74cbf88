#pragma once
// One consumer instance over a TempDir and the fakes (spec §11 volume fixture): its own
// system volume bound at /r1en_system with the control dir provisioned, and a fixed-size
// volume "appdata" bound at /app/data. Records are published the way a provider would:
// a real archive is captured from a provider-side tree, its bytes are stored in the fake
// content store under a CID, and core::build_record's record is put under the sync key.
// run_once() drives runtime::run_consumer_once to completion; recover() runs
// runtime::recover_consumer.
#include "core/record.hpp"
#include "io/capture.hpp"
#include "io/control_files.hpp"
#include "io/file_engine.hpp"
#include "io/history_store.hpp"
#include "runtime/node_metrics.hpp"
#include "runtime/blocking_pool.hpp"
#include "runtime/consumer_run.hpp"
#include "runtime/instance_context.hpp"
#include "support/fakes.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::test {

namespace fs = std::filesystem;

class ConsumerFixture {
 public:
  static constexpr std::string_view sync_key = "7d1e4f0a-2c3b-4a5d-8e6f-9a0b1c2d3e4f";
  static constexpr std::string_view node_id = "node-consumer-1";
  static constexpr std::string_view provider_node_id = "node-provider-1";

  // What publish() put in the stores.
  struct Published {
    std::string cid;
    boost::json::object record;
  };

  ConsumerFixture()
      : control(tmp / "x/fixed_volumes/mounts/r1en_system"),
        history(instance_dir() / "sync_history"),
        cas(tmp / "downloads") {
    config.id = "c1";
    config.container = "app";
    config.system_volume = control.system_volume();
    config.volumes = {
        {control.system_volume().string(), "/r1en_system", "rw"},
        {appdata().string(), "/app/data", "rw"},
    };
    config.sync.enabled = true;
    config.sync.key = std::string(sync_key);
    config.sync.role = Role::consumer;

    fs::create_directories(control.system_volume());
    fs::create_directories(appdata());
    fs::create_directories(provider_tree());
    fs::create_directories(tmp / "downloads");
    fs::create_directories(state_dir());
    if (auto r = control.provision(); !r) throw std::runtime_error("provision: " + r.error().message);
  }

  fs::path appdata() const { return tmp / "x/fixed_volumes/mounts/appdata"; }
  // The provider's /app/data, which publish() captures.
  fs::path provider_tree() const { return tmp / "provider/appdata"; }
  fs::path instance_dir() const { return tmp / "data/instances/c1"; }
  fs::path state_dir() const { return instance_dir() / "sync_history/state"; }
  fs::path control_file(std::string_view name) const { return control.control_dir() / name; }
  bool control_exists(std::string_view name) const { return present(control_file(name)); }
  fs::path received_dir() const { return history.dir_path(core::HistoryDir::received); }

  static bool present(const fs::path& p) {
    std::error_code ec;
    return fs::symlink_status(p, ec).type() != fs::file_type::not_found;
  }
  static boost::json::value parse(const fs::path& file) { return boost::json::parse(read_file(file)); }

  boost::json::object last_apply() const { return parse(control_file(io::last_apply_name)).as_object(); }
  boost::json::object current_apply() const { return parse(state_dir() / "current_apply.json").as_object(); }
  std::vector<boost::json::object> received() const {
    std::vector<boost::json::object> out;
    for (auto& e : history.entries(core::HistoryDir::received)) out.push_back(std::move(e.body));
    return out;
  }
  // Parsed quarantine files, in file-name order.
  std::vector<boost::json::object> quarantine_files() const {
    std::vector<fs::path> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(state_dir() / "quarantine", ec)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    std::vector<boost::json::object> out;
    for (const auto& f : files) out.push_back(parse(f).as_object());
    return out;
  }

  // A tar.gz of the provider's tree as the offline capture builds it, members named from
  // `archive_paths` (each must be /app/data or below).
  fs::path capture(const std::vector<std::string>& archive_paths = {"/app/data"}) {
    std::vector<core::ResolvedPath> sources;
    for (const auto& p : archive_paths) {
      const auto rel = fs::path(p).lexically_relative("/app/data").string();
      sources.push_back({p, provider_tree().string(), "/app/data", rel == "." ? "" : rel});
    }
    auto out = tmp / "archives" / ("snapshot" + std::to_string(++archives_) + ".tar.gz");
    fs::create_directories(out.parent_path());
    auto reader = io::make_portable_reader({});
    auto built = io::build_offline_archive(sources, out, io::ArchiveOptions{}, *reader);
    if (!built) throw std::runtime_error("capture: " + built.error().message);
    return out;
  }

  // Stores `archive` under a fresh CID and publishes the record a provider would build for
  // it. `manifest_paths` is what the manifest claims, whatever the archive holds.
  Published publish_archive(const fs::path& archive, const std::vector<std::string>& manifest_paths,
                            std::int64_t version, boost::json::object metadata = {{"epoch", 1}}) {
    core::SyncRequest req;
    req.archive_paths = manifest_paths;
    req.metadata = std::move(metadata);
    core::PublishedSnapshot snap;
    snap.cid = "bafkcons" + std::to_string(++cids_);
    snap.version = version;
    snap.timestamp = static_cast<double>(version) + 0.73;
    snap.node_id = std::string(provider_node_id);
    snap.archive_size_bytes = fs::file_size(archive);
    cas.blobs[snap.cid] = read_file(archive);
    auto record = core::build_record(req, snap);
    put_record(record);
    return {snap.cid, std::move(record)};
  }

  // Captures the provider's tree and publishes it.
  Published publish(std::int64_t version = 1714742401, const std::vector<std::string>& paths = {"/app/data"}) {
    return publish_archive(capture(paths), paths, version);
  }

  void put_record(const boost::json::value& record) { kv.data[std::string(core::sync_hkey)][config.sync.key] = record; }

  RuntimeLimits limits;  // what context() hands the run
  std::vector<core::PublicKey> trusted_keys;  // "trust": context() hands them to the run
  runtime::NodeMetrics* metrics = nullptr;     // a test that checks the series sets one

  runtime::InstanceContext context() {
    return runtime::InstanceContext{.config = config,
                                    .policy = core::MountPolicy{},
                                    .node_id = std::string(node_id),
                                    .control = control,
                                    .history = history,
                                    .cas = cas,
                                    .kv = kv,
                                    .container = container,
                                    .io_pool = io_pool,
                                    .cpu_pool = cpu_pool,
                                    .clock = clock,
                                    .scratch_dir = instance_dir() / "scratch",
                                    .state_dir = state_dir(),
                                    .engine = io::EngineKind::portable,
                                    .limits = limits,
                                    .status = nullptr,
                                    .metrics = metrics,
                                    .trusted_keys = trusted_keys};
  }

  // Runs one coroutine on the fixture's io_context until everything it started is done.
  template <class T>
  T run(boost::asio::awaitable<T> op) {
    std::optional<T> result;
    std::exception_ptr error;
    boost::asio::co_spawn(ioc, std::move(op), [&](std::exception_ptr e, T v) {
      if (e) error = e;
      else result = std::move(v);
    });
    ioc.restart();
    ioc.run();
    if (error) std::rethrow_exception(error);
    if (!result) throw std::logic_error("coroutine did not finish");
    return std::move(*result);
  }

  runtime::ConsumerRunOutcome run_once() {
    auto ctx = context();
    return run(runtime::run_consumer_once(ctx, state));
  }

  bool recover() {
    auto ctx = context();
    return run(runtime::recover_consumer(ctx));
  }

  TempDir tmp;
  InstanceConfig config;
  io::ControlFiles control;
  io::HistoryStore history;
  FakeClock clock;
  FakeContentStore cas;
  FakeKvStore kv;
  FakeContainer container;
  runtime::ConsumerState state{SyncConfig{}.hsync_poll_interval};
  // Before the pools, so it is destroyed after them: a pool thread that has just posted a
  // job's completion may still be signalling the io_context when the test finishes; the
  // pools' destructors join those threads first.
  boost::asio::io_context ioc;
  runtime::BlockingPool io_pool{1};
  runtime::BlockingPool cpu_pool{1};

 private:
  int archives_ = 0;
  int cids_ = 0;
};

}  // namespace carsync::test
