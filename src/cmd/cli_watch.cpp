#include "cmd/cli_watch.hpp"

#include "cmd/cli_api.hpp"
#include "cmd/cli_render.hpp"
#include "cmd/cli_sse.hpp"
#include "net/http_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>

namespace carsync::cmd {

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Terminal {
  std::size_t width = 80, height = 24;
};

Terminal terminal_size() {
  Terminal t;
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
    t.width = ws.ws_col;
    t.height = ws.ws_row;
  }
  return t;
}

void write_out(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

struct Watch {
  WatchOptions options;
  bool tty = false;
  asio::io_context io{1};
  WatchModel model;
  SseParser parser;
  bool dirty = true;
  bool interrupted = false;
  bool have_snapshot = false;
  std::size_t snapshots = 0;  // one per (re)connection: the stream opens with one
  bool reconnecting = false;  // the stream was lost; the next snapshot says it is back
  std::size_t drawn_lines = 0;
  double last_draw = 0;
  int code = kOk;
  std::string failure;

  void finish(int exit_code, std::string why) {
    if (interrupted || code != kOk) return;
    code = exit_code;
    failure = std::move(why);
    io.stop();
  }

  // Redraws in place: back to the first line of the previous frame, each line cleared.
  void draw() {
    const double now = wall_now();
    const Terminal term = terminal_size();
    auto lines = model.frame(now, term.width, term.height > 1 ? term.height - 1 : 1);
    std::string out;
    if (drawn_lines > 0) out += fmt::format("\x1b[{}F", drawn_lines);
    for (const auto& l : lines) out += l + "\x1b[K\n";
    out += "\x1b[J";
    write_out(out);
    drawn_lines = lines.size();
    dirty = false;
    last_draw = now;
  }

  void on_event(const SseEvent& e) {
    if (e.event == "snapshot") {  // every (re)connection opens with one
      ++snapshots;
      if (reconnecting && !tty) std::cerr << "carsync: watch: reconnected" << std::endl;
      reconnecting = false;
    }
    if (options.json) {
      write_out(e.data + "\n");
      return;
    }
    boost::system::error_code ec;
    json::value data = json::parse(e.data, ec);
    if (ec || !data.is_object()) return;
    const double now = wall_now();
    if (e.event == "snapshot") {
      model.snapshot(data.get_object(), now);
      have_snapshot = true;
      if (!tty) {
        if (const auto* list = data.get_object().if_contains("instances"); list && list->is_array())
          for (const auto& s : list->get_array())
            if (const auto* id = s.is_object() ? s.get_object().if_contains("id") : nullptr; id && id->is_string())
              print_change(id->get_string(), now);
      }
    } else if (e.event == "instance") {
      model.update(data.get_object(), now);
      const auto* inst = data.get_object().if_contains("instance");
      const auto* id = inst && inst->is_object() ? inst->get_object().if_contains("id") : nullptr;
      if (!tty && id && id->is_string()) {
        const auto* removed = data.get_object().if_contains("removed");
        if (removed && removed->is_bool() && removed->get_bool())
          write_out(fmt::format("{} removed\n", std::string_view(id->get_string())));
        else
          print_change(id->get_string(), now);
      }
    }
    dirty = true;
  }

  void print_change(std::string_view id, double now) {
    if (auto line = model.change_line(id, now); !line.empty()) write_out(line + "\n");
  }

  bool on_bytes(std::string_view bytes) {
    for (const auto& e : parser.feed(bytes)) on_event(e);
    return !interrupted;
  }
};

// Follows the event stream. When carsyncd ends it (a restart, a stop) the watch reconnects
// every 250 ms for up to options.reconnect_for_s; a reconnection starts with a fresh snapshot.
// Without a terminal the loss and the return are said on stderr (stdout keeps its lines).
asio::awaitable<void> follow(Watch& w, net::HttpClient& http) {
  std::function<bool(std::string_view)> sink = [&w](std::string_view bytes) { return w.on_bytes(bytes); };
  asio::steady_timer pause(w.io);
  std::optional<std::chrono::steady_clock::time_point> lost_at;
  for (;;) {
    const std::size_t before = w.snapshots;
    w.parser = SseParser{};  // a cut stream may have left half an event
    auto r = co_await http.stream("/v1/events", sink, "control API /v1/events");
    if (w.interrupted) co_return;
    if (r && r->status / 100 != 2) {
      ApiAnswer a;
      a.status = r->status;
      a.body = r->body;
      boost::system::error_code ec;
      a.json = json::parse(a.body, ec);
      w.finish(exit_code_for(a), error_text(a));
      co_return;
    }
    const auto now = std::chrono::steady_clock::now();
    const std::string why = r ? "carsyncd closed the event stream (it is stopping?)" : r.error().message;
    if (w.snapshots > before) {  // this attempt was connected: the loss starts now
      lost_at = now;
      w.reconnecting = true;
      if (w.options.reconnect_for_s > 0 && !w.tty)
        std::cerr << fmt::format("carsync: watch: {}; reconnecting for up to {:g} s", why, w.options.reconnect_for_s)
                  << std::endl;
    } else if (!lost_at) {  // never connected: nothing to wait for
      w.finish(kUnreachable, why);
      co_return;
    }
    if (now - *lost_at >= std::chrono::duration<double>(w.options.reconnect_for_s)) {
      w.finish(kUnreachable, w.options.reconnect_for_s > 0
                                 ? fmt::format("{}; no answer for {:g} s", why, w.options.reconnect_for_s)
                                 : why);
      co_return;
    }
    pause.expires_after(250ms);
    co_await pause.async_wait(asio::use_awaitable);
  }
}

// Terminal mode: the frame is redrawn on changes (at most 5 times a second) and every
// second (ages move). The stream itself carries progress: the node samples the instances
// that move bytes every limits.progress_interval_ms (docs/control-api.md, Events).
asio::awaitable<void> redraw(Watch& w) {
  asio::steady_timer timer(w.io);
  for (;;) {
    timer.expires_after(200ms);
    co_await timer.async_wait(asio::use_awaitable);
    if (w.have_snapshot && (w.dirty || wall_now() - w.last_draw >= 1.0)) w.draw();
  }
}

}  // namespace

int run_watch(const WatchOptions& options) {
  Watch w;
  w.options = options;
  w.tty = !options.json && ::isatty(STDOUT_FILENO) == 1;
  net::HttpOptions http_options;
  http_options.io_timeout = 45s;  // the stream carries a keep-alive every 15 s
  http_options.attempts = 1;
  net::HttpClient http(w.io.get_executor(), control_endpoint(options.socket), http_options);

  // Ctrl-C (or SIGTERM) ends the watch; the last frame stays on the screen.
  asio::signal_set signals(w.io, SIGINT, SIGTERM);
  signals.async_wait([&w](const boost::system::error_code& ec, int) {
    if (ec) return;
    w.interrupted = true;
    w.io.stop();
  });

  asio::co_spawn(w.io, follow(w, http), asio::detached);
  if (w.tty) asio::co_spawn(w.io, redraw(w), asio::detached);
  w.io.run();
  if (w.tty && w.have_snapshot && !w.interrupted) w.draw();
  if (!w.failure.empty()) std::cerr << "carsync: watch: " << w.failure << '\n';
  return w.interrupted ? kOk : w.code;
}

}  // namespace carsync::cmd
