#include "runtime/control_api.hpp"

#include "core/json_text.hpp"
#include "io/history_store.hpp"
#include "runtime/event_queue.hpp"
#include "runtime/status_json.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <vector>

namespace carsync::runtime {

namespace asio = boost::asio;
namespace json = boost::json;
using net::ControlRequest;
using net::ControlResponse;
using net::error_response;
using net::Task;

namespace {

ControlResponse json_response(unsigned status, const json::value& body) {
  ControlResponse r;
  r.status = status;
  r.body = core::to_canonical_json(body);  // floats as Python writes them: 0.0, not 0E0
  r.body += '\n';
  return r;
}

// HTTP status and stable code for each of carsync's errors (docs/control-api.md).
ControlResponse from_error(const Error& e) {
  if (e.code.category() != carsync_category()) return error_response(500, "internal", e.message, e.field);
  switch (static_cast<errc>(e.code.value())) {
    case errc::bad_config: return error_response(400, "bad_config", e.message, e.field);
    case errc::invalid_request: return error_response(400, "invalid_request", e.message, e.field);
    case errc::unknown_instance: return error_response(404, "not_found", e.message, e.field);
    case errc::duplicate_instance:
    case errc::busy: return error_response(409, "conflict", e.message, e.field);
    case errc::wrong_role: return error_response(409, "wrong_role", e.message, e.field);
    case errc::not_running:
    case errc::cancelled: return error_response(503, "unavailable", e.message, e.field);
    case errc::timeout: return error_response(504, "timeout", e.message, e.field);
    default: return error_response(500, "internal", e.message, e.field);
  }
}

ControlResponse not_found(std::string_view what) { return error_response(404, "not_found", what); }

ControlResponse method_not_allowed(std::string_view allow) {
  auto r = error_response(405, "method_not_allowed", "allowed: " + std::string(allow));
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

// What a Node completion delivers, awaited with a deadline. The completion runs on the
// node's executor and posts to the waiter's; the waiter checks for a value before it waits,
// and nothing runs between that check and the wait, so no wake-up is lost.
template <class T>
struct Pending {
  explicit Pending(asio::any_io_executor ex) : timer(std::move(ex), asio::steady_timer::time_point::max()) {}
  asio::steady_timer timer;
  std::optional<T> value;
};

template <class T>
std::function<void(T)> completer(const std::shared_ptr<Pending<T>>& p) {
  return [p](T v) {
    asio::post(p->timer.get_executor(), [p, v = std::move(v)]() mutable {
      p->value = std::move(v);
      p->timer.cancel();
    });
  };
}

template <class T>
Task<std::optional<T>> await_for(std::shared_ptr<Pending<T>> p, std::chrono::steady_clock::duration limit) {
  if (!p->value) {
    p->timer.expires_after(limit);
    boost::system::error_code ec;
    co_await p->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return std::move(p->value);
}

ControlResponse no_answer(std::string_view what) {
  return error_response(504, "timeout", std::string(what) + ": the node has not finished yet; it goes on");
}

// "key" of the query, or nullopt.
std::optional<std::string> query(const boost::urls::url_view& u, std::string_view key) {
  auto it = u.params().find(key);
  if (it == u.params().end()) return std::nullopt;
  return std::string((*it).value);
}

bool truthy(const std::optional<std::string>& v) { return v && (*v == "true" || *v == "1" || v->empty()); }

std::optional<std::size_t> count_of(const std::string& text) {
  std::size_t n = 0;
  const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (err != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return n;
}

// The body as an instance object with its id (the path's, for update).
Result<json::object> instance_object(const std::string& body, const std::string* path_id) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec) return make_error(errc::invalid_request, "the body is not JSON: " + ec.message());
  if (!v.is_object()) return make_error(errc::invalid_request, "the body must be one instance object");
  auto o = std::move(v.as_object());
  if (path_id) {
    const auto* id = o.if_contains("id");
    if (!id) o["id"] = *path_id;
    else if (!id->is_string() || id->as_string() != *path_id)
      return make_error(errc::bad_config, "\"id\" in the body differs from the instance in the path", "id");
  }
  return o;
}

std::string sse(std::string_view event, std::uint64_t id, const json::value& data) {
  std::string out = "event: ";
  out += event;
  out += "\nid: " + std::to_string(id) + "\ndata: ";
  out += core::to_canonical_json(data);  // one line: every newline is escaped
  out += "\n\n";
  return out;
}

}  // namespace

// One /v1/events client: its pending events (bounded, see EventQueue) and the timer that
// wakes its writer.
struct ControlApi::EventStream {
  static constexpr std::size_t max_pending = 1024;
  explicit EventStream(asio::any_io_executor ex) : wake(std::move(ex), asio::steady_timer::time_point::max()) {}

  EventQueue pending{max_pending};
  asio::steady_timer wake;
  bool stopped = false;
  Subscription subscription;
};

namespace {

// The snapshot, then every event the node reports (progress samples included), with a
// comment line after `keep_alive` of silence so proxies and clients see the stream alive.
Task<void> run_event_stream(std::shared_ptr<ControlApi::EventStream> s, NodeStatus snapshot,
                            std::chrono::steady_clock::duration keep_alive, net::StreamWriter& out) {
  std::uint64_t sent = snapshot.generation;
  std::string first = "retry: 2000\n\n" + sse("snapshot", sent, to_json(snapshot));
  auto w = co_await out.write(std::move(first));
  while (w && !s->stopped) {
    if (s->pending.empty()) {
      s->wake.expires_after(keep_alive);
      boost::system::error_code ec;
      co_await s->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      auto cs = co_await asio::this_coro::cancellation_state;
      if (s->stopped || cs.cancelled() != asio::cancellation_type::none) break;
      if (s->pending.empty()) {
        if (!ec) w = co_await out.write(": keep-alive\n\n");  // the timer ran out: a quiet stream
        continue;
      }
    }
    const std::vector<StatusEvent> batch = s->pending.take();
    std::string text;
    for (const auto& e : batch) {
      if (e.generation <= sent) continue;  // already in the snapshot
      text += sse("instance", e.generation, to_json(e));
      sent = e.generation;
    }
    if (!text.empty()) w = co_await out.write(std::move(text));
  }
  s->subscription.reset();
}

}  // namespace

ControlApi::ControlApi(Node& node, ApiInstances& catalog, std::set<std::string> file_ids, ControlApiOptions options)
    : node_(node), catalog_(catalog), file_ids_(std::move(file_ids)), options_(std::move(options)) {}

ControlApi::~ControlApi() { stop(); }

void ControlApi::stop() {
  for (auto& weak : streams_)
    if (auto s = weak.lock()) {
      s->stopped = true;
      s->subscription.reset();
      s->wake.cancel();
    }
  streams_.clear();
}

Task<ControlResponse> ControlApi::handle(ControlRequest request) {
  auto parsed = boost::urls::parse_origin_form(request.target);
  if (!parsed) co_return error_response(400, "bad_request", "malformed request target");
  const boost::urls::url_view url = *parsed;
  std::vector<std::string> seg;
  for (auto s : url.segments()) seg.emplace_back(s);
  const std::string& m = request.method;
  const bool get = m == "GET" || m == "HEAD";
  if (request.read_only && !get)
    co_return error_response(403, "read_only", "this address is read-only: changes go through the control socket");

  if (seg.empty() || (seg.size() == 1 && seg[0].empty())) {
    if (!get) co_return method_not_allowed("GET");
    if (!options_.render_page) co_return not_found("no status page in this build");
    ControlResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body = options_.render_page(node_.status());
    r.headers.emplace_back("Cache-Control", "no-store");
    co_return r;
  }
  if (seg.size() == 1 && seg[0] == "metrics") {
    if (!get) co_return method_not_allowed("GET");
    if (!options_.metrics_text) co_return not_found("no metrics in this build");
    ControlResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = options_.metrics_text();
    co_return r;
  }
  if (seg.size() < 2 || seg[0] != "v1") co_return not_found("no route " + std::string(url.path()));
  const std::string& what = seg[1];
  if (seg.size() == 2 && what == "health") {
    if (!get) co_return method_not_allowed("GET");
    co_return health();
  }
  if (seg.size() == 2 && what == "events") {
    if (!get) co_return method_not_allowed("GET");
    co_return events();
  }
  if (what != "instances") co_return not_found("no route " + std::string(url.path()));
  if (seg.size() == 2) {
    if (get) co_return json_response(200, to_json(node_.status()));
    if (m == "POST") co_return co_await add(std::move(request.body));
    co_return method_not_allowed("GET, POST");
  }
  const std::string& id = seg[2];
  if (seg.size() == 3) {
    if (get) co_return instance(id);
    if (m == "PUT") co_return co_await update(id, std::move(request.body));
    if (m == "DELETE") co_return co_await remove(id, truthy(query(url, "delete_state")));
    co_return method_not_allowed("GET, PUT, DELETE");
  }
  if (seg.size() == 4 && seg[3] == "publish") {
    if (m != "POST") co_return method_not_allowed("POST");
    const auto wait = query(url, "wait");
    co_return co_await publish(id, std::move(request.body), !(wait && (*wait == "false" || *wait == "0")));
  }
  if (seg.size() == 4 && seg[3] == "unhalt") {
    if (m != "POST") co_return method_not_allowed("POST");
    co_return co_await unhalt(id);
  }
  if (seg.size() == 4 && seg[3] == "history") {
    if (!get) co_return method_not_allowed("GET");
    const auto limit_text = query(url, "limit");
    std::size_t limit = 20;
    if (limit_text) {
      const auto n = count_of(*limit_text);
      if (!n || *n == 0 || *n > 1000) co_return error_response(400, "bad_request", "limit must be 1..1000", "limit");
      limit = *n;
    }
    co_return co_await history(id, query(url, "dir").value_or("both"), limit);
  }
  co_return not_found("no route " + std::string(url.path()));
}

ControlResponse ControlApi::health() const {
  const auto s = node_.status();
  std::size_t halted = 0, quarantined = 0, disabled = 0;
  for (const auto& i : s.instances) {
    halted += i.halted;
    quarantined += i.quarantine.has_value();
    disabled += i.config_error.has_value();
  }
  const char* state = !s.running ? "stopping" : (halted || quarantined) ? "degraded" : "ok";
  return json_response(s.running ? 200 : 503, json::object{{"status", state},
                                                           {"version", options_.version},
                                                           {"node_id", s.node_id},
                                                           {"running", s.running},
                                                           {"instances", s.instances.size()},
                                                           {"halted", halted},
                                                           {"quarantined", quarantined},
                                                           {"disabled", disabled}});
}

ControlResponse ControlApi::instance(const std::string& id) const {
  const auto i = node_.status(id);
  if (!i) return not_found("no instance \"" + id + "\"");
  auto o = to_json(*i);
  o["source"] = file_ids_.contains(id) ? "file" : "api";
  return json_response(200, o);
}

NodeConfig ControlApi::defaults() const {
  NodeConfig c;
  c.system_volume_image = options_.system_volume_image;
  return c;
}

Task<Result<void>> ControlApi::save_catalog() {
  auto snapshot = catalog_.snapshot();
  co_return co_await pool_.run([&] { return catalog_.save(snapshot); });
}

Task<ControlResponse> ControlApi::add(std::string body) {
  auto object = instance_object(body, nullptr);
  if (!object) co_return from_error(object.error());
  if (const auto* given = object->if_contains("id"); given && given->is_string()) {
    const std::string id(given->as_string());
    if (file_ids_.contains(id) || catalog_.contains(id) || node_.status(id))
      co_return error_response(409, "conflict", "instance \"" + id + "\" exists already", "id");
  }
  InstanceConfig config;
  try {
    config = parse_instance_config(body, defaults());
  } catch (const ConfigError& e) {
    co_return error_response(400, "bad_request", e.what(), e.field());
  }
  if (config.error) co_return error_response(400, "bad_config", *config.error, config.error_field);
  const std::string id = config.id;

  catalog_.put(id, *object);
  auto saved = co_await save_catalog();
  if (!saved) {
    catalog_.erase(id);
    co_return from_error(saved.error());
  }
  auto done = std::make_shared<Pending<Result<void>>>(co_await asio::this_coro::executor);
  auto accepted = node_.add_instance(std::move(config), completer(done));
  if (!accepted) {
    catalog_.erase(id);
    co_await save_catalog();
    co_return from_error(accepted.error());
  }
  auto result = co_await await_for(done, options_.change_timeout);
  if (!result) co_return no_answer("add " + id);
  if (!*result) co_return from_error(result->error());
  auto r = instance(id);
  if (r.status == 200) r.status = 201;
  co_return r;
}

Task<ControlResponse> ControlApi::update(std::string id, std::string body) {
  if (file_ids_.contains(id))
    co_return error_response(409, "conflict",
                             "instance \"" + id + "\" is defined by the configuration file: edit it and reload (SIGHUP)", "id");
  if (!catalog_.contains(id)) co_return not_found("no instance \"" + id + "\" added through the API");
  auto object = instance_object(body, &id);
  if (!object) co_return from_error(object.error());
  InstanceConfig config;
  try {
    config = parse_instance_config(json::serialize(*object), defaults());
  } catch (const ConfigError& e) {
    co_return error_response(400, "bad_request", e.what(), e.field());
  }
  if (config.error) co_return error_response(400, "bad_config", *config.error, config.error_field);

  auto done = std::make_shared<Pending<Result<void>>>(co_await asio::this_coro::executor);
  auto accepted = node_.update_instance(std::move(config), completer(done));
  if (!accepted) co_return from_error(accepted.error());
  catalog_.put(id, *object);
  auto saved = co_await save_catalog();
  if (!saved) spdlog::error("[{}] updated, but the change is not saved for the next start: {}", id, saved.error().message);
  auto result = co_await await_for(done, options_.change_timeout);
  if (!result) co_return no_answer("update " + id);
  if (!*result) co_return from_error(result->error());
  co_return instance(id);
}

Task<ControlResponse> ControlApi::remove(std::string id, bool delete_state) {
  if (file_ids_.contains(id))
    co_return error_response(409, "conflict",
                             "instance \"" + id + "\" is defined by the configuration file: edit it and reload (SIGHUP)", "id");
  if (!catalog_.contains(id)) co_return not_found("no instance \"" + id + "\" added through the API");
  auto done = std::make_shared<Pending<Result<void>>>(co_await asio::this_coro::executor);
  auto accepted = node_.remove_instance(id, RemoveOptions{.delete_state = delete_state}, completer(done));
  if (!accepted) co_return from_error(accepted.error());
  catalog_.erase(id);
  auto saved = co_await save_catalog();
  if (!saved) spdlog::error("[{}] removed, but the change is not saved for the next start: {}", id, saved.error().message);
  auto result = co_await await_for(done, options_.change_timeout);
  if (!result) co_return no_answer("remove " + id);
  if (!*result) co_return from_error(result->error());
  co_return json_response(200, json::object{{"removed", id}});
}

Task<ControlResponse> ControlApi::publish(std::string id, std::string body, bool wait) {
  auto done = std::make_shared<Pending<Result<SyncPoint>>>(co_await asio::this_coro::executor);
  auto accepted = node_.publish(id, body, completer(done));
  if (!accepted) co_return from_error(accepted.error());
  if (!wait) co_return json_response(202, json::object{{"accepted", true}});
  auto result = co_await await_for(done, options_.change_timeout);
  if (!result) co_return no_answer("publish " + id);
  if (!*result) co_return from_error(result->error());
  const SyncPoint& p = **result;
  co_return json_response(200, json::object{{"cid", p.cid}, {"version", p.version}, {"time", p.time}, {"size", p.size}});
}

Task<ControlResponse> ControlApi::unhalt(std::string id) {
  auto done = std::make_shared<Pending<Result<void>>>(co_await asio::this_coro::executor);
  auto accepted = node_.unhalt(id, completer(done));
  if (!accepted) co_return from_error(accepted.error());
  auto result = co_await await_for(done, options_.change_timeout);
  if (!result) co_return no_answer("unhalt " + id);
  if (!*result) co_return from_error(result->error());
  co_return json_response(200, json::object{{"unhalted", id}});
}

Task<ControlResponse> ControlApi::history(std::string id, std::string dir, std::size_t limit) {
  if (dir != "sent" && dir != "received" && dir != "both")
    co_return error_response(400, "bad_request", "dir must be sent, received or both", "dir");
  // The id is one the node knows (validated at configuration): never a path of the caller's.
  if (!node_.status(id)) co_return not_found("no instance \"" + id + "\"");
  const auto root = options_.data_dir / "instances" / id / "sync_history";
  auto listed = co_await pool_.run([&] {
    io::HistoryStore store(root);
    json::object out;
    for (auto d : {core::HistoryDir::sent, core::HistoryDir::received}) {
      if (dir != "both" && dir != core::to_string(d)) continue;
      auto entries = store.entries(d);
      const std::size_t skip = entries.size() > limit ? entries.size() - limit : 0;
      json::array list;
      for (std::size_t k = skip; k < entries.size(); ++k) list.emplace_back(std::move(entries[k].body));
      out[core::to_string(d)] = std::move(list);
    }
    return out;
  });
  co_return json_response(200, listed);
}

ControlResponse ControlApi::events() {
  auto stream = std::make_shared<EventStream>(node_.get_executor());
  std::weak_ptr<EventStream> weak = stream;
  // Subscribed before the snapshot is taken: nothing between them is lost, and what the
  // snapshot already holds is skipped by generation.
  stream->subscription = node_.subscribe([weak](const StatusEvent& e) {
    auto s = weak.lock();
    if (!s) return;
    s->pending.push(e);
    s->wake.cancel();
  });
  auto snapshot = node_.status();
  streams_.remove_if([](const auto& w) { return w.expired(); });
  streams_.push_back(stream);
  ControlResponse r;
  r.content_type = "text/event-stream";
  r.headers.emplace_back("Cache-Control", "no-store");
  r.stream = [stream, snapshot = std::move(snapshot), keep_alive = options_.keep_alive_interval](net::StreamWriter& out) {
    return run_event_stream(stream, snapshot, keep_alive, out);
  };
  return r;
}

}  // namespace carsync::runtime
