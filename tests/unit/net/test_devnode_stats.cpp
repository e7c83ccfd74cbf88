// devnode's traffic counters (DevnodeStats) and the devnode-only GET /devnode/stats route:
// bytes counted as written, a cut download counting what went out, and the route neither
// counting itself nor matched by fault rules.
#include "tools/devnode/devnode.hpp"
#include "net/http_client.hpp"
#include "unit/net/devnode_fixture.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>

#include <random>

namespace carsync::test {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using net::HttpClient;

constexpr const char* kFields[] = {"service",       "requests",        "responses",         "cut_responses",
                                   "file_responses", "body_bytes_sent", "file_bytes_sent",   "header_bytes_sent",
                                   "request_body_bytes_received"};

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class DevnodeStatsTest : public DevnodeTest {
 protected:
  // Uploads `file` and returns the add_file answer (its body is one counted JSON body).
  net::Task<Result<net::HttpResponse>> upload(HttpClient& http, std::filesystem::path file) {
    co_return co_await http.post_file("/add_file", file, "f.bin", "add_file");
  }

  static std::string cid_of(const net::HttpResponse& up) {
    return std::string(json::parse(up.body).at("result").at("cid").as_string());
  }

  // Polls the in-process counters until `done` holds, or fails the test at the deadline:
  // the server notices a cut connection on its own schedule, not the client's.
  net::Task<bool> wait_for(std::function<bool(const net::DevnodeStats&)> done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    asio::steady_timer tick(io_);
    while (!done(node_->r1fs_stats())) {
      if (std::chrono::steady_clock::now() > deadline) co_return false;
      tick.expires_after(std::chrono::milliseconds(2));
      co_await tick.async_wait(asio::use_awaitable);
    }
    co_return true;
  }
};

TEST_F(DevnodeStatsTest, CountsEveryBodyByteOfAnUploadAndTwoDownloads) {
  start_devnode();
  const std::string content = random_bytes(300 * 1024 + 17, 1);
  write_file(tmp_ / "in" / "f.bin", content);
  struct Out {
    std::string upload_body;
    std::uint64_t downloaded = 0;
    std::string stats1, stats2, cstore_stats;
  };
  auto out = run([&]() -> net::Task<Result<Out>> {
    HttpClient http(io_.get_executor(), r1fs_endpoint(), quick_options());
    HttpClient cstore(io_.get_executor(), cstore_endpoint(), quick_options());
    Out o;
    auto up = co_await upload(http, tmp_ / "in" / "f.bin");
    if (!up) co_return up.error();
    o.upload_body = up->body;
    const std::string route = "/get_file" + net::form_query({{"cid", cid_of(*up)}});
    for (int i = 0; i < 2; ++i) {
      net::DownloadTarget target;
      target.path = tmp_ / ("out" + std::to_string(i));
      target.max_bytes = 1 << 30;
      auto got = co_await http.download(route, target, "get_file");
      if (!got) co_return got.error();
      o.downloaded += std::filesystem::file_size(target.path);
    }
    auto s1 = co_await http.get("/devnode/stats", "stats");
    if (!s1) co_return s1.error();
    auto s2 = co_await http.get("/devnode/stats", "stats");
    if (!s2) co_return s2.error();
    auto sc = co_await cstore.get("/devnode/stats", "stats");
    if (!sc) co_return sc.error();
    o.stats1 = s1->body;
    o.stats2 = s2->body;
    o.cstore_stats = sc->body;
    co_return o;
  }());
  ASSERT_TRUE(out) << out.error().message;
  const std::uint64_t size = content.size();
  ASSERT_EQ(out->downloaded, 2 * size);

  const auto st = node_->r1fs_stats();
  EXPECT_EQ(st.requests, 3u);  // the stats reads are not counted
  EXPECT_EQ(st.responses, 3u);
  EXPECT_EQ(st.cut_responses, 0u);
  EXPECT_EQ(st.file_responses, 2u);
  EXPECT_EQ(st.file_bytes_sent, 2 * size);
  EXPECT_EQ(st.body_bytes_sent, 2 * size + out->upload_body.size());  // + add_file's JSON answer
  // The multipart body: the file plus one part's delimiters and headers.
  EXPECT_GT(st.request_body_bytes_received, size);
  EXPECT_LT(st.request_body_bytes_received, size + 1024);
  EXPECT_GT(st.header_bytes_sent, 0u);

  // Two reads with no traffic between them agree, and agree with the counters.
  EXPECT_EQ(out->stats1, out->stats2);
  const auto doc = json::parse(out->stats1).as_object();
  for (const char* key : kFields) EXPECT_TRUE(doc.contains(key)) << key;
  EXPECT_EQ(doc.at("service").as_string(), "r1fs");
  EXPECT_EQ(doc.at("body_bytes_sent").to_number<std::uint64_t>(), st.body_bytes_sent);
  EXPECT_EQ(doc.at("file_bytes_sent").to_number<std::uint64_t>(), st.file_bytes_sent);
  EXPECT_EQ(doc.at("responses").to_number<std::uint64_t>(), st.responses);
  EXPECT_EQ(doc.at("request_body_bytes_received").to_number<std::uint64_t>(), st.request_body_bytes_received);

  // Each port counts its own service: nothing reached the CStore one but its stats read.
  const auto cdoc = json::parse(out->cstore_stats).as_object();
  EXPECT_EQ(cdoc.at("service").as_string(), "cstore");
  for (const char* key : kFields) {
    if (std::string_view(key) != "service") {
      EXPECT_EQ(cdoc.at(key).to_number<std::uint64_t>(), 0u) << key;
    }
  }
}

TEST_F(DevnodeStatsTest, ADownloadCutByTheClientCountsOnlyWhatWasSent) {
  start_devnode();
  // Larger than what loopback can hold in flight: the server's send buffer (tcp_wmem max,
  // 4 MiB here) plus the client's receive buffer, which the client keeps small.
  const std::string content = random_bytes(16 * 1024 * 1024, 2);
  write_file(tmp_ / "in" / "f.bin", content);
  struct Out {
    std::string upload_body;
    std::uint64_t client_read = 0;
    bool settled = false;
  };
  auto out = run([&]() -> net::Task<Result<Out>> {
    HttpClient http(io_.get_executor(), r1fs_endpoint(), quick_options());
    Out o;
    auto up = co_await upload(http, tmp_ / "in" / "f.bin");
    if (!up) co_return up.error();
    o.upload_body = up->body;
    const std::string request = "GET /get_file" + net::form_query({{"cid", cid_of(*up)}}) +
                                " HTTP/1.1\r\nHost: x\r\n\r\n";
    asio::ip::tcp::socket socket(io_);
    socket.open(asio::ip::tcp::v4());
    socket.set_option(asio::socket_base::receive_buffer_size(64 * 1024));
    const asio::ip::tcp::endpoint to(asio::ip::make_address("127.0.0.1"), node_->r1fs_port());
    co_await socket.async_connect(to, asio::use_awaitable);
    co_await asio::async_write(socket, asio::buffer(request), asio::use_awaitable);
    std::vector<char> buf(64 * 1024);
    while (o.client_read < 1024 * 1024) {
      auto n = co_await socket.async_read_some(asio::buffer(buf), asio::use_awaitable);
      o.client_read += n;
    }
    socket.close();  // unread bytes pending: the kernel answers the server with a reset
    const std::function<bool(const net::DevnodeStats&)> cut = [](const net::DevnodeStats& s) {
      return s.cut_responses == 1;
    };
    o.settled = co_await wait_for(cut);
    co_return o;
  }());
  ASSERT_TRUE(out) << out.error().message;
  ASSERT_TRUE(out->settled) << "devnode never noticed the cut download";
  const auto st = node_->r1fs_stats();
  EXPECT_EQ(st.responses, 1u);  // add_file's
  EXPECT_EQ(st.file_responses, 1u);
  EXPECT_LT(st.file_bytes_sent, content.size());
  // At least the body bytes the client read (its reads included the response head).
  EXPECT_GE(st.file_bytes_sent + 1024, out->client_read);
  EXPECT_EQ(st.body_bytes_sent, st.file_bytes_sent + out->upload_body.size());
}

TEST_F(DevnodeStatsTest, TheStatsRouteIsOutsideFaultRules) {
  start_devnode("*:503");
  struct Out {
    Result<net::HttpResponse> faulted = net::HttpResponse{};
    Result<net::HttpResponse> stats = net::HttpResponse{};
    Result<net::HttpResponse> post = net::HttpResponse{};
  };
  auto out = run([&]() -> net::Task<Out> {
    auto options = quick_options();
    options.attempts = 1;
    HttpClient cstore(io_.get_executor(), cstore_endpoint(), options);
    Out o;
    o.faulted = co_await cstore.get("/hget?hkey=h&key=k", "hget");
    o.stats = co_await cstore.get("/devnode/stats", "stats");
    o.post = co_await cstore.post_json("/devnode/stats", "{}", false, "stats");
    co_return o;
  }());
  ASSERT_FALSE(out.faulted);
  EXPECT_NE(out.faulted.error().message.find("HTTP 503"), std::string::npos) << out.faulted.error().message;
  ASSERT_TRUE(out.stats) << out.stats.error().message;
  EXPECT_EQ(out.stats->content_type, "application/json");
  const auto doc = json::parse(out.stats->body).as_object();
  EXPECT_EQ(doc.at("service").as_string(), "cstore");
  EXPECT_EQ(doc.at("requests").to_number<std::uint64_t>(), 1u);
  EXPECT_EQ(doc.at("responses").to_number<std::uint64_t>(), 1u);
  EXPECT_EQ(doc.at("body_bytes_sent").to_number<std::uint64_t>(),
            std::string_view(R"({"detail":"injected fault"})").size());
  ASSERT_FALSE(out.post);  // GET only
  EXPECT_NE(out.post.error().message.find("HTTP 405"), std::string::npos) << out.post.error().message;
}

}  // namespace
}  // namespace carsync::test
