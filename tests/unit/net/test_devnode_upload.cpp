// add_file as devnode reads it off the wire: the multipart body parsed as it streams in, the
// `file` part written once into a store temp, adopted by the store, and nothing left behind.
#include "backend/cid.hpp"
#include "tools/devnode/devnode.hpp"
#include "unit/net/devnode_fixture.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>

#include <random>

namespace carsync::test {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;

struct RawReply {
  unsigned status = 0;
  std::string body;
};

class DevnodeUploadTest : public DevnodeTest {
 protected:
  void start_with_small_fields() {
    net::DevnodeOptions options;
    options.data_dir = tmp_ / "data";
    options.cstore_port = 0;
    options.r1fs_port = 0;
    options.max_json_bytes = 64;  // caps the non-file parts too
    auto node = net::Devnode::create(io_.get_executor(), options);
    ASSERT_TRUE(node) << node.error().message;
    node_ = std::move(*node);
    asio::co_spawn(io_, node_->run(), asio::detached);
  }

  // One request written as raw bytes (in `pieces`, each its own write), its reply read.
  asio::awaitable<RawReply> post(std::string head, std::vector<std::string> pieces) {
    asio::ip::tcp::socket socket(io_);
    const asio::ip::tcp::endpoint to(asio::ip::make_address("127.0.0.1"), node_->r1fs_port());
    co_await socket.async_connect(to, asio::use_awaitable);
    co_await asio::async_write(socket, asio::buffer(head), asio::use_awaitable);
    for (const auto& p : pieces) co_await asio::async_write(socket, asio::buffer(p), asio::use_awaitable);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> res;
    co_await http::async_read(socket, buffer, res, asio::use_awaitable);
    co_return RawReply{res.result_int(), res.body()};
  }

  static std::string head(std::size_t length, std::string_view boundary = "xyz") {
    return "POST /add_file HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=" +
           std::string(boundary) + "\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
  }

  std::vector<fs::path> store_temps() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(tmp_ / "data" / "cas" / "tmp")) out.push_back(e.path());
    return out;
  }
};

std::string file_part(std::string_view content, std::string_view boundary = "xyz") {
  return "--" + std::string(boundary) + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\n" +
         "Content-Type: application/octet-stream\r\n\r\n" + std::string(content) + "\r\n";
}

TEST_F(DevnodeUploadTest, FilePartSplitAcrossWritesIsStoredUnderItsCid) {
  start_devnode();
  std::mt19937 rng(7);
  std::string content(300 * 1024, '\0');
  for (auto& c : content) c = static_cast<char>(rng());
  content.insert(1000, "\r\n--xy");  // a delimiter's prefix inside the data
  const std::string body = "--xyz\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\n{\"nonce\":1}\r\n" +
                           file_part(content) + "--xyz--\r\n";
  std::vector<std::string> pieces;  // small and odd-sized, so delimiters straddle reads
  for (std::size_t at = 0; at < body.size();) {
    const auto n = std::min<std::size_t>(1 + rng() % 70000, body.size() - at);
    pieces.push_back(body.substr(at, n));
    at += n;
  }
  auto reply = run(post(head(body.size()), pieces));
  ASSERT_EQ(reply.status, 200u) << reply.body;
  const auto cid = std::string(json::parse(reply.body).at("result").at("cid").as_string());
  backend::Sha256 h;
  h.update(std::as_bytes(std::span(content.data(), content.size())));
  EXPECT_EQ(cid, backend::cid_from_digest(h.finish()));
  EXPECT_EQ(read_file(tmp_ / "data" / "cas" / "blobs" / cid), content);
  EXPECT_TRUE(store_temps().empty());
}

TEST_F(DevnodeUploadTest, MalformedBodiesAre422AndLeaveNoTemp) {
  start_devnode();
  const std::string no_close = file_part("abc");                       // no closing delimiter
  const std::string no_file = "--xyz\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\n{}\r\n--xyz--\r\n";
  auto replies = run([&]() -> asio::awaitable<std::vector<RawReply>> {
    // Named arguments: g++ 12 mishandles temporaries inside a co_await's operands.
    const std::string whole = file_part("abc") + "--xyz--\r\n";
    const std::vector<std::pair<std::string, std::string>> requests = {
        {head(no_close.size()), no_close},
        {head(no_file.size()), no_file},
        {head(whole.size(), "other"), whole},  // not its boundary
    };
    std::vector<RawReply> out;
    for (const auto& r : requests) {
      std::vector<std::string> pieces{r.second};
      auto reply = co_await post(r.first, pieces);
      out.push_back(reply);
    }
    co_return out;
  }());
  for (const auto& r : replies) {
    EXPECT_EQ(r.status, 422u) << r.body;
    EXPECT_NE(r.body.find("missing or invalid parameter: file"), std::string::npos) << r.body;
  }
  EXPECT_TRUE(store_temps().empty());
}

TEST_F(DevnodeUploadTest, AnOversizedFieldIs413) {
  start_with_small_fields();
  const std::string body = "--xyz\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\n" + std::string(65, 'j') +
                           "\r\n" + file_part("abc") + "--xyz--\r\n";
  auto reply = run(post(head(body.size()), {body}));
  EXPECT_EQ(reply.status, 413u) << reply.body;
  EXPECT_TRUE(store_temps().empty());
}

TEST_F(DevnodeUploadTest, AStatusFaultDropsTheUploadedBytes) {
  start_devnode("add_file:503:#1");
  const std::string body = file_part("abc") + "--xyz--\r\n";
  auto reply = run(post(head(body.size()), {body}));
  EXPECT_EQ(reply.status, 503u) << reply.body;
  EXPECT_TRUE(store_temps().empty());
  EXPECT_TRUE(!fs::exists(tmp_ / "data" / "cas" / "blobs") || fs::is_empty(tmp_ / "data" / "cas" / "blobs"));
}

}  // namespace
}  // namespace carsync::test
