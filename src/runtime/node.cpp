#include "carsync/node.hpp"

#include "core/clock.hpp"
#include "core/instance_validation.hpp"
#include "core/request.hpp"
#include "io/data_dir_lock.hpp"
#include "runtime/dir_watcher.hpp"
#include "runtime/instance_supervisor.hpp"
#include "runtime/local_backend.hpp"
#include "io/signal_blocker.hpp"
#include "runtime/node_metrics.hpp"
#include "runtime/task_group.hpp"
#include "net/docker_client.hpp"
#include "net/r1_backend.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <sys/inotify.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

namespace carsync {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using runtime::InstanceSupervisor;

namespace {

constexpr std::uint32_t control_events = IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF;

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "carsync";
  return buf;
}

// What the parser noticed but tolerated: logged whenever a configuration is taken in (start,
// add, update, reload), so an operator sees it at the moment it matters.
void log_warnings(const InstanceConfig& ic) {
  for (const auto& w : ic.sync.warnings) spdlog::warn("[{}] configuration: {}", ic.id, w);
}

Error shutting_down() { return make_error(errc::not_running, "the node is shutting down"); }

Error unknown(std::string_view id) {
  return make_error(errc::unknown_instance, "no instance \"" + std::string(id) + "\"", "id");
}

}  // namespace

// One membership change, applied in call order by the node's op loop.
struct MembershipOp {
  enum class Kind { add, update, remove, barrier } kind;  // barrier: completes after what precedes it
  InstanceConfig config;  // add, update
  std::string id;         // remove
  RemoveOptions options;  // remove
  Completion done;
};

struct Node::Impl : std::enable_shared_from_this<Node::Impl> {
  enum class State { created, running, stopping, stopped };

  NodeConfig cfg;
  io::DataDirLock lock;
  core::SystemClock clock;
  std::unique_ptr<asio::io_context> own_ioc;  // when the node runs its own loop
  asio::any_io_executor ex;
  std::thread own_thread;
  // Compression threads, one per usable CPU, shared by every build: limits.archive_workers
  // bounds how many builds run at once (each holds a cpu_pool thread), and each build then
  // compresses on every core, as pigz and zstd -T0 do; idle threads cost nothing. An operator
  // who wants carsync on fewer cores pins it (systemd CPUAffinity=/AllowedCPUs=, a cpuset,
  // taskset): the count follows the affinity mask. Declared before the pools whose jobs use
  // it, so it is destroyed after them.
  io::ComputePool compute;
  runtime::BlockingPool io_pool;
  runtime::BlockingPool cpu_pool;
  io::EngineKind engine;
  std::unique_ptr<backend::ContentStore> cas;
  std::unique_ptr<backend::KvStore> kv;
  runtime::LocalKvStore* local_kv = nullptr;  // the embedded backend (change notification)
  runtime::NodeMetrics metrics;              // thread-safe on its own (metrics_text)
  std::unique_ptr<runtime::NodeServices> services;
  runtime::DirWatcher control_watch;
  std::unordered_map<int, std::shared_ptr<InstanceSupervisor>> watched;  // wd -> instance
  asio::steady_timer rescan;
  // Expires at max while no instance moves bytes; a phase that moves them arms it.
  asio::steady_timer progress_wake;
  // id -> the phase and bytes last announced by a sample (executor); a phase change
  // announces 0 bytes, since each step starts its counters at 0.
  std::map<std::string, std::pair<Phase, std::uint64_t>> progress_told;
  asio::steady_timer stop_requested;  // cancelled by stop(): wakes serve()
  asio::experimental::channel<void(boost::system::error_code)> ops_wake;
  runtime::TaskGroup services_group;  // watchers, rescan, the op loop
  runtime::TaskGroup stops;           // instance stops (removal, update, shutdown)

  // Shared with other threads.
  mutable std::mutex mu;
  State state = State::created;
  std::vector<std::shared_ptr<InstanceSupervisor>> members;  // in configuration order
  std::map<std::string, InstanceConfig> desired;            // the membership as callers see it
  std::deque<MembershipOp> ops;
  std::uint64_t generation = 0;
  std::uint64_t next_subscriber = 1;
  std::map<std::uint64_t, std::function<void(const StatusEvent&)>> subscribers;
  // Held while subscriber callbacks run (outside mu): Subscription::reset() takes it, so it
  // returns only once no callback of it is running. Recursive: a callback may unsubscribe.
  std::recursive_mutex calling;
  std::vector<std::function<void()>> on_stopped;
  std::condition_variable stopped_cv;

  Impl(NodeConfig c, std::unique_ptr<asio::io_context> ioc, asio::any_io_executor executor)
      : cfg(std::move(c)),
        lock(take_lock(cfg)),
        own_ioc(std::move(ioc)),
        ex(own_ioc ? own_ioc->get_executor() : std::move(executor)),
        compute(0),
        io_pool(cfg.limits.io_workers),
        cpu_pool(cfg.limits.archive_workers),
        engine(io::select_engine(cfg.limits.file_engine)),
        control_watch(ex),
        rescan(ex),
        progress_wake(ex, asio::steady_timer::time_point::max()),
        stop_requested(ex, asio::steady_timer::time_point::max()),
        ops_wake(ex, 1),
        services_group(ex, "node"),
        stops(ex, "node stops") {
    if (cfg.node_id.empty()) cfg.node_id = host_name();
    if (cfg.backend.kind == "r1") {
      std::tie(cas, kv) = net::make_r1_backend(cfg.backend, ex, cfg.data_dir / "downloads", cfg.limits.store_timeout);
    } else {
      const auto stores = cfg.backend.store_dir.empty() ? cfg.data_dir : cfg.backend.store_dir;
      cas = std::make_unique<runtime::LocalContentStore>(stores / "cas", cfg.data_dir / "downloads", io_pool);
      auto local = std::make_unique<runtime::LocalKvStore>(stores / "kv", io_pool, ex);
      local_kv = local.get();
      kv = std::move(local);
    }
    services = std::make_unique<runtime::NodeServices>(runtime::NodeServices{
        .cas = *cas,
        .kv = *kv,
        .io_pool = io_pool,
        .cpu_pool = cpu_pool,
        .compute = &compute,
        .clock = clock,
        .policy = core::MountPolicy{.volume_roots = cfg.volume_roots, .legacy_root = cfg.legacy_volumes_root},
        .node_id = cfg.node_id,
        .data_dir = cfg.data_dir,
        .engine = engine,
        .limits = cfg.limits,
        .metrics = &metrics});
  }

  // Membership changes are taken until shutdown begins (mu held).
  bool accepting() const { return state == State::created || state == State::running; }

  static io::DataDirLock take_lock(const NodeConfig& c) {
    std::error_code ec;
    fs::create_directories(c.data_dir, ec);
    if (ec) throw ConfigError("data_dir " + c.data_dir.string() + ": " + ec.message(), "data_dir");
    auto l = io::DataDirLock::acquire(c.data_dir);
    if (!l) throw ConfigError(l.error().message, "data_dir");
    return std::move(*l);
  }

  // ---- membership -------------------------------------------------------------------

  std::unique_ptr<backend::ContainerRuntime> container_for(InstanceConfig& ic) {
    if (!ic.container || ic.error) return std::make_unique<backend::NoContainer>();
    auto socket = net::docker_socket_path(cfg.docker_socket);
    if (!socket) {
      ic.error = "instance \"" + ic.id + "\": container: " + socket.error().message;
      ic.error_field = "container";
      return std::make_unique<backend::NoContainer>();
    }
    return std::make_unique<net::DockerRuntime>(*ic.container, *socket);
  }

  std::shared_ptr<InstanceSupervisor> make_member(InstanceConfig ic) {
    auto container = container_for(ic);
    metrics.add_instance(ic.id, ic.sync.role);
    auto sup = std::make_shared<InstanceSupervisor>(std::move(ic), *services, std::move(container), ex);
    sup->status_cell().on_change([this](InstanceStatus& s) { announce(s, false); });
    return sup;
  }

  // Stamps a generation and tells every subscriber (on the executor).
  void announce(InstanceStatus& s, bool removed, bool progress = false) {
    std::vector<std::pair<std::uint64_t, std::function<void(const StatusEvent&)>>> to_call;
    {
      std::lock_guard l(mu);
      s.generation = ++generation;
      for (const auto& [key, cb] : subscribers) to_call.emplace_back(key, cb);
    }
    StatusEvent ev{.generation = s.generation, .instance = s, .removed = removed, .progress = progress};
    if (!progress && !removed && moves_bytes(s.phase))
      asio::post(ex, [self = shared_from_this()] { self->arm_progress(); });
    std::lock_guard in_callbacks(calling);
    for (const auto& [key, cb] : to_call) {
      {
        std::lock_guard l(mu);
        if (!subscribers.contains(key)) continue;  // reset() since the copy: it must not be called
      }
      cb(ev);
    }
  }

  std::shared_ptr<InstanceSupervisor> find(std::string_view id) const {
    for (const auto& m : members)
      if (m->config().id == id) return m;
    return nullptr;
  }

  void enqueue(MembershipOp op) {
    ops.push_back(std::move(op));
    asio::post(ex, [self = shared_from_this()] { self->ops_wake.try_send(boost::system::error_code{}); });
  }

  asio::awaitable<void> op_loop() {
    for (;;) {
      std::optional<MembershipOp> op;
      {
        std::lock_guard l(mu);
        if (!ops.empty()) {
          op = std::move(ops.front());
          ops.pop_front();
        }
      }
      if (!op) {
        boost::system::error_code ec;
        co_await ops_wake.async_receive(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        continue;
      }
      Result<void> r;
      switch (op->kind) {
        case MembershipOp::Kind::add: r = co_await add(std::move(op->config)); break;
        case MembershipOp::Kind::update: r = co_await update(std::move(op->config)); break;
        case MembershipOp::Kind::remove: r = co_await remove(op->id, op->options); break;
        case MembershipOp::Kind::barrier: break;
      }
      if (op->done) op->done(r);
    }
  }

  asio::awaitable<Result<void>> add(InstanceConfig ic) {
    auto sup = make_member(std::move(ic));
    {
      std::lock_guard l(mu);
      members.push_back(sup);
    }
    co_await start_member(sup);
    co_return Result<void>{};
  }

  asio::awaitable<void> start_member(const std::shared_ptr<InstanceSupervisor>& sup) {
    co_await sup->prepare();
    if (state != State::running) co_return;
    if (!sup->active()) co_return;
    watch_control_dir(sup);
    sup->start();
  }

  asio::awaitable<Result<void>> update(InstanceConfig ic) {
    // Its running request finishes first (grace, then cancellation); history and state stay.
    auto id = ic.id;
    co_await retire_member(id, RemoveOptions{}, /*restore=*/false, /*announce_removed=*/false);
    co_return co_await add(std::move(ic));
  }

  asio::awaitable<Result<void>> remove(std::string id, RemoveOptions options) {
    const bool found = co_await retire_member(id, options, /*restore=*/true, /*announce_removed=*/true);
    if (!found) co_return unknown(id);
    co_return Result<void>{};
  }

  asio::awaitable<bool> retire_member(const std::string& id, RemoveOptions options, bool restore, bool announce_removed) {
    std::shared_ptr<InstanceSupervisor> sup;
    {
      std::lock_guard l(mu);
      sup = find(id);
    }
    if (!sup) co_return false;
    sup->status_cell().update([](InstanceStatus& s) { s.phase = Phase::removing; });
    unwatch(sup);
    co_await sup->stop(cfg.limits.shutdown_grace, restore);
    co_await sup->release(options.delete_state);
    auto last = sup->status();
    {
      std::lock_guard l(mu);
      std::erase(members, sup);
    }
    sup->status_cell().on_change({});
    if (announce_removed) {
      metrics.remove_instance(id);
      announce(last, true);
      spdlog::info("[{}] instance removed{}", id, options.delete_state ? " (state deleted)" : "");
    }
    co_return true;
  }

  // ---- control directories and change notification ------------------------------------

  void watch_control_dir(const std::shared_ptr<InstanceSupervisor>& sup) {
    std::weak_ptr<InstanceSupervisor> weak = sup;
    auto wd = control_watch.watch(sup->control().control_dir(), control_events,
                                  [this, weak](const io::InotifyEvent& ev) {
                                    if (auto s = weak.lock()) on_control_event(s, ev);
                                  });
    if (wd) watched[*wd] = sup;
    else spdlog::error("[{}] cannot watch control directory: {}", sup->config().id, wd.error().message);
  }

  void unwatch(const std::shared_ptr<InstanceSupervisor>& sup) {
    for (auto it = watched.begin(); it != watched.end();) {
      if (it->second == sup) {
        control_watch.unwatch(it->first);
        it = watched.erase(it);
      } else {
        ++it;
      }
    }
  }

  bool is_watched(const std::shared_ptr<InstanceSupervisor>& sup) const {
    for (const auto& [wd, s] : watched)
      if (s == sup) return true;
    return false;
  }

  void on_control_event(const std::shared_ptr<InstanceSupervisor>& sup, const io::InotifyEvent& ev) {
    if (ev.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
      // The directory went away; the next rescan re-provisions and re-watches it.
      for (auto it = watched.begin(); it != watched.end();) it = it->second == sup ? watched.erase(it) : std::next(it);
      return;
    }
    if (ev.name == io::request_name) sup->poke();
  }

  std::vector<std::shared_ptr<InstanceSupervisor>> snapshot_members() const {
    std::lock_guard l(mu);
    return members;
  }

  asio::awaitable<void> rescan_loop() {
    for (;;) {
      rescan.expires_after(cfg.limits.rescan_interval);
      boost::system::error_code ec;
      co_await rescan.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec || state != State::running) co_return;
      for (const auto& sup : snapshot_members()) {
        if (!sup->active() || sup->status().phase == Phase::removing) continue;
        if (!is_watched(sup)) {
          co_await io_pool.run([&] { return sup->control().provision(); });
          if (state != State::running) co_return;
          watch_control_dir(sup);
        }
        sup->poke();
      }
    }
  }

  // ---- progress events ----------------------------------------------------------------
  // Status events announce phase changes; bytes move in between. While some instance is in a
  // phase that moves bytes, the node samples it every progress_interval and announces the
  // sample when its counter moved, so every subscriber (event streams, the daemon's progress
  // lines) gets the same samples instead of each polling status().

  void arm_progress() {
    if (progress_wake.expiry() == asio::steady_timer::time_point::max())
      progress_wake.expires_after(cfg.limits.progress_interval);  // wakes progress_loop's wait
  }

  asio::awaitable<void> progress_loop() {
    for (;;) {
      boost::system::error_code ec;
      co_await progress_wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (state != State::running) co_return;
      if (ec) continue;  // re-armed (or cancelled by shutdown): wait for the new expiry
      bool busy = false;
      for (const auto& sup : snapshot_members()) {
        auto s = sup->status();
        if (!moves_bytes(s.phase)) {
          progress_told.erase(s.id);
          continue;
        }
        busy = true;
        auto& told = progress_told[s.id];
        if (told.first != s.phase) told = {s.phase, 0};
        if (told.second == s.progress.done) continue;
        told.second = s.progress.done;
        announce(s, false, /*progress=*/true);
      }
      if (busy) {
        progress_wake.expires_after(cfg.limits.progress_interval);
      } else {
        progress_told.clear();  // also forgets instances removed mid-step
        progress_wake.expires_at(asio::steady_timer::time_point::max());
      }
    }
  }

  // ---- the node's main coroutine ------------------------------------------------------

  asio::awaitable<void> serve() {
    auto self = shared_from_this();
    for (const auto& sup : snapshot_members()) co_await sup->prepare();
    if (state == State::running) {
      control_watch.on_overflow([this] {
        for (const auto& sup : snapshot_members()) sup->poke();
      });
      // A new record under a consumer's key wakes that consumer at once.
      if (local_kv) {
        local_kv->watch([this](const std::string&, const std::string& key) {
          // An empty key: the store's notifications overflowed, so every consumer looks.
          for (const auto& sup : snapshot_members())
            if (sup->role() == Role::consumer && (key.empty() || sup->sync_key() == key)) sup->poke();
        });
        if (auto w = local_kv->watch_hkey("CHAINSTORE_SYNC"); !w)
          spdlog::warn("kv change notification unavailable: {}", w.error().message);
        services_group.spawn(local_kv->run_watcher());
      }
      services_group.spawn(control_watch.run());
      services_group.spawn(rescan_loop());
      services_group.spawn(progress_loop());
      std::size_t active = 0;
      for (const auto& sup : snapshot_members()) {
        if (!sup->active()) continue;
        ++active;
        watch_control_dir(sup);
        sup->start();
      }
      spdlog::info("carsyncd ready: node={} instances={} active={} engine={} backend={} data_dir={}", cfg.node_id,
                   snapshot_members().size(), active, to_string(engine), cfg.backend.kind, cfg.data_dir.string());
      services_group.spawn(op_loop());  // membership changes queued meanwhile apply from here on
      boost::system::error_code ec;
      co_await stop_requested.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    co_await shutdown();
  }

  // Two-phase shutdown (Beast's server-flex-awaitable): nothing new starts, idle waits end,
  // every instance's running request gets the grace period, then terminal cancellation,
  // which the machines turn into undo or finish, each clean-up step bounded.
  asio::awaitable<void> shutdown() {
    const auto t0 = std::chrono::steady_clock::now();
    spdlog::info("shutting down: waiting up to {} s for running requests", cfg.limits.shutdown_grace.count());
    rescan.cancel();
    progress_wake.cancel();
    control_watch.close();
    if (local_kv) local_kv->close();
    ops_wake.close();
    {
      std::deque<MembershipOp> pending;
      {
        std::lock_guard l(mu);
        pending.swap(ops);
      }
      for (auto& op : pending)
        if (op.done) op.done(shutting_down());
    }
    for (const auto& sup : snapshot_members()) stops.spawn(stop_member(sup));
    co_await stops.wait();
    cpu_pool.cancel_all();
    // The node's own services end with their descriptors closed; a bounded wait, then terminal.
    const bool ended = co_await services_group.wait_for(std::chrono::seconds(5));
    if (!ended) {
      services_group.emit(asio::cancellation_type::terminal);
      co_await services_group.wait();
    }
    spdlog::info("all instances stopped in {:.3f} s",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  asio::awaitable<void> stop_member(std::shared_ptr<InstanceSupervisor> sup) {
    co_await sup->stop(cfg.limits.shutdown_grace, /*restore=*/false);
  }

  void begin_shutdown() {
    std::unique_lock l(mu);
    if (state == State::created) {
      state = State::stopped;
      l.unlock();
      finished();
      return;
    }
    if (state != State::running) return;
    state = State::stopping;
    l.unlock();
    stop_requested.cancel();
  }

  void finished() {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard l(mu);
      state = State::stopped;
      callbacks.swap(on_stopped);
    }
    stopped_cv.notify_all();
    for (auto& cb : callbacks) cb();
  }

  void start() {
    {
      std::lock_guard l(mu);
      if (state != State::created) return;
      state = State::running;
    }
    asio::co_spawn(ex, serve(), [self = shared_from_this()](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          spdlog::critical("node stopped by an exception: {}", x.what());
        }
      }
      self->finished();
    });
  }
};

// ---- Subscription -------------------------------------------------------------------------

Subscription::~Subscription() { reset(); }

void Subscription::reset() {
  if (cancel_) std::exchange(cancel_, {})();
}

// ---- Node ---------------------------------------------------------------------------------

Node::Node(NodeConfig config) : Node(std::move(config), asio::any_io_executor{}) {}

Node::Node(NodeConfig config, asio::any_io_executor executor) {
  auto ioc = executor ? nullptr : std::make_unique<asio::io_context>(1);
  impl_ = std::make_shared<Impl>(std::move(config), std::move(ioc), std::move(executor));
  auto& im = *impl_;
  for (auto ic : im.cfg.instances) {
    log_warnings(ic);
    im.desired.emplace(ic.id, ic);
    im.members.push_back(im.make_member(std::move(ic)));
  }
}

Node::~Node() {
  stop();
  if (impl_->own_thread.joinable()) impl_->own_thread.join();
  // Handlers posted to the node's own loop after it ended hold the node: run them out so
  // nothing keeps it (and its data_dir lock) alive. On a host's executor the node finishes its
  // shutdown there, owning itself meanwhile.
  if (impl_->own_ioc) {
    impl_->own_ioc->restart();
    impl_->own_ioc->poll();
  }
}

void Node::start() {
  impl_->start();
  if (impl_->own_ioc && !impl_->own_thread.joinable()) {
    // The embedding application's signals are its own: the node's thread never takes one.
    io::SignalBlocker blocked;
    impl_->own_thread = std::thread([im = impl_] { im->own_ioc->run(); });
  }
}

void Node::run() {
  if (!impl_->own_ioc) throw std::logic_error("carsync::Node::run() needs the node's own io_context");
  impl_->start();
  impl_->own_ioc->run();
}

void Node::stop() {
  std::unique_lock l(impl_->mu);
  const auto state = impl_->state;
  l.unlock();
  // A node that was never started has nothing on the executor: it stops here and now.
  if (state == Impl::State::created) return impl_->begin_shutdown();
  if (state == Impl::State::running) asio::post(impl_->ex, [im = impl_] { im->begin_shutdown(); });
}

void Node::wait() {
  std::unique_lock l(impl_->mu);
  impl_->stopped_cv.wait(l, [&] { return impl_->state == Impl::State::stopped; });
}

bool Node::wait_for(std::chrono::milliseconds timeout) {
  std::unique_lock l(impl_->mu);
  return impl_->stopped_cv.wait_for(l, timeout, [&] { return impl_->state == Impl::State::stopped; });
}

void Node::on_stopped(std::function<void()> callback) {
  std::unique_lock l(impl_->mu);
  if (impl_->state != Impl::State::stopped) {
    impl_->on_stopped.push_back(std::move(callback));
    return;
  }
  l.unlock();
  asio::post(impl_->ex, std::move(callback));
}

Result<void> Node::add_instance(InstanceConfig instance, Completion done) {
  if (auto bad = core::validate_instance(instance)) return *bad;
  log_warnings(instance);
  std::lock_guard l(impl_->mu);
  if (!impl_->accepting()) return shutting_down();
  if (impl_->desired.contains(instance.id))
    return make_error(errc::duplicate_instance, "instance \"" + instance.id + "\" exists already", "id");
  impl_->desired.emplace(instance.id, instance);
  impl_->enqueue({.kind = MembershipOp::Kind::add, .config = std::move(instance), .id = {}, .options = {},
                  .done = std::move(done)});
  return {};
}

Result<void> Node::update_instance(InstanceConfig instance, Completion done) {
  if (auto bad = core::validate_instance(instance)) return *bad;
  log_warnings(instance);
  std::lock_guard l(impl_->mu);
  if (!impl_->accepting()) return shutting_down();
  auto it = impl_->desired.find(instance.id);
  if (it == impl_->desired.end()) return unknown(instance.id);
  it->second = instance;
  impl_->enqueue({.kind = MembershipOp::Kind::update, .config = std::move(instance), .id = {}, .options = {},
                  .done = std::move(done)});
  return {};
}

Result<void> Node::remove_instance(std::string_view id, RemoveOptions options, Completion done) {
  std::lock_guard l(impl_->mu);
  if (!impl_->accepting()) return shutting_down();
  if (!impl_->desired.erase(std::string(id))) return unknown(id);
  impl_->enqueue({.kind = MembershipOp::Kind::remove, .config = {}, .id = std::string(id), .options = options,
                  .done = std::move(done)});
  return {};
}

Result<void> Node::reconfigure(NodeConfig config, Completion done) {
  auto& im = *impl_;
  if (config.data_dir != im.cfg.data_dir || config.backend.kind != im.cfg.backend.kind ||
      config.backend.store_dir != im.cfg.backend.store_dir ||
      config.backend.cstore_url != im.cfg.backend.cstore_url || config.backend.r1fs_url != im.cfg.backend.r1fs_url ||
      config.volume_roots != im.cfg.volume_roots || config.docker_socket != im.cfg.docker_socket)
    spdlog::warn("reload: data_dir, backend, volume_roots and docker_socket take effect at the next start");
  std::lock_guard l(im.mu);
  if (!im.accepting()) return shutting_down();
  std::size_t added = 0, updated = 0, removed = 0;
  std::map<std::string, InstanceConfig> next;
  for (auto& ic : config.instances) {
    log_warnings(ic);
    next.emplace(ic.id, ic);
  }
  for (auto it = im.desired.begin(); it != im.desired.end();) {
    if (next.contains(it->first)) {
      ++it;
      continue;
    }
    im.enqueue({.kind = MembershipOp::Kind::remove, .config = {}, .id = it->first, .options = {}, .done = {}});
    it = im.desired.erase(it);
    ++removed;
  }
  for (auto& [id, ic] : next) {
    auto it = im.desired.find(id);
    if (it == im.desired.end()) {
      im.enqueue({.kind = MembershipOp::Kind::add, .config = ic, .id = {}, .options = {}, .done = {}});
      im.desired.emplace(id, ic);
      ++added;
    } else if (!(it->second == ic)) {
      im.enqueue({.kind = MembershipOp::Kind::update, .config = ic, .id = {}, .options = {}, .done = {}});
      it->second = ic;
      ++updated;
    }
  }
  spdlog::info("reload: {} instances added, {} updated, {} removed, {} unchanged", added, updated, removed,
               next.size() - added - updated);
  // The completion follows every change queued above.
  im.enqueue({.kind = MembershipOp::Kind::barrier, .config = {}, .id = {}, .options = {}, .done = std::move(done)});
  return {};
}

Result<void> Node::publish(std::string_view id, std::string_view request_json, PublishCompletion done) {
  std::shared_ptr<InstanceSupervisor> sup;
  {
    std::lock_guard l(impl_->mu);
    if (impl_->state != Impl::State::running) return make_error(errc::not_running, "the node is not running");
    sup = impl_->find(id);
  }
  if (!sup || sup->status().phase == Phase::removing) return unknown(id);
  const auto& ic = sup->config();
  if (ic.sync.role != Role::provider)
    return make_error(errc::wrong_role, "instance \"" + ic.id + "\" is not a provider", "SYNC.TYPE");
  if (!sup->status().enabled) return make_error(errc::not_running, "instance \"" + ic.id + "\" is disabled");
  core::RequestContext rctx{.mounts = ic.volumes,
                            .policy = &impl_->services->policy,
                            .allow_online_capture = ic.sync.allow_online_capture};
  if (request_json.size() > core::max_request_bytes)
    return make_error(errc::invalid_request, "request is larger than " + std::to_string(core::max_request_bytes) + " bytes");
  auto parsed = core::parse_request(std::string(request_json), rctx);
  if (!parsed) return make_error(errc::invalid_request, parsed.error().error.message);
  if (!sup->reserve_publish())
    return make_error(errc::busy, "instance \"" + ic.id + "\" has a publish pending or running");
  asio::post(impl_->ex, [sup, body = std::string(request_json), done = std::move(done)]() mutable {
    sup->publish(std::move(body), std::move(done));
  });
  return {};
}

Result<void> Node::unhalt(std::string_view id, Completion done) {
  std::shared_ptr<InstanceSupervisor> sup;
  {
    std::lock_guard l(impl_->mu);
    if (impl_->state != Impl::State::running) return make_error(errc::not_running, "the node is not running");
    sup = impl_->find(id);
  }
  if (!sup) return unknown(id);
  asio::post(impl_->ex, [sup, done = std::move(done)]() mutable { sup->unhalt(std::move(done)); });
  return {};
}

NodeStatus Node::status() const {
  std::lock_guard l(impl_->mu);
  NodeStatus s;
  s.node_id = impl_->cfg.node_id;
  s.file_engine = std::string(io::to_string(impl_->engine));
  s.running = impl_->state == Impl::State::running;
  s.generation = impl_->generation;
  for (const auto& m : impl_->members) s.instances.push_back(m->status());
  return s;
}

std::optional<InstanceStatus> Node::status(std::string_view id) const {
  std::lock_guard l(impl_->mu);
  if (const auto m = impl_->find(id)) return m->status();
  return std::nullopt;
}

Subscription Node::subscribe(std::function<void(const StatusEvent&)> callback) {
  std::lock_guard l(impl_->mu);
  const auto key = impl_->next_subscriber++;
  impl_->subscribers.emplace(key, std::move(callback));
  std::weak_ptr<Impl> weak = impl_;
  return Subscription([weak, key] {
    if (auto im = weak.lock()) {
      std::lock_guard no_callback_running(im->calling);
      std::lock_guard l(im->mu);
      im->subscribers.erase(key);
    }
  });
}

std::string Node::metrics_text() const { return impl_->metrics.render(status()); }

asio::any_io_executor Node::get_executor() const noexcept { return impl_->ex; }

}  // namespace carsync
