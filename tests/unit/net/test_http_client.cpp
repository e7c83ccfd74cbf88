#include "net/http_client.hpp"
#include "unit/net/devnode_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cmath>

namespace carsync::test {
namespace {

namespace asio = boost::asio;
using net::HttpClient;

TEST(HttpUrl, SchemeIsAddedAndTrailingSlashDropped) {
  auto ep = net::parse_base_url("node.local:31234/proxy/");
  ASSERT_TRUE(ep) << ep.error().message;
  EXPECT_EQ(ep->host, "node.local");
  EXPECT_EQ(ep->port, "31234");
  EXPECT_EQ(ep->base_path, "/proxy");
  auto plain = net::parse_base_url("http://127.0.0.1");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->port, "80");
}

TEST(HttpUrl, HttpsAndGarbageAreConfigErrors) {
  auto tls = net::parse_base_url("https://node:443");
  ASSERT_FALSE(tls);
  EXPECT_EQ(tls.error().code, make_error_code(errc::bad_config));
  EXPECT_FALSE(net::parse_base_url("http://"));
}

TEST(HttpQuery, EncodedLikeUrlSearchParams) {
  EXPECT_EQ(net::form_query({{"key", "k 1&x=/ü"}}), "?key=k+1%26x%3D%2F%C3%BC");
  EXPECT_EQ(net::form_query({{"a", "1"}, {"b", ""}}), "?a=1&b=");
}

class HttpClientTest : public DevnodeTest {};

TEST_F(HttpClientTest, UnknownRouteIsAnErrorWithTheStatus) {
  start_devnode();
  auto r = run([&]() -> net::Task<Result<net::HttpResponse>> {
    HttpClient http(io_.get_executor(), cstore_endpoint(), quick_options());
    co_return co_await http.get("/nope", "cstore nope");
  }());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.rfind("cstore nope: HTTP 404", 0), 0u) << r.error().message;
}

TEST_F(HttpClientTest, GetIsRetriedOn5xxPostIsNot) {
  start_devnode("get_status:500:#2,hsync:500:#1");
  auto r = run([&]() -> net::Task<std::pair<bool, bool>> {
    HttpClient http(io_.get_executor(), cstore_endpoint(), quick_options());
    auto get = co_await http.get("/get_status", "cstore get_status");          // 500, 500, 200
    auto post = co_await http.post_json("/hsync", R"({"hkey":"h"})", false, "cstore hsync");  // 500 only
    co_return std::pair{static_cast<bool>(get), static_cast<bool>(post)};
  }());
  EXPECT_TRUE(r.first);
  EXPECT_FALSE(r.second);
}

TEST_F(HttpClientTest, RetriesGiveUpAfterTheLastAttempt) {
  start_devnode("get_status:500:#3");
  auto r = run([&]() -> net::Task<Result<net::HttpResponse>> {
    HttpClient http(io_.get_executor(), cstore_endpoint(), quick_options());  // 3 attempts
    co_return co_await http.get("/get_status", "cstore get_status");
  }());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("HTTP 500"), std::string::npos);
}

TEST_F(HttpClientTest, DeadlineFiresAgainstAServerThatNeverAnswers) {
  asio::ip::tcp::acceptor silent(io_, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket accepted(io_);
  silent.async_accept(accepted, [](const boost::system::error_code&) {});  // then never reads
  net::Endpoint ep{"127.0.0.1", std::to_string(silent.local_endpoint().port()), ""};
  auto options = quick_options();
  options.io_timeout = std::chrono::milliseconds(200);
  options.attempts = 1;
  auto r = run([&]() -> net::Task<Result<net::HttpResponse>> {
    HttpClient http(io_.get_executor(), ep, options);
    co_return co_await http.get("/get_status", "cstore get_status");
  }());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::timeout)) << r.error().message;
  EXPECT_NE(r.error().message.find("timed out after 200 ms"), std::string::npos) << r.error().message;
}

TEST_F(HttpClientTest, ConnectionsAreReused) {
  start_devnode();
  auto r = run([&]() -> net::Task<int> {
    HttpClient http(io_.get_executor(), cstore_endpoint(), quick_options());
    int ok = 0;
    for (int i = 0; i < 20; ++i)
      if (auto x = co_await http.get("/get_status", "cstore get_status"); x && x->status == 200) ++ok;
    co_return ok;
  }());
  EXPECT_EQ(r, 20);
}

// A one-connection HTTP server on a unix socket: answers the first request with `reply`
// (raw bytes), records the request head, then waits for the client to close.
struct UnixServer {
  asio::local::stream_protocol::acceptor acceptor;
  std::string request_head;

  UnixServer(asio::io_context& io, const std::filesystem::path& path)
      : acceptor(io, asio::local::stream_protocol::endpoint(path.string())) {}

  asio::awaitable<void> serve(std::string reply) {
    auto socket = co_await acceptor.async_accept(asio::use_awaitable);
    asio::streambuf in;
    auto n = co_await asio::async_read_until(socket, in, "\r\n\r\n", asio::use_awaitable);
    request_head.assign(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + static_cast<long>(n));
    co_await asio::async_write(socket, asio::buffer(reply), asio::use_awaitable);
    char c;
    boost::system::error_code ec;
    co_await asio::async_read(socket, asio::buffer(&c, 1), asio::redirect_error(asio::use_awaitable, ec));
  }
};

// The control API's client: a unix socket, and the server's own 4xx envelope as a value.
TEST_F(HttpClientTest, CallOverAUnixSocketReturnsAnyStatus) {
  UnixServer server(io_, tmp_ / "api.sock");
  const std::string body = R"({"error":{"code":"not_found"}})";
  asio::co_spawn(io_, server.serve("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body),
                 asio::detached);
  net::Endpoint ep{"carsync", "80", "", (tmp_ / "api.sock").string()};
  auto r = run([&]() -> net::Task<Result<net::HttpResponse>> {
    HttpClient http(io_.get_executor(), ep, quick_options());
    co_return co_await http.call(HttpClient::Verb::del, "/v1/instances/x", "", false, "remove");
  }());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 404u);
  EXPECT_EQ(r->body, body);
  EXPECT_EQ(server.request_head.rfind("DELETE /v1/instances/x HTTP/1.1\r\n", 0), 0u) << server.request_head;
  EXPECT_NE(server.request_head.find("Content-Length: 0"), std::string::npos) << server.request_head;
}

// A server at its connection limit answers 503 without reading the request and closes: the
// client's write hits EPIPE, and what the server said is still the result.
TEST_F(HttpClientTest, AnAnswerSentBeforeTheRequestWasReadIsTheResult) {
  asio::local::stream_protocol::acceptor acceptor(io_, asio::local::stream_protocol::endpoint((tmp_ / "busy.sock").string()));
  const std::string body = R"({"error":{"code":"busy"}})";
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        auto socket = co_await acceptor.async_accept(asio::use_awaitable);
        co_await asio::async_write(socket,
                                   asio::buffer("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                                "Content-Length: " + std::to_string(body.size()) +
                                                "\r\nConnection: close\r\n\r\n" + body),
                                   asio::use_awaitable);
        socket.shutdown(asio::socket_base::shutdown_both);  // unread: the client's writes fail
        socket.close();
      },
      asio::detached);
  net::Endpoint ep{"carsync", "80", "", (tmp_ / "busy.sock").string()};
  // A body far beyond a unix socket's buffers: the write cannot complete before the close.
  const std::string big(8u << 20, 'x');
  auto r = run([&]() -> net::Task<Result<net::HttpResponse>> {
    HttpClient http(io_.get_executor(), ep, quick_options());
    co_return co_await http.call(HttpClient::Verb::post, "/v1/publish", big, false, "publish");
  }());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 503u);
  EXPECT_EQ(r->body, body);
}

TEST_F(HttpClientTest, UnixSocketWithoutServerIsATransportError) {
  net::Endpoint ep{"carsync", "80", "", (tmp_ / "nobody.sock").string()};
  auto r = run([&]() -> net::Task<Result<net::HttpResponse>> {
    HttpClient http(io_.get_executor(), ep, quick_options());
    co_return co_await http.call(HttpClient::Verb::get, "/v1/health", "", true, "health");
  }());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("connect to unix:" + ep.unix_socket), std::string::npos) << r.error().message;
}

// An endless chunked body reaches the callback as it arrives; returning false ends the call.
TEST_F(HttpClientTest, StreamDeliversChunksUntilTheReaderStops) {
  UnixServer server(io_, tmp_ / "api.sock");
  asio::co_spawn(io_, server.serve("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n"
                                   "6\r\nfirst\n\r\n7\r\nsecond\n\r\n"),
                 asio::detached);
  net::Endpoint ep{"carsync", "80", "", (tmp_ / "api.sock").string()};
  std::string seen;
  auto r = run([&]() -> net::Task<Result<net::HttpResponse>> {
    HttpClient http(io_.get_executor(), ep, quick_options());
    co_return co_await http.stream(
        "/v1/events",
        [&](std::string_view bytes) {
          seen += bytes;
          return seen.find("second\n") == std::string::npos;
        },
        "events");
  }());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(seen, "first\nsecond\n");
}

// An event reaches the reader when it arrives, not once 64 KiB have piled up: the server
// sends the second chunk only after the reader has seen the first (or after 10 s).
TEST_F(HttpClientTest, StreamDeliversEachChunkWithoutWaitingForMore) {
  asio::local::stream_protocol::acceptor acceptor(io_, asio::local::stream_protocol::endpoint((tmp_ / "api.sock").string()));
  asio::steady_timer first_seen(io_, std::chrono::seconds(10));
  bool reader_was_first = false;
  auto serve = [&]() -> asio::awaitable<void> {
    auto socket = co_await acceptor.async_accept(asio::use_awaitable);
    asio::streambuf in;
    co_await asio::async_read_until(socket, in, "\r\n\r\n", asio::use_awaitable);
    std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "6\r\nfirst\n\r\n";
    co_await asio::async_write(socket, asio::buffer(head), asio::use_awaitable);
    boost::system::error_code ec;
    co_await first_seen.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    reader_was_first = ec == asio::error::operation_aborted;
    std::string second = "7\r\nsecond\n\r\n";
    co_await asio::async_write(socket, asio::buffer(second), asio::use_awaitable);
    char c;
    co_await asio::async_read(socket, asio::buffer(&c, 1), asio::redirect_error(asio::use_awaitable, ec));
  };
  asio::co_spawn(io_, serve(), asio::detached);
  net::Endpoint ep{"carsync", "80", "", (tmp_ / "api.sock").string()};
  std::string seen;
  auto r = run([&]() -> net::Task<Result<net::HttpResponse>> {
    HttpClient http(io_.get_executor(), ep, quick_options());
    co_return co_await http.stream(
        "/v1/events",
        [&](std::string_view bytes) {
          seen += bytes;
          if (seen.find("first\n") != std::string::npos) first_seen.cancel();
          return seen.find("second\n") == std::string::npos;
        },
        "events");
  }());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(reader_was_first);
  EXPECT_EQ(seen, "first\nsecond\n");
}

}  // namespace
}  // namespace carsync::test

namespace carsync::test {
namespace {

// The node is Python: a record a reference provider published can come back holding the
// NaN/Infinity tokens of its json module. It is read, not refused as "not JSON".
TEST(Envelope, ReadsPythonNonFiniteTokens) {
  net::HttpResponse response;
  response.status = 200;
  response.body = R"({"result": {"cid": "Qm", "version": 2, "metadata": {"ratio": NaN, "max": Infinity}}})";
  auto result = net::envelope_result(response, "cstore hget");
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_TRUE(std::isnan(result->at("metadata").at("ratio").as_double()));
  EXPECT_TRUE(std::isinf(result->at("metadata").at("max").as_double()));

  response.body = R"({"result": {"cid": NaNcy}})";
  auto bad = net::envelope_result(response, "cstore hget");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("not JSON"), std::string::npos) << bad.error().message;
}

}  // namespace
}  // namespace carsync::test
