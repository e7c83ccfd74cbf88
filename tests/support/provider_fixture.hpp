#pragma once
// One provider instance over a TempDir and the fakes (spec §11 volume fixture): the system
// volume bound at /r1en_system with its control dir provisioned, a fixed-size volume
// "appdata" bound at /app/data, and an "anonymous" host dir outside both allowed roots
// bound at /app/legacy. run_once() drives runtime::run_provider_once to completion.
#include "io/control_files.hpp"
#include "io/history_store.hpp"
#include "runtime/blocking_pool.hpp"
#include "runtime/instance_context.hpp"
#include "runtime/provider_run.hpp"
#include "support/fakes.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::test {

namespace fs = std::filesystem;

class ProviderFixture {
 public:
  static constexpr std::string_view sync_key = "3b0c9a2e-5f41-4d7e-9a61-1f2d8c7b5e90";
  static constexpr std::string_view node_id = "node-test-1";

  ProviderFixture()
      : control(tmp / "x/fixed_volumes/mounts/r1en_system"),
        history(instance_dir() / "sync_history"),
        cas(tmp / "cas_out") {
    config.id = "p1";
    config.container = "app";
    config.system_volume = control.system_volume();
    config.volumes = {
        {control.system_volume().string(), "/r1en_system", "rw"},
        {appdata().string(), "/app/data", "rw"},
        {anon().string(), "/app/legacy", "rw"},
    };
    config.sync.enabled = true;
    config.sync.key = std::string(sync_key);
    config.sync.role = Role::provider;

    fs::create_directories(control.system_volume());
    fs::create_directories(appdata());
    fs::create_directories(anon());
    fs::create_directories(scratch());
    if (auto r = control.provision(); !r) throw std::runtime_error("provision: " + r.error().message);
  }

  fs::path appdata() const { return tmp / "x/fixed_volumes/mounts/appdata"; }
  fs::path anon() const { return tmp / "anon"; }
  fs::path instance_dir() const { return tmp / "data/instances/p1"; }
  fs::path scratch() const { return instance_dir() / "scratch"; }
  fs::path control_dir() const { return control.control_dir(); }
  fs::path control_file(std::string_view name) const { return control_dir() / name; }
  bool control_exists(std::string_view name) const {
    std::error_code ec;
    return fs::symlink_status(control_file(name), ec).type() != fs::file_type::not_found;
  }

  void write_request(std::string_view body) const { write_file(control_file(io::request_name), body); }

  boost::json::value control_json(std::string_view name) const { return parse(control_file(name)); }

  static boost::json::value parse(const fs::path& file) { return boost::json::parse(read_file(file)); }

  // Sent-history entry files (regular files only), sorted by name.
  std::vector<fs::path> sent_files() const {
    std::vector<fs::path> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(history.dir_path(core::HistoryDir::sent), ec))
      if (e.is_regular_file() && e.path().extension() == ".json" && !e.path().filename().string().starts_with("."))
        out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
  }

  // Everything left in the scratch dir (archives should never stay there).
  std::vector<std::string> scratch_entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(scratch())) out.push_back(e.path().filename().string());
    return out;
  }

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
                                    .scratch_dir = scratch(),
                                    .state_dir = instance_dir() / "state",
                                    .engine = io::EngineKind::portable,
                                    .limits = RuntimeLimits{},
                                    .status = nullptr,
                                    .metrics = metrics,
                                    .signing_keys = signing_keys,
                                    .last_signed_sequence = last_signed_sequence};
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
    return std::move(*result);
  }

  void run(boost::asio::awaitable<void> op) {
    bool done = false;
    std::exception_ptr error;
    boost::asio::co_spawn(ioc, std::move(op), [&](std::exception_ptr e) {
      error = e;
      done = true;
    });
    ioc.restart();
    ioc.run();
    if (error) std::rethrow_exception(error);
    if (!done) throw std::logic_error("coroutine did not finish");
  }

  runtime::ProviderRunOutcome run_once() {
    auto ctx = context();
    auto out = run(runtime::run_provider_once(ctx));
    last_signed_sequence = ctx.last_signed_sequence;  // kept across requests, as a supervisor keeps it
    return out;
  }

  // "signing": context() hands the keys and the last sequence to the run.
  std::vector<core::SecretKey> signing_keys;
  std::int64_t last_signed_sequence = 0;

  TempDir tmp;
  InstanceConfig config;
  io::ControlFiles control;
  io::HistoryStore history;
  FakeClock clock;
  FakeContentStore cas;
  FakeKvStore kv;
  FakeContainer container;
  runtime::NodeMetrics* metrics = nullptr;  // a test that checks the series sets one
  // Before the pools, so it is destroyed after them: a pool thread that has just posted a
  // job's completion may still be signalling the io_context when the test finishes; the
  // pools' destructors join those threads first.
  boost::asio::io_context ioc;
  runtime::BlockingPool io_pool{1};
  runtime::BlockingPool cpu_pool{1};
};

}  // namespace carsync::test
