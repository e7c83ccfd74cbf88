#include "tools/devnode/devnode.hpp"

#include "backend/cid.hpp"
#include "backend/local_cas.hpp"
#include "backend/local_kv.hpp"
#include "io/secure_fs.hpp"
#include "io/sha256.hpp"
#include "io/unique_fd.hpp"
#include "runtime/blocking_pool.hpp"
#include "tools/devnode/multipart_stream.hpp"
#include "tools/devnode/request_parse.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <random>
#include <span>
#include <unordered_set>

namespace carsync::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace urls = boost::urls;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;

// ---------------------------------------------------------------------------------------
// Fault plan

Result<FaultPlan> FaultPlan::parse(std::string_view spec) {
  FaultPlan plan;
  auto bad = [&](std::string_view rule, std::string_view why) {
    return make_error(errc::bad_config, "--faults rule \"" + std::string(rule) + "\": " + std::string(why));
  };
  while (!spec.empty()) {
    auto comma = spec.find(',');
    std::string_view rule = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    if (rule.empty()) continue;
    std::vector<std::string_view> parts;
    for (std::string_view rest = rule;;) {
      auto colon = rest.find(':');
      parts.push_back(rest.substr(0, colon));
      if (colon == std::string_view::npos) break;
      rest = rest.substr(colon + 1);
    }
    if (parts.size() < 2 || parts.size() > 3 || parts[0].empty()) return bad(rule, "expected ROUTE:ACTION[:WHEN]");
    Fault f;
    f.route = std::string(parts[0]);
    std::string_view action = parts[1];
    if (action == "hang") f.action = Action::hang;
    else if (action == "reset") f.action = Action::reset;
    else if (action == "truncate") f.action = Action::truncate;
    else if (action == "corrupt") f.action = Action::corrupt;
    else {
      unsigned status = 0;
      auto [p, ec] = std::from_chars(action.data(), action.data() + action.size(), status);
      if (ec != std::errc{} || p != action.data() + action.size() || status < 400 || status > 599)
        return bad(rule, "ACTION must be hang, reset, truncate, corrupt or a status 400..599");
      f.status = status;
    }
    if (parts.size() == 3) {
      std::string_view when = parts[2];
      if (!when.empty() && when[0] == '#') {
        unsigned n = 0;
        auto [p, ec] = std::from_chars(when.data() + 1, when.data() + when.size(), n);
        if (ec != std::errc{} || p != when.data() + when.size()) return bad(rule, "WHEN #N needs a count");
        f.first_n = n;
      } else {
        try {
          std::size_t used = 0;
          f.probability = std::stod(std::string(when), &used);
          if (used != when.size() || f.probability < 0 || f.probability > 1) throw std::invalid_argument("range");
        } catch (const std::exception&) {
          return bad(rule, "WHEN must be a probability in [0, 1] or #N");
        }
      }
    }
    plan.faults_.push_back(std::move(f));
  }
  return plan;
}

namespace {

// A rule's ROUTE may carry a condition, "get_file?cid=CID" or "hget?key=KEY": then it
// matches only requests with that decoded query parameter, so a test can fail one
// snapshot's download or one key's record and leave the rest alone. `request` is the
// route name, followed by "?NAME=VALUE&..." when the request has query parameters.
bool rule_matches(std::string_view rule, std::string_view request) {
  auto split = [](std::string_view s) {
    auto q = s.find('?');
    return q == std::string_view::npos ? std::pair{s, std::string_view{}} : std::pair{s.substr(0, q), s.substr(q + 1)};
  };
  auto [rule_route, condition] = split(rule);
  auto [route, query] = split(request);
  if (rule_route != "*" && rule_route != route) return false;
  if (condition.empty()) return true;
  for (std::string_view rest = query; !rest.empty();) {
    auto amp = rest.find('&');
    if (rest.substr(0, amp) == condition) return true;
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
  }
  return false;
}

}  // namespace

std::optional<FaultPlan::Fault> FaultPlan::pick(std::string_view route) {
  for (auto& f : faults_) {
    if (!rule_matches(f.route, route)) continue;
    if (f.first_n) {
      if (*f.first_n == 0) continue;
      --*f.first_n;
      return f;
    }
    // splitmix64: deterministic enough for tests, no shared global state.
    std::uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    if (static_cast<double>(z >> 11) / static_cast<double>(1ull << 53) < f.probability) return f;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------
// Helpers

namespace {

constexpr auto tok = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kChunk = 64 * 1024;

enum class Service { cstore, r1fs };

std::string_view name_of(Service s) { return s == Service::cstore ? "cstore" : "r1fs"; }

// The devnode-only traffic counters' route (devnode.hpp), as parse_request_target names it.
constexpr std::string_view kStatsRoute = "devnode/stats";

// §3: every JSON answer carries these eight keys.
json::object envelope(json::value result) {
  return json::object{
      {"result", std::move(result)},
      {"server_node_addr", "0xai_devnode"},
      {"evm_network", "devnet"},
      {"ee_node_alias", "carsync-devnode"},
      {"ee_node_address", "0xai_devnode"},
      {"ee_node_eth_address", "0x0000000000000000000000000000000000000000"},
      {"ee_node_network", "devnet"},
      {"ee_node_ver", "carsync-devnode/0.1"},
  };
}

struct Reply {
  unsigned status = 200;
  std::string body;       // JSON text, or:
  fs::path file;          // raw bytes of this file (get_file)
  std::string filename;   // its Content-Disposition name
};

Reply ok(json::value result) {
  Reply r;
  r.body = json::serialize(envelope(std::move(result)));
  return r;
}

Reply detail(unsigned status, std::string text) {
  Reply r;
  r.status = status;
  r.body = json::serialize(json::object{{"detail", std::move(text)}});
  return r;
}

Reply missing(std::string_view param) { return detail(422, "missing or invalid parameter: " + std::string(param)); }

// Removes a file when it goes out of scope.
struct TempFile {
  fs::path path;
  ~TempFile() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

// add_file's body as it was read: the `file` part's bytes, written once, straight into a
// temp file of the content store and hashed on the way (the store then adopts it by rename).
struct Upload {
  MultipartStream::Status status = MultipartStream::Status::malformed;
  bool has_file = false;
  std::string filename;
  TempFile file;  // in <cas>/tmp, named as LocalCas's own temps so that its sweep knows them
  io::Sha256Digest sha256{};
};

struct Incoming {
  http::verb method = http::verb::get;
  std::string route;
  std::map<std::string, std::string> query;
  std::string content_type;
  std::string body;  // every body except add_file's
  Upload upload;     // add_file's
};

std::optional<std::string> string_field(const json::object& o, std::string_view name) {
  const auto* v = o.if_contains(name);
  if (!v || !v->is_string() || v->get_string().empty()) return std::nullopt;
  return std::string(v->get_string());
}

bool bool_field(const json::object& o, std::string_view name, bool fallback) {
  const auto* v = o.if_contains(name);
  return v && v->is_bool() ? v->get_bool() : fallback;
}

std::optional<std::string> query_field(const Incoming& in, const std::string& name) {
  auto it = in.query.find(name);
  if (it == in.query.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

std::string random_hex() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// Plain base64 or a data URL (§6.6).
std::optional<std::string> base64_decode(std::string_view text) {
  if (text.starts_with("data:")) {
    auto comma = text.find(',');
    if (comma == std::string_view::npos) return std::nullopt;
    text = text.substr(comma + 1);
  }
  std::string clean;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) clean.push_back(c);
  if (clean.size() % 4 != 0) return std::nullopt;
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()), static_cast<int>(clean.size()));
  if (n < 0) return std::nullopt;
  std::size_t pad = 0;
  for (auto it = clean.rbegin(); it != clean.rend() && *it == '='; ++it) ++pad;
  out.resize(static_cast<std::size_t>(n) - std::min<std::size_t>(pad, static_cast<std::size_t>(n)));
  return out;
}

// Python pickle protocol 2 of a JSON value: what add_pickle stores.
void pickle_value(const json::value& v, std::string& out) {
  auto le = [&](std::uint64_t x, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(x >> (8 * i)));
  };
  switch (v.kind()) {
    case json::kind::null: out += 'N'; break;
    case json::kind::bool_: out += v.get_bool() ? '\x88' : '\x89'; break;
    case json::kind::int64:
    case json::kind::uint64: {
      bool is_signed = v.is_int64();
      std::int64_t i = is_signed ? v.get_int64() : 0;
      if (is_signed && i >= INT32_MIN && i <= INT32_MAX) {
        out += 'J';  // BININT
        le(static_cast<std::uint32_t>(i), 4);
      } else {  // LONG1: little-endian two's complement, 9 bytes covers every 64-bit value
        out += '\x8a';
        out += '\x09';
        std::uint64_t bits = is_signed ? static_cast<std::uint64_t>(i) : v.get_uint64();
        le(bits, 8);
        out += (is_signed && i < 0) ? '\xff' : '\x00';
      }
      break;
    }
    case json::kind::double_: {
      out += 'G';  // BINFLOAT, big-endian
      std::uint64_t bits;
      double d = v.get_double();
      std::memcpy(&bits, &d, sizeof bits);
      for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(bits >> (8 * i)));
      break;
    }
    case json::kind::string: {
      out += 'X';  // BINUNICODE
      le(v.get_string().size(), 4);
      out += v.get_string();
      break;
    }
    case json::kind::array:
      out += "](";  // EMPTY_LIST MARK ... APPENDS
      for (const auto& e : v.get_array()) pickle_value(e, out);
      out += 'e';
      break;
    case json::kind::object:
      out += "}(";  // EMPTY_DICT MARK ... SETITEMS
      for (const auto& [k, e] : v.get_object()) {
        pickle_value(json::value(k), out);
        pickle_value(e, out);
      }
      out += 'u';
      break;
  }
}

std::string pickle(const json::value& v) {
  std::string out = "\x80\x02";
  pickle_value(v, out);
  out += '.';
  return out;
}

std::string cid_of_bytes(std::string_view bytes) {
  backend::Sha256 h;
  h.update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  return backend::cid_from_digest(h.finish());
}

}  // namespace

// ---------------------------------------------------------------------------------------
// The server

struct Devnode::Impl {
  struct Connection {
    explicit Connection(tcp::socket s) : stream(std::move(s)) {}
    beast::tcp_stream stream;
    bool idle = true;  // waiting for a request (or hanging): stop() may cut it
  };

  Impl(asio::any_io_executor executor, DevnodeOptions o, FaultPlan f)
      : ex(executor),
        options(std::move(o)),
        faults(std::move(f)),
        cstore_acceptor(executor),
        r1fs_acceptor(executor),
        changed(executor, asio::steady_timer::time_point::max()),
        pool(2),
        kv(options.data_dir / "kv"),
        plain(options.data_dir / "devnode" / "keys"),
        cas(options.data_dir / "cas"),
        names_dir(options.data_dir / "devnode" / "names"),
        tmp_dir(options.data_dir / "devnode" / "tmp") {}

  asio::any_io_executor ex;
  DevnodeOptions options;
  FaultPlan faults;
  tcp::acceptor cstore_acceptor, r1fs_acceptor;
  asio::steady_timer changed;  // cancelled whenever a connection ends or stop() runs
  std::size_t active = 0;
  bool stopping = false;
  std::unordered_set<Connection*> connections;
  runtime::BlockingPool pool;
  backend::LocalKv kv;
  backend::LocalKv plain;  // set/get keys live in one hash
  backend::LocalCas cas;
  fs::path names_dir, tmp_dir;

  std::uint16_t cstore_port = 0, r1fs_port = 0;  // as bound (an ephemeral port resolved)
  // Plain counters: every connection coroutine runs on this one executor (see devnode.hpp).
  DevnodeStats cstore_stats, r1fs_stats;

  DevnodeStats& stats_of(Service s) { return s == Service::cstore ? cstore_stats : r1fs_stats; }

  Reply stats_reply(Service s) {
    const auto& st = stats_of(s);
    Reply r;
    r.body = json::serialize(json::object{
        {"service", name_of(s)},
        {"requests", st.requests},
        {"responses", st.responses},
        {"cut_responses", st.cut_responses},
        {"file_responses", st.file_responses},
        {"body_bytes_sent", st.body_bytes_sent},
        {"file_bytes_sent", st.file_bytes_sent},
        {"header_bytes_sent", st.header_bytes_sent},
        {"request_body_bytes_received", st.request_body_bytes_received},
    });
    return r;
  }

  std::string url(std::uint16_t port) const {
    auto address = asio::ip::make_address(options.listen);
    auto host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
    return "http://" + host + ":" + std::to_string(port);
  }

  // The timer never expires: cancel() (not expires_at, which would cut other waiters'
  // waits and make two waiters wake each other forever) is the notification.
  asio::awaitable<void> wait_changed() { co_await changed.async_wait(tok); }

  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, Service service) {
    for (;;) {
      while (!stopping && active >= options.max_connections) co_await wait_changed();
      if (stopping) co_return;
      auto [ec, socket] = co_await acceptor.async_accept(tok);
      if (stopping) co_return;
      if (ec) {
        spdlog::warn("devnode {}: accept: {}", name_of(service), ec.message());
        asio::steady_timer pause(ex, std::chrono::milliseconds(100));  // e.g. EMFILE: do not spin
        co_await pause.async_wait(tok);
        continue;
      }
      ++active;
      asio::co_spawn(ex, serve(std::move(socket), service), asio::detached);
    }
  }

  void stop() {
    stopping = true;
    boost::system::error_code ignored;
    cstore_acceptor.close(ignored);
    r1fs_acceptor.close(ignored);
    for (auto* c : connections)
      if (c->idle) c->stream.socket().close(ignored);
    changed.cancel();
  }

  // Reads the rest of the request body into `sink`, refusing more than `cap` bytes; counts
  // what it read into `counted` unless that is null (the stats route).
  enum class BodyStatus { ok, too_large, failed };
  asio::awaitable<BodyStatus> read_body(Connection& conn, beast::flat_buffer& buffer,
                                        http::request_parser<http::buffer_body>& parser, std::uint64_t cap,
                                        const std::function<bool(std::string_view)>& sink, DevnodeStats* counted) {
    std::unique_ptr<char[]> chunk(new char[kChunk]);
    std::uint64_t total = 0;
    while (!parser.is_done()) {
      parser.get().body().data = chunk.get();
      parser.get().body().size = kChunk;
      conn.stream.expires_after(options.io_timeout);
      auto [ec, n] = co_await http::async_read(conn.stream, buffer, parser, tok);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return BodyStatus::failed;
      std::size_t got = kChunk - parser.get().body().size;
      total += got;
      if (counted) counted->request_body_bytes_received += got;
      if (total > cap) co_return BodyStatus::too_large;
      if (!sink(std::string_view(chunk.get(), got))) co_return BodyStatus::failed;
    }
    co_return BodyStatus::ok;
  }

  asio::awaitable<void> serve(tcp::socket socket, Service service) {
    Connection conn(std::move(socket));
    connections.insert(&conn);
    beast::flat_buffer buffer(1024 * 1024);
    // Beast reads min(capacity - size, 64 KiB) per recv (read_size): left to grow on its own,
    // the capacity stays one request head's worth and an upload arrives ~1 KB per recv (1.1 M
    // recvs, timer re-arms and epoll waits for 1 GiB: devnode's one core saturated at ~160 MB/s).
    buffer.reserve(kChunk);
    boost::system::error_code ignored;
    while (!stopping) {
      conn.idle = true;
      http::request_parser<http::buffer_body> parser;
      parser.body_limit(boost::none);  // capped per route in read_body
      conn.stream.expires_after(options.io_timeout);
      auto [ec, n] = co_await http::async_read_header(conn.stream, buffer, parser, tok);
      conn.idle = false;
      if (ec) break;
      const auto started = std::chrono::steady_clock::now();
      auto& head = parser.get();

      Incoming in;
      in.method = head.method();
      in.content_type = std::string(head[http::field::content_type]);
      auto target = parse_request_target(head.target());
      in.route = std::move(target.route);
      in.query = std::move(target.query);
      // The stats route counts nothing of its own, so that reading the counters twice with
      // no traffic in between gives the same numbers.
      const bool stats_route = in.route == kStatsRoute;
      DevnodeStats* counted = stats_route ? nullptr : &stats_of(service);
      if (counted) ++counted->requests;

      if (head[http::field::expect] == "100-continue") {
        http::response<http::empty_body> cont{http::status::continue_, 11};
        conn.stream.expires_after(options.io_timeout);
        auto [cec, cn] = co_await http::async_write(conn.stream, cont, tok);
        if (counted) counted->header_bytes_sent += cn;
        if (cec) break;
      }

      // The body: add_file's multipart is parsed as it streams in and only its `file` part is
      // written (once, to a store temp); every other body is small JSON.
      const bool upload = service == Service::r1fs && in.route == "add_file";
      io::unique_fd upload_fd;
      std::unique_ptr<io::Sha256> upload_hash;
      std::optional<MultipartStream> multipart;
      if (upload) {
        const fs::path dir = cas.root() / "tmp";
        std::error_code mec;
        fs::create_directories(dir, mec);
        in.upload.file.path = dir / io::random_name("put." + std::to_string(::getpid()) + ".", ".tmp");
        upload_fd.reset(::open(in.upload.file.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (!upload_fd) {
          spdlog::error("devnode: create {}: {}", in.upload.file.path.string(), std::strerror(errno));
          in.upload.file.path.clear();
          break;
        }
        upload_hash = std::make_unique<io::Sha256>();
        MultipartStream::Limits limits;
        limits.max_field_bytes = static_cast<std::size_t>(options.max_json_bytes);
        // Writes go to the page cache, one chunk at a time: not worth a pool hop.
        multipart.emplace(header_param(in.content_type, "boundary"), limits, [&](std::string_view bytes) {
          upload_hash->update(std::as_bytes(std::span(bytes.data(), bytes.size())));
          auto w = io::write_all(upload_fd.get(), bytes);
          if (!w) spdlog::error("devnode: write {}: {}", in.upload.file.path.string(), w.error().message);
          return static_cast<bool>(w);
        });
      }
      std::function<bool(std::string_view)> sink = [&](std::string_view bytes) {
        if (!upload) {
          in.body.append(bytes);
          return true;
        }
        // A malformed or oversized body is still read to its end, to answer it on a live connection.
        return multipart->feed(bytes) != MultipartStream::Status::sink_failed;
      };
      auto body_status = co_await read_body(conn, buffer, parser, upload ? options.max_upload_bytes : options.max_json_bytes,
                                            sink, counted);
      if (upload) {
        in.upload.status = multipart->finish();
        in.upload.has_file = multipart->has_file();
        in.upload.filename = multipart->filename();
        in.upload.sha256 = upload_hash->finish();
        upload_fd.reset();
      }
      if (body_status == BodyStatus::failed) break;

      std::string request = in.route;  // what fault rules match: the route and its query
      char separator = '?';
      for (const auto& [name, value] : in.query) {
        request += separator + name + "=" + value;
        separator = '&';
      }
      // The stats route is kept out of fault matching: a "*" rule would break the counters'
      // readers (the benchmark), and reads would use up #N rules meant for the API's routes.
      auto fault = stats_route ? std::nullopt : faults.pick(request);
      if (fault && fault->action == FaultPlan::Action::hang) {
        spdlog::debug("devnode {}: {} {} -> (fault: hang)", name_of(service), std::string(http::to_string(in.method)), in.route);
        conn.idle = true;  // stop() may cut it; otherwise wait until the client gives up
        conn.stream.expires_never();
        char byte;
        for (;;) {
          auto [hec, hn] = co_await conn.stream.async_read_some(asio::buffer(&byte, 1), tok);
          if (hec) break;
        }
        break;
      }
      if (fault && fault->action == FaultPlan::Action::reset) {
        spdlog::debug("devnode {}: {} {} -> (fault: reset)", name_of(service), std::string(http::to_string(in.method)), in.route);
        conn.stream.socket().set_option(asio::socket_base::linger(true, 0), ignored);
        conn.stream.socket().close(ignored);
        break;
      }

      Reply reply;
      if (body_status == BodyStatus::too_large) reply = detail(413, "request body too large");
      else if (fault && fault->action == FaultPlan::Action::status) reply = detail(fault->status, "injected fault");
      else if (stats_route) reply = in.method == http::verb::get ? stats_reply(service) : detail(405, "Method Not Allowed");
      else reply = co_await handle(service, in);

      const bool keep_alive = head.keep_alive() && body_status == BodyStatus::ok && !stopping;
      bool written = co_await write_reply(conn, reply, keep_alive, fault, counted);
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
      spdlog::debug("devnode {}: {} {} -> {}{} ({} ms)", name_of(service), std::string(http::to_string(in.method)),
                    std::string(head.target()), reply.status, reply.file.empty() ? "" : " file", ms);
      if (!written || !keep_alive) break;
    }
    conn.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    conn.stream.socket().close(ignored);
    connections.erase(&conn);
    --active;
    changed.cancel();
  }

  // Writes the answer, counting into `counted` (unless null) the header and body bytes as
  // each write completes, so a cut answer counts what went out. The head and the body are
  // written separately for that reason, JSON answers too.
  asio::awaitable<bool> write_reply(Connection& conn, Reply& reply, bool keep_alive,
                                    const std::optional<FaultPlan::Fault>& fault, DevnodeStats* counted) {
    DevnodeStats ignored_stats;
    DevnodeStats& st = counted ? *counted : ignored_stats;
    const bool is_file = !reply.file.empty();
    auto finish = [&](bool complete) {
      ++(complete ? st.responses : st.cut_responses);
      if (is_file) ++st.file_responses;
      return complete;
    };
    if (!is_file) {
      http::response<http::empty_body> head{static_cast<http::status>(reply.status), 11};
      head.set(http::field::server, "carsync-devnode");
      head.set(http::field::content_type, "application/json");
      head.keep_alive(keep_alive);
      head.content_length(reply.body.size());
      // One gather write of head and body (two writes would meet Nagle and the peer's delayed
      // ACK: ~40 ms per answer); the head's length splits the count.
      std::ostringstream text;
      text << head.base();  // the status line, fields and blank line, as the serializer writes them
      const std::string head_text = std::move(text).str();
      const std::array<asio::const_buffer, 2> buffers{asio::buffer(head_text), asio::buffer(reply.body)};
      conn.stream.expires_after(options.io_timeout);
      auto [ec, n] = co_await asio::async_write(conn.stream, buffers, tok);
      st.header_bytes_sent += std::min(n, head_text.size());
      st.body_bytes_sent += n - std::min(n, head_text.size());
      co_return finish(!ec);
    }
    // A download: never a JSON content type (§6.3), whatever the file's name.
    io::unique_fd fd(::open(reply.file.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st_file {};
    if (!fd || ::fstat(fd.get(), &st_file) != 0) co_return finish(false);
    const auto size = static_cast<std::uint64_t>(st_file.st_size);
    http::response<http::empty_body> head{http::status::ok, 11};
    head.set(http::field::server, "carsync-devnode");
    head.set(http::field::content_type, "application/octet-stream");
    std::string name;
    for (char c : reply.filename) name.push_back(c == '"' || c == '\\' || c == '\r' || c == '\n' ? '_' : c);
    head.set(http::field::content_disposition, "attachment; filename=\"" + name + "\"");
    head.keep_alive(keep_alive);
    head.content_length(size);
    http::response_serializer<http::empty_body> serializer{head};
    conn.stream.expires_after(options.io_timeout);
    auto [hec, hn] = co_await http::async_write_header(conn.stream, serializer, tok);
    st.header_bytes_sent += hn;
    if (hec) co_return finish(false);

    const bool truncate = fault && fault->action == FaultPlan::Action::truncate;
    const bool corrupt = fault && fault->action == FaultPlan::Action::corrupt;
    const std::uint64_t send_bytes = truncate ? size / 2 : size;
    std::unique_ptr<char[]> chunk(new char[kChunk]);
    for (std::uint64_t sent = 0; sent < send_bytes;) {
      ssize_t n = ::read(fd.get(), chunk.get(), static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, send_bytes - sent)));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) co_return finish(false);
      if (corrupt && sent <= size / 2 && size / 2 < sent + static_cast<std::uint64_t>(n)) chunk[size / 2 - sent] ^= 0x01;
      sent += static_cast<std::uint64_t>(n);
      conn.stream.expires_after(options.io_timeout);
      auto [ec, w] = co_await asio::async_write(conn.stream, asio::buffer(chunk.get(), static_cast<std::size_t>(n)), tok);
      st.body_bytes_sent += w;
      st.file_bytes_sent += w;
      if (ec) co_return finish(false);
    }
    co_return finish(!truncate);
  }

  // ----- routing

  asio::awaitable<Reply> handle(Service service, Incoming& in) {
    struct Route {
      std::string_view name;
      http::verb method;
    };
    static constexpr Route cstore_routes[] = {
        {"get_status", http::verb::get}, {"set", http::verb::post},  {"get", http::verb::get},
        {"hset", http::verb::post},      {"hget", http::verb::get},  {"hgetall", http::verb::get},
        {"hsync", http::verb::post},
    };
    static constexpr Route r1fs_routes[] = {
        {"get_status", http::verb::get},         {"add_file", http::verb::post},
        {"get_file", http::verb::get},           {"delete_file", http::verb::post},
        {"delete_files", http::verb::post},      {"add_file_base64", http::verb::post},
        {"get_file_base64", http::verb::post},   {"add_json", http::verb::post},
        {"add_yaml", http::verb::post},          {"get_yaml", http::verb::get},
        {"add_pickle", http::verb::post},        {"calculate_json_cid", http::verb::post},
        {"calculate_pickle_cid", http::verb::post},
    };
    std::span<const Route> routes = service == Service::cstore ? std::span<const Route>(cstore_routes)
                                                               : std::span<const Route>(r1fs_routes);
    auto it = std::find_if(routes.begin(), routes.end(), [&](const Route& r) { return r.name == in.route; });
    if (it == routes.end()) co_return detail(404, "Not Found");
    if (it->method != in.method) co_return detail(405, "Method Not Allowed");

    json::object body;
    if (in.method == http::verb::post && in.route != "add_file") {
      boost::system::error_code ec;
      auto parsed = json::parse(in.body, ec);
      if (ec || !parsed.is_object()) co_return detail(422, "request body must be a JSON object");
      body = std::move(parsed.get_object());
    }
    const auto& r = in.route;
    if (service == Service::cstore) {
      if (r == "get_status") co_return ok(json::object{{"ok", true}, {"message", "CStore Manager API is running."}});
      if (r == "set" || r == "hset") co_return co_await cstore_set(r == "hset", body);
      if (r == "get" || r == "hget") co_return co_await cstore_get(r == "hget", in);
      if (r == "hgetall") co_return co_await cstore_hgetall(in);
      if (r == "hsync") {
        auto hkey = string_field(body, "hkey");
        if (!hkey) co_return missing("hkey");
        co_return ok(json::object{{"hkey", *hkey}, {"source_peer", "devnode"}, {"merged_fields", 0}});
      }
    } else {
      if (r == "get_status")
        co_return ok(json::object{{"EE_ID", "carsync-devnode"}, {"ID", "devnode"}, {"Type", "carsync devnode R1FS emulator"}});
      if (r == "add_file") co_return co_await add_file(in);
      if (r == "get_file") co_return co_await get_file(in);
      if (r == "delete_file") co_return co_await delete_file(body);
      if (r == "delete_files") co_return co_await delete_files(body);
      if (r == "add_file_base64") co_return co_await add_file_base64(body);
      if (r == "get_file_base64") co_return co_await get_file_base64(body);
      if (r == "add_json" || r == "add_yaml" || r == "add_pickle") co_return co_await add_data(r, body);
      if (r == "get_yaml") co_return co_await get_yaml(in);
      if (r == "calculate_json_cid" || r == "calculate_pickle_cid") {
        const auto* data = body.if_contains("data");
        if (!data) co_return missing("data");
        if (!body.contains("nonce")) co_return missing("nonce");
        auto bytes = r == "calculate_json_cid" ? json::serialize(*data) : pickle(*data);
        co_return ok(json::object{{"cid", cid_of_bytes(bytes)}});
      }
    }
    co_return detail(500, "unhandled route " + r);
  }

  Reply internal(const Error& e) {
    spdlog::error("devnode: {}", e.message);
    return detail(500, e.message);
  }

  // ----- CStore

  asio::awaitable<Reply> cstore_set(bool hash, const json::object& body) {
    std::string hkey = "_";
    if (hash) {
      auto h = string_field(body, "hkey");
      if (!h) co_return missing("hkey");
      hkey = *h;
    }
    auto key = string_field(body, "key");
    if (!key) co_return missing("key");
    const auto* value = body.if_contains("value");
    if (!value) co_return missing("value");
    auto& store = hash ? kv : plain;
    auto r = co_await pool.run([&] { return store.hset(hkey, *key, *value); });
    if (!r) co_return internal(r.error());
    co_return ok(true);
  }

  asio::awaitable<Reply> cstore_get(bool hash, const Incoming& in) {
    std::string hkey = "_";
    if (hash) {
      auto h = query_field(in, "hkey");
      if (!h) co_return missing("hkey");
      hkey = *h;
    }
    auto key = query_field(in, "key");
    if (!key) co_return missing("key");
    auto& store = hash ? kv : plain;
    auto r = co_await pool.run([&] { return store.hget(hkey, *key); });
    if (!r) co_return internal(r.error());
    co_return ok(*r ? std::move(**r) : json::value(nullptr));
  }

  asio::awaitable<Reply> cstore_hgetall(const Incoming& in) {
    auto hkey = query_field(in, "hkey");
    if (!hkey) co_return missing("hkey");
    auto r = co_await pool.run([&] { return kv.hgetall(*hkey); });
    if (!r) co_return internal(r.error());
    co_return ok(std::move(*r));
  }

  // ----- R1FS

  fs::path name_file(const std::string& cid) const { return names_dir / cid; }

  // Stores `file` (named `name` for downloads) and returns its CID.
  Result<std::string> store_file(const fs::path& file, const std::string& name) {
    auto cid = cas.put(file);
    if (!cid) return cid.error();
    remember_name(*cid, name);
    return cid;
  }

  void remember_name(const std::string& cid, const std::string& name) {
    std::error_code ec;
    fs::create_directories(names_dir, ec);
    std::ofstream(name_file(cid), std::ios::trunc) << name;
  }

  std::string stored_name(const std::string& cid) const {
    std::ifstream in(name_file(cid));
    std::string name;
    std::getline(in, name);
    return name.empty() ? cid : name;
  }

  // Stores bytes given in a request as a file named `name`.
  Result<std::string> store_bytes(std::string_view bytes, const std::string& name) {
    std::error_code ec;
    fs::create_directories(tmp_dir, ec);
    TempFile tmp{tmp_dir / ("data-" + random_hex())};
    io::unique_fd fd(::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) return os_error(errno, "create " + tmp.path.string());
    if (auto w = io::write_all(fd.get(), bytes); !w) return w.error();
    fd.reset();
    return store_file(tmp.path, name);
  }

  static std::string not_retrieved(const std::string& cid) {
    return "Failed to retrieve file with CID '" + cid + "'. The file may not exist or the IPFS download failed.";
  }

  // The upload's `file` part is already in a store temp with its digest: the store takes the
  // file itself (fsync + rename), no copy and no second hash pass.
  asio::awaitable<Reply> add_file(Incoming& in) {
    auto& up = in.upload;
    if (up.status == MultipartStream::Status::too_large) co_return detail(413, "request body too large");
    if (up.status != MultipartStream::Status::ok || !up.has_file) co_return missing("file");
    auto cid = co_await pool.run([&]() -> Result<std::string> {
      auto stored = cas.adopt(up.file.path, up.sha256);
      if (!stored) return stored.error();
      up.file.path.clear();  // the store's now (or unlinked as a duplicate)
      remember_name(*stored, up.filename);
      return stored;
    });
    if (!cid) co_return internal(cid.error());
    co_return ok(json::object{{"message", "File uploaded successfully"}, {"cid", *cid}});
  }

  asio::awaitable<Reply> get_file(const Incoming& in) {
    auto cid = query_field(in, "cid");
    if (!cid) co_return missing("cid");
    auto blob = co_await pool.run([&] { return cas.get(*cid); });
    if (!blob) co_return ok(json::object{{"error", not_retrieved(*cid)}, {"file_path", nullptr}, {"meta", nullptr}});
    Reply r;
    r.file = *blob;
    r.filename = stored_name(*cid);
    co_return r;
  }

  // One deletion, as R1FS reports it; false when there is nothing to unpin.
  Result<bool> delete_one(const std::string& cid, bool unpin_remote) {
    if (!backend::digest_from_cid(cid) || !cas.contains(cid)) return false;
    if (!unpin_remote) return true;  // see devnode.hpp: the node's own pin is the only copy
    if (auto r = cas.remove(cid); !r) return r.error();
    std::error_code ec;
    fs::remove(name_file(cid), ec);
    return true;
  }

  asio::awaitable<Reply> delete_file(const json::object& body) {
    auto cid = string_field(body, "cid");
    if (!cid) co_return missing("cid");
    const bool unpin_remote = bool_field(body, "unpin_remote", true);
    auto done = co_await pool.run([&] { return delete_one(*cid, unpin_remote); });
    if (!done) co_return internal(done.error());
    co_return ok(json::object{
        {"success", *done},
        {"message", (*done ? "File " + *cid + " deleted successfully" : "Failed to delete file " + *cid)},
        {"cid", *cid}});
  }

  asio::awaitable<Reply> delete_files(const json::object& body) {
    const auto* cids = body.if_contains("cids");
    if (!cids || !cids->is_array() || cids->get_array().empty()) co_return missing("cids");
    const bool unpin_remote = bool_field(body, "unpin_remote", true);
    json::array succeeded, failed;
    for (const auto& c : cids->get_array()) {
      std::string cid = c.is_string() ? std::string(c.get_string()) : json::serialize(c);
      auto done = co_await pool.run([&] { return delete_one(cid, unpin_remote); });
      (done && *done ? succeeded : failed).push_back(json::value(cid));
    }
    const auto total = cids->get_array().size();
    const auto ok_count = succeeded.size(), failed_count = failed.size();
    co_return ok(json::object{{"success", std::move(succeeded)},
                              {"failed", std::move(failed)},
                              {"total", total},
                              {"success_count", ok_count},
                              {"failed_count", failed_count}});
  }

  asio::awaitable<Reply> add_file_base64(const json::object& body) {
    auto text = string_field(body, "file_base64_str");
    if (!text) co_return missing("file_base64_str");
    auto bytes = base64_decode(*text);
    if (!bytes) co_return missing("file_base64_str");
    auto name = string_field(body, "filename").value_or("file_" + random_hex());
    auto cid = co_await pool.run([&] { return store_bytes(*bytes, name); });
    if (!cid) co_return internal(cid.error());
    co_return ok(json::object{{"cid", *cid}});
  }

  // The content of a stored blob, if it exists and fits in a JSON answer.
  std::optional<std::string> read_blob(const std::string& cid) {
    auto blob = cas.get(cid);
    if (!blob) return std::nullopt;
    io::unique_fd fd(::open(blob->c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return std::nullopt;
    auto text = io::read_file_capped(fd.get(), options.max_json_bytes / 2);
    if (!text) return std::nullopt;
    return std::move(*text);
  }

  asio::awaitable<Reply> get_file_base64(const json::object& body) {
    auto cid = string_field(body, "cid");
    if (!cid) co_return missing("cid");
    auto bytes = co_await pool.run([&] { return read_blob(*cid); });
    if (!bytes)
      co_return ok(json::object{{"error", not_retrieved(*cid)}, {"file_base64_str", nullptr}, {"filename", nullptr}});
    co_return ok(json::object{{"file_base64_str", base64_encode(*bytes)}, {"filename", stored_name(*cid)}});
  }

  asio::awaitable<Reply> add_data(const std::string& route, const json::object& body) {
    const auto* data = body.if_contains("data");
    if (!data) co_return missing("data");
    const std::string fallback = route == "add_json" ? ".json" : route == "add_yaml" ? ".yaml" : ".pkl";
    auto name = string_field(body, "fn").value_or("data_" + random_hex() + fallback);
    // JSON text is valid YAML, so add_yaml stores the same bytes as add_json.
    auto bytes = route == "add_pickle" ? pickle(*data) : json::serialize(*data);
    auto cid = co_await pool.run([&] { return store_bytes(bytes, name); });
    if (!cid) co_return internal(cid.error());
    co_return ok(json::object{{"cid", *cid}});
  }

  asio::awaitable<Reply> get_yaml(const Incoming& in) {
    auto cid = query_field(in, "cid");
    if (!cid) co_return missing("cid");
    auto bytes = co_await pool.run([&] { return read_blob(*cid); });
    if (!bytes) co_return ok(json::object{{"error", not_retrieved(*cid)}});
    auto name = stored_name(*cid);
    if (!name.ends_with(".yaml") && !name.ends_with(".yml")) co_return ok("error");
    boost::system::error_code ec;
    auto data = json::parse(*bytes, ec);
    if (ec) co_return ok(json::object{{"error", "devnode reads back only YAML written as JSON by add_yaml"}});
    co_return ok(json::object{{"file_data", std::move(data)}});
  }
};

// ---------------------------------------------------------------------------------------

Devnode::Devnode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Devnode::~Devnode() = default;

Result<std::unique_ptr<Devnode>> Devnode::create(asio::any_io_executor ex, DevnodeOptions options) {
  if (options.data_dir.empty()) return make_error(errc::bad_config, "devnode: a data directory is required");
  auto faults = FaultPlan::parse(options.faults);
  if (!faults) return faults.error();
  boost::system::error_code ec;
  auto address = asio::ip::make_address(options.listen, ec);
  if (ec) return make_error(errc::bad_config, "devnode: invalid listen address \"" + options.listen + "\"");
  for (const auto* dir : {"kv", "cas", "cas/tmp", "devnode/tmp", "devnode/names"}) {
    std::error_code fec;
    fs::create_directories(options.data_dir / dir, fec);
    if (fec) return os_error(fec.value(), "create " + (options.data_dir / dir).string());
  }
  auto impl = std::make_unique<Impl>(ex, options, std::move(*faults));
  auto bind = [&](tcp::acceptor& a, std::uint16_t port, std::string_view what) -> Result<std::uint16_t> {
    tcp::endpoint ep(address, port);
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return make_error(errc::io_failure, "devnode: listen on " + options.listen + ":" + std::to_string(port) + " (" +
                                              std::string(what) + "): " + ec.message());
    return a.local_endpoint().port();
  };
  auto cstore_port = bind(impl->cstore_acceptor, options.cstore_port, "cstore");
  if (!cstore_port) return cstore_port.error();
  auto r1fs_port = bind(impl->r1fs_acceptor, options.r1fs_port, "r1fs");
  if (!r1fs_port) return r1fs_port.error();
  impl->cstore_port = *cstore_port;
  impl->r1fs_port = *r1fs_port;
  return std::unique_ptr<Devnode>(new Devnode(std::move(impl)));
}

std::uint16_t Devnode::cstore_port() const noexcept { return impl_->cstore_port; }
std::uint16_t Devnode::r1fs_port() const noexcept { return impl_->r1fs_port; }
std::string Devnode::cstore_url() const { return impl_->url(impl_->cstore_port); }
std::string Devnode::r1fs_url() const { return impl_->url(impl_->r1fs_port); }
DevnodeStats Devnode::cstore_stats() const noexcept { return impl_->cstore_stats; }
DevnodeStats Devnode::r1fs_stats() const noexcept { return impl_->r1fs_stats; }

asio::awaitable<void> Devnode::run() {
  using namespace asio::experimental::awaitable_operators;
  co_await (impl_->accept_loop(impl_->cstore_acceptor, Service::cstore) &&
            impl_->accept_loop(impl_->r1fs_acceptor, Service::r1fs));
  while (impl_->active > 0) co_await impl_->wait_changed();
}

void Devnode::stop() { impl_->stop(); }

}  // namespace carsync::net
