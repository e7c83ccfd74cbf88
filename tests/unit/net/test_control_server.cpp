// net::ControlServer with small limits: what a slow, silent, greedy or unusual client gets,
// and that close() ends everything it owns.
#include "net/control_server.hpp"

#include "runtime/task_group.hpp"
#include "support/temp_dir.hpp"
#include "support/unix_http.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

namespace carsync::net {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::DeadlineStream;

// What a request looked like to the handler, echoed as JSON.
Task<ControlResponse> echo(ControlRequest r) {
  ControlResponse out;
  out.body = json::serialize(json::object{
      {"method", r.method}, {"target", r.target}, {"body", r.body}, {"read_only", r.read_only}});
  co_return out;
}

class ControlServerTest : public ::testing::Test {
 protected:
  ControlServerTest() {
    limits.idle_timeout = 300ms;
    limits.write_timeout = 300ms;
    limits.max_connections = 2;
    limits.max_header_bytes = 1024;
    limits.max_body_bytes = 1024;
  }
  ~ControlServerTest() override { stop(); }

  Task<ControlResponse> handle(ControlRequest r) {
    if (r.target == "/stream") {
      ControlResponse out;
      out.content_type = "text/event-stream";
      out.stream = [](StreamWriter& w) -> Task<void> {
        auto a = co_await w.write("a");
        if (a) co_await w.write("b");
      };
      co_return out;
    }
    if (r.target == "/flood") {
      ControlResponse out;
      out.content_type = "application/octet-stream";
      out.stream = [this](StreamWriter& w) { return flood(w); };
      co_return out;
    }
    co_return co_await echo(std::move(r));
  }

  Task<void> flood(StreamWriter& w) {
    const std::string block(64 * 1024, 'x');
    for (;;) {
      auto r = co_await w.write(block);
      if (!r) break;
    }
    flood_failed.set_value();
  }

  void start() {
    server = std::make_unique<ControlServer>(
        ioc.get_executor(), [this](ControlRequest r) { return handle(std::move(r)); },
        [this](Task<void> t) { group.spawn(std::move(t)); }, limits);
    auto r = server->listen_unix(socket);
    ASSERT_TRUE(r) << r.error().message;
    auto port = server->listen_tcp("127.0.0.1:0", true);
    ASSERT_TRUE(port) << port.error().message;
    tcp_port = *port;
    server->start();
    thread = std::thread([this] { ioc.run(); });
  }

  // Runs f on the server's thread and waits for it.
  void on_loop(std::function<void()> f) {
    std::promise<void> done;
    asio::post(ioc, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  void stop() {
    if (!thread.joinable()) return;
    on_loop([this] {
      server->close();
      group.emit(asio::cancellation_type::terminal);
    });
    work.reset();
    thread.join();
  }

  std::unique_ptr<DeadlineStream> connect() {
    const int fd = test::connect_unix(socket);
    EXPECT_GE(fd, 0);
    return std::make_unique<DeadlineStream>(fd, 10s);
  }

  // Reads until the peer closes; whether it closed (not the deadline).
  static bool closed_by_peer(DeadlineStream& s, std::string* seen = nullptr) {
    char buf[4096];
    for (;;) {
      boost::system::error_code ec;
      const auto n = s.read_some(asio::buffer(buf), ec);
      if (seen) seen->append(buf, n);
      if (ec == asio::error::eof || ec == asio::error::connection_reset) return true;
      if (ec) return false;
    }
  }

  test::TempDir tmp;
  fs::path socket = tmp / "ctl.sock";
  ControlServerLimits limits;
  asio::io_context ioc{1};
  // Keeps run() going between the tests' steps (close() may leave it no work for a moment).
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  runtime::TaskGroup group{ioc.get_executor(), "test control server"};
  std::unique_ptr<ControlServer> server;
  std::thread thread;
  unsigned short tcp_port = 0;
  std::promise<void> flood_failed;
};

TEST(ControlServerErrors, ErrorBodiesNameCodeFieldAndMessage) {
  const auto r = error_response(409, "conflict", "instance \"a\" exists already", "id");
  EXPECT_EQ(r.status, 409u);
  EXPECT_EQ(r.content_type, "application/json");
  const auto body = json::parse(r.body);
  EXPECT_EQ(body.at("error").at("code"), "conflict");
  EXPECT_EQ(body.at("error").at("field"), "id");
  EXPECT_EQ(body.at("error").at("message"), "instance \"a\" exists already");
}

TEST_F(ControlServerTest, OneConnectionServesRequestsUntilThePeerClosesIt) {
  start();
  auto s = connect();
  for (const char* target : {"/one", "/two?x=1"}) {
    auto r = test::exchange(*s, "POST", target, "body", {}, /*keep_alive=*/true);
    ASSERT_EQ(r.status, 200u) << r.error;
    EXPECT_EQ(json::parse(r.body).at("target"), target);
    EXPECT_EQ(json::parse(r.body).at("read_only"), false);
  }
}

TEST_F(ControlServerTest, TheTcpListenerMarksRequestsReadOnly) {
  start();
  auto r = test::tcp_request(tcp_port, "GET", "/x");
  ASSERT_EQ(r.status, 200u) << r.error;
  EXPECT_EQ(json::parse(r.body).at("read_only"), true);
}

TEST_F(ControlServerTest, ASilentOrSlowClientIsClosedAfterTheIdleTimeout) {
  start();
  auto silent = connect();
  auto slow = connect();
  const std::string part = "GET / HTTP/1.1\r\nHost";
  boost::system::error_code ec;
  asio::write(*slow, asio::buffer(part), ec);
  EXPECT_TRUE(closed_by_peer(*silent));
  EXPECT_TRUE(closed_by_peer(*slow));
}

TEST_F(ControlServerTest, ExpectContinueGetsAnInterimAnswerBeforeTheBody) {
  start();
  auto s = connect();
  const std::string head = "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";
  boost::system::error_code ec;
  asio::write(*s, asio::buffer(head), ec);
  char buf[256];
  const auto n = s->read_some(asio::buffer(buf), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(std::string(buf, n).rfind("HTTP/1.1 100 Continue", 0), 0u) << std::string(buf, n);
  asio::write(*s, asio::buffer(std::string("{}")), ec);
  std::string rest;
  EXPECT_TRUE(closed_by_peer(*s, &rest));
  EXPECT_NE(rest.find("200 OK"), std::string::npos) << rest;
  EXPECT_NE(rest.find("\"body\":\"{}\""), std::string::npos) << rest;
}

TEST_F(ControlServerTest, AStreamedAnswerHasNoLengthAndEndsWithTheConnection) {
  start();
  auto s = connect();
  const std::string req = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
  boost::system::error_code ec;
  asio::write(*s, asio::buffer(req), ec);
  std::string all;
  ASSERT_TRUE(closed_by_peer(*s, &all));
  const auto split = all.find("\r\n\r\n");
  ASSERT_NE(split, std::string::npos) << all;
  const auto head = all.substr(0, split);
  EXPECT_NE(head.find("text/event-stream"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
  EXPECT_EQ(all.substr(split + 4), "ab");
}

TEST_F(ControlServerTest, AStreamToAPeerThatDoesNotReadEndsAtTheWriteTimeout) {
  start();
  auto s = connect();
  const std::string req = "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n";
  boost::system::error_code ec;
  asio::write(*s, asio::buffer(req), ec);
  // Never read: the socket buffers fill, the next write waits and its deadline passes.
  EXPECT_EQ(flood_failed.get_future().wait_for(20s), std::future_status::ready);
}

TEST_F(ControlServerTest, ConnectionsOverTheLimitAreAnswered503) {
  start();
  auto a = connect();
  auto b = connect();
  // Both are accepted before the third (one listener, in order).
  auto third = test::unix_request(socket, "GET", "/x");
  EXPECT_EQ(third.status, 503u) << third.error << third.body;
  EXPECT_EQ(json::parse(third.body).at("error").at("code"), "unavailable");
}

TEST_F(ControlServerTest, CloseEndsEveryConnectionAndRemovesTheSocketFile) {
  start();
  auto held = connect();
  ASSERT_TRUE(fs::exists(socket));
  on_loop([this] { server->close(); });
  EXPECT_TRUE(closed_by_peer(*held));
  EXPECT_FALSE(fs::exists(socket));
  EXPECT_LT(test::connect_unix(socket), 0);
  std::promise<bool> drained;
  on_loop([this, &drained] {
    asio::co_spawn(ioc, [](runtime::TaskGroup& g, std::promise<bool>& p) -> Task<void> {
      p.set_value(co_await g.wait_for(5s));
    }(group, drained), asio::detached);
  });
  EXPECT_TRUE(drained.get_future().get()) << "connections outlived close()";
}

TEST_F(ControlServerTest, BadListenAddressesAreRefusedNamingThem) {
  ControlServer s(ioc.get_executor(), echo, [](Task<void>) {});
  for (const char* bad : {"localhost:1", "127.0.0.1", "127.0.0.1:70000", "1.2.3:4"}) {
    auto r = s.listen_tcp(bad, true);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, make_error_code(errc::bad_config));
    EXPECT_NE(r.error().message.find(bad), std::string::npos) << r.error().message;
  }
  auto relative = s.listen_unix("relative.sock");
  ASSERT_FALSE(relative);
  EXPECT_EQ(relative.error().field, "control_socket");
}

}  // namespace
}  // namespace carsync::net
