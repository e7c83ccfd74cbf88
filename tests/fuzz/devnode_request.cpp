// A request as devnode receives it from a client: Beast's HTTP parser (as devnode configures
// it), then devnode's own reading of it (tools/devnode/request_parse): the target's route
// and query, and either the multipart upload of add_file or a JSON body. add_file's body is
// also read as it streams in (tools/devnode/multipart_stream), in pieces of a size the input
// chooses: whatever the stream accepts, the whole-body reading must agree with, byte for byte.
#include "tools/devnode/multipart_stream.hpp"
#include "tools/devnode/request_parse.hpp"

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace http = boost::beast::http;
using namespace carsync;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  http::request_parser<http::string_body> parser;
  parser.eager(true);
  parser.body_limit(1 << 20);
  boost::beast::error_code ec;
  std::size_t used = 0;
  while (used < size && !parser.is_done()) {
    const auto n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec || n == 0) break;
    used += n;
  }
  if (!parser.is_header_done()) return 0;
  const auto& req = parser.get();
  auto target = net::parse_request_target(req.target());
  const std::string_view content_type = req[http::field::content_type];
  const std::string_view body = req.body();
  if (target.route == "add_file") {
    auto part = net::find_file_part(body, content_type);
    // The part's bytes are a view into the body, never past it.
    if (part && !part->content.empty() &&
        (part->content.data() < body.data() || part->content.data() + part->content.size() > body.data() + body.size()))
      std::abort();
    std::string streamed;
    net::MultipartStream stream(net::header_param(content_type, "boundary"), {}, [&](std::string_view b) {
      streamed.append(b);
      return true;
    });
    const std::size_t piece = size > 0 ? 1 + data[0] % 97 : 1;
    for (std::size_t off = 0; off < body.size(); off += piece) stream.feed(body.substr(off, piece));
    if (stream.finish() == net::MultipartStream::Status::ok && stream.has_file()) {
      if (!part || part->content != streamed || part->filename != stream.filename()) std::abort();
    }
  } else {
    boost::system::error_code jec;
    (void)boost::json::parse(body, jec);
  }
  return 0;
}
