#include "carsync/node.hpp"

#include "core/clock.hpp"
#include "runtime/dir_watcher.hpp"
#include "runtime/instance_supervisor.hpp"
#include "runtime/local_backend.hpp"
#include "net/docker_client.hpp"
#include "net/r1_backend.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <sys/inotify.h>
#include <unistd.h>

#include <atomic>
#include <tuple>
#include <csignal>
#include <filesystem>

namespace carsync {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using runtime::InstanceSupervisor;

namespace {

bool valid_instance_id(std::string_view id) {
  if (id.empty() || id.size() > 128 || id.front() == '.') return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "carsync";
  return buf;
}

constexpr std::uint32_t control_events = IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF;

}  // namespace

struct Node::Impl {
  NodeConfig cfg;
  core::SystemClock clock;
  asio::io_context ioc{1};
  runtime::BlockingPool io_pool;
  runtime::BlockingPool cpu_pool;
  io::EngineKind engine;
  std::unique_ptr<backend::ContentStore> cas;
  std::unique_ptr<backend::KvStore> kv;
  runtime::LocalKvStore* local_kv = nullptr;  // set for the embedded backend (change notification)
  std::unique_ptr<runtime::NodeServices> services;
  std::vector<std::unique_ptr<InstanceSupervisor>> instances;
  std::vector<std::unique_ptr<asio::cancellation_signal>> cancel;
  runtime::DirWatcher control_watch{ioc.get_executor()};
  std::unordered_map<int, std::size_t> watched;  // wd -> instance index
  asio::steady_timer rescan{ioc};
  std::vector<std::unique_ptr<asio::steady_timer>> poll_timers;
  asio::steady_timer grace{ioc};
  asio::signal_set signals{ioc};
  std::size_t running = 0;
  bool shutting_down = false;

  explicit Impl(NodeConfig c)
      : cfg(std::move(c)),
        io_pool(cfg.limits.io_workers),
        cpu_pool(cfg.limits.archive_workers),
        engine(io::select_engine(cfg.limits.file_engine)) {
    if (cfg.node_id.empty()) cfg.node_id = host_name();
    std::error_code ec;
    fs::create_directories(cfg.data_dir, ec);
    if (ec) throw ConfigError("data_dir " + cfg.data_dir.string() + ": " + ec.message());

    if (cfg.backend.kind == "r1") {
      std::tie(cas, kv) = net::make_r1_backend(cfg.backend, ioc.get_executor(), cfg.data_dir / "downloads",
                                               cfg.limits.store_timeout);
    } else {
      cas = std::make_unique<runtime::LocalContentStore>(cfg.data_dir / "cas", io_pool);
      auto local = std::make_unique<runtime::LocalKvStore>(cfg.data_dir / "kv", io_pool, ioc.get_executor());
      local_kv = local.get();
      kv = std::move(local);
    }
    services = std::make_unique<runtime::NodeServices>(runtime::NodeServices{
        .cas = *cas,
        .kv = *kv,
        .io_pool = io_pool,
        .cpu_pool = cpu_pool,
        .clock = clock,
        .policy = core::MountPolicy{.volume_roots = cfg.volume_roots, .legacy_root = cfg.legacy_volumes_root},
        .node_id = cfg.node_id,
        .data_dir = cfg.data_dir,
        .engine = engine,
        .limits = cfg.limits});

    for (auto& ic : cfg.instances) {
      if (!ic.error && !valid_instance_id(ic.id))
        ic.error = "instance \"" + ic.id + "\": id must be 1-128 of [A-Za-z0-9._-], not starting with '.'";
      instances.push_back(std::make_unique<InstanceSupervisor>(ic, *services, container_for(ic), ioc.get_executor()));
      cancel.push_back(std::make_unique<asio::cancellation_signal>());
    }
  }

  std::unique_ptr<backend::ContainerRuntime> container_for(InstanceConfig& ic) {
    if (!ic.container || ic.error) return std::make_unique<backend::NoContainer>();
    auto socket = net::docker_socket_path(cfg.docker_socket);
    if (!socket) {
      ic.error = "instance \"" + ic.id + "\": container: " + socket.error().message;
      return std::make_unique<backend::NoContainer>();
    }
    return std::make_unique<net::DockerRuntime>(*ic.container, *socket);
  }

  // A remote store has no change notification: consumers tick every POLL_INTERVAL.
  asio::awaitable<void> poll_loop(std::size_t i) {
    poll_timers.push_back(std::make_unique<asio::steady_timer>(ioc));
    auto& timer = *poll_timers.back();
    auto period = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(instances[i]->config().sync.poll_interval));
    for (;;) {
      timer.expires_after(period);
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec || shutting_down) co_return;
      instances[i]->poke();
    }
  }

  void watch_control_dir(std::size_t i) {
    auto& inst = *instances[i];
    auto wd = control_watch.watch(inst.control().control_dir(), control_events,
                                  [this, i](const io::InotifyEvent& ev) { on_control_event(i, ev); });
    if (wd) watched[*wd] = i;
    else spdlog::error("[{}] cannot watch control directory: {}", inst.config().id, wd.error().message);
  }

  void on_control_event(std::size_t i, const io::InotifyEvent& ev) {
    if (ev.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
      // The directory went away; the next rescan re-provisions and re-watches it.
      for (auto it = watched.begin(); it != watched.end();)
        it = it->second == i ? watched.erase(it) : std::next(it);
      return;
    }
    if (ev.name == io::request_name) instances[i]->poke();
  }

  asio::awaitable<void> rescan_loop() {
    for (;;) {
      rescan.expires_after(cfg.limits.rescan_interval);
      boost::system::error_code ec;
      co_await rescan.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec || shutting_down) co_return;
      for (std::size_t i = 0; i < instances.size(); ++i) {
        if (!instances[i]->active()) continue;
        bool is_watched = false;
        for (const auto& [wd, idx] : watched) is_watched |= idx == i;
        if (!is_watched) {
          co_await io_pool.run([&] { return instances[i]->control().provision(); });
          watch_control_dir(i);
        }
        instances[i]->poke();
      }
    }
  }

  asio::awaitable<void> serve() {
    for (auto& inst : instances) co_await inst->prepare();
    std::size_t active = 0;
    for (std::size_t i = 0; i < instances.size(); ++i) {
      if (!instances[i]->active()) continue;
      ++active;
      watch_control_dir(i);
    }
    control_watch.on_overflow([this] {
      for (auto& inst : instances) inst->poke();
    });
    // A new record under a consumer's key wakes that consumer at once.
    if (local_kv) {
      local_kv->watch([this](const std::string&, const std::string& key) {
        for (auto& inst : instances)
          if (inst->role() == Role::consumer && inst->sync_key() == key) inst->poke();
      });
      if (auto w = local_kv->watch_hkey("CHAINSTORE_SYNC"); !w)
        spdlog::warn("kv change notification unavailable: {}", w.error().message);
    }
    if (shutting_down) co_return;

    auto ex = ioc.get_executor();
    asio::co_spawn(ex, control_watch.run(), asio::detached);
    if (local_kv) asio::co_spawn(ex, local_kv->run_watcher(), asio::detached);
    for (std::size_t i = 0; i < instances.size(); ++i)
      if (!local_kv && instances[i]->active() && instances[i]->role() == Role::consumer)
        asio::co_spawn(ex, poll_loop(i), asio::detached);
    asio::co_spawn(ex, rescan_loop(), asio::detached);
    for (auto& inst : instances) asio::co_spawn(ex, inst->initial_sync_gate(), asio::detached);
    for (std::size_t i = 0; i < instances.size(); ++i) {
      ++running;
      asio::co_spawn(ex, instances[i]->run(),
                     asio::bind_cancellation_slot(cancel[i]->slot(), [this](std::exception_ptr e) {
                       if (e) spdlog::critical("instance supervisor ended by an exception");
                       if (--running == 0 && shutting_down) finish_shutdown();
                     }));
    }
    spdlog::info("carsyncd ready: node={} instances={} active={} engine={} backend={} data_dir={}",
                 cfg.node_id, instances.size(), active, to_string(engine), cfg.backend.kind,
                 cfg.data_dir.string());
  }

  // Phase 1: no new work; running lifecycles finish (restarting containers they stopped).
  void begin_shutdown() {
    if (shutting_down) return;
    shutting_down = true;
    spdlog::info("shutting down: waiting up to {} s for running requests",
                 cfg.limits.shutdown_grace.count());
    rescan.cancel();
    for (auto& t : poll_timers) t->cancel();
    signals.cancel();
    control_watch.close();
    if (local_kv) local_kv->close();
    for (auto& inst : instances) inst->close();
    if (running == 0) return finish_shutdown();
    // Phase 2: whatever is still running after the grace period is cancelled outright.
    grace.expires_after(cfg.limits.shutdown_grace);
    grace.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      spdlog::warn("shutdown grace expired: cancelling {} running lifecycles", running);
      cpu_pool.cancel_all();
      for (auto& c : cancel) c->emit(asio::cancellation_type::terminal);
    });
  }

  void finish_shutdown() {
    grace.cancel();
    spdlog::info("all instances stopped");
  }
};

Node::Node(NodeConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}

Node::~Node() = default;

void Node::run(bool handle_signals) {
  auto& im = *impl_;
  if (handle_signals) {
    im.signals.add(SIGTERM);
    im.signals.add(SIGINT);
    im.signals.async_wait([&im](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("received signal {}", sig);
      im.begin_shutdown();
    });
  }
  asio::co_spawn(im.ioc, im.serve(), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  im.ioc.run();
  im.io_pool.join();
  im.cpu_pool.join();
}

void Node::stop() {
  asio::post(impl_->ioc, [im = impl_.get()] { im->begin_shutdown(); });
}

NodeStatus Node::status() const {
  NodeStatus s;
  s.node_id = impl_->cfg.node_id;
  s.file_engine = std::string(io::to_string(impl_->engine));
  for (const auto& inst : impl_->instances) s.instances.push_back(inst->status());
  return s;
}

}  // namespace carsync
