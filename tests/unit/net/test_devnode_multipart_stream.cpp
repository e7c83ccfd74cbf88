#include "tools/devnode/multipart_stream.hpp"
#include "tools/devnode/request_parse.hpp"

#include <gtest/gtest.h>

#include <random>

namespace carsync::net {
namespace {

using Status = MultipartStream::Status;

struct Parsed {
  Status fed = Status::ok;
  Status finished = Status::ok;
  bool has_file = false;
  std::string filename;
  std::string file;
  std::map<std::string, std::string> fields;
};

// Feeds `body` in pieces of the sizes `next_size()` gives, as the network might split it.
template <class NextSize>
Parsed parse(std::string_view body, std::string boundary, NextSize next_size,
             MultipartStream::Limits limits = {}) {
  Parsed out;
  MultipartStream m(std::move(boundary), limits, [&](std::string_view b) {
    out.file.append(b);
    return true;
  });
  for (std::size_t at = 0; at < body.size();) {
    const auto n = std::min<std::size_t>(next_size(), body.size() - at);
    out.fed = m.feed(body.substr(at, n));
    at += n;
  }
  out.finished = m.finish();
  out.has_file = m.has_file();
  out.filename = m.filename();
  out.fields = m.fields();
  return out;
}

Parsed whole(std::string_view body, std::string boundary = "B", MultipartStream::Limits limits = {}) {
  return parse(body, std::move(boundary), [&] { return body.size() + 1; }, limits);
}
Parsed bytewise(std::string_view body, std::string boundary = "B") {
  return parse(body, std::move(boundary), [] { return std::size_t{1}; });
}

std::string random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

const std::string kBody =
    "--B\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\n{\"nonce\":7}\r\n"
    "--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"s.tar.gz\"\r\n"
    "Content-Type: application/octet-stream\r\n\r\nA\r\nB\r\n--B--\r\n";

TEST(DevnodeMultipartStream, PartsBeforeTheFilePartAndCrlfInsideIt) {
  for (const auto& p : {whole(kBody), bytewise(kBody)}) {
    EXPECT_EQ(p.finished, Status::ok);
    ASSERT_TRUE(p.has_file);
    EXPECT_EQ(p.filename, "s.tar.gz");
    EXPECT_EQ(p.file, "A\r\nB");  // the CRLF before the delimiter is the delimiter's, not the file's
    EXPECT_EQ(p.fields.at("body"), "{\"nonce\":7}");
  }
}

TEST(DevnodeMultipartStream, PartsAfterTheFilePartAsTheSdkSendsThem) {
  using namespace std::string_literals;  // the file bytes hold a NUL
  const std::string body =
      "--X-1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
      "Content-Type: application/octet-stream\r\n\r\n\x00\x01\x02\xff\r\n"
      "--X-1\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\n{\"filename\":\"a.bin\"}\r\n--X-1--\r\n"s;
  auto p = bytewise(body, "X-1");
  EXPECT_EQ(p.finished, Status::ok);
  EXPECT_EQ(p.file, std::string("\x00\x01\x02\xff", 4));
  EXPECT_EQ(p.fields.at("body"), "{\"filename\":\"a.bin\"}");
  // A second `file` part is read past; a nameless filename is "file".
  auto q = whole("--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\none\r\n"
                 "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"2\"\r\n\r\ntwo\r\n--B--");
  EXPECT_EQ(q.finished, Status::ok);
  EXPECT_EQ(q.filename, "file");
  EXPECT_EQ(q.file, "one");
}

TEST(DevnodeMultipartStream, BoundaryTextThatIsNotADelimiterIsContent) {
  // "--B" without its CRLF, "\r\n-B", "\r\n--" then CR, a lone CR: all file bytes. With
  // boundary "Bq", "\r\n--B" followed by CRLF is content too (a prefix of the delimiter).
  const std::string content = "x--B y\r\n-B\r\n--\r\r\n-\r\r\n--B\r\n";
  const std::string body = "preamble --B\r\n--Bq\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" +
                           content + "\r\n--Bq--\r\nepilogue --Bq";
  for (const auto& p : {whole(body, "Bq"), bytewise(body, "Bq")}) {
    EXPECT_EQ(p.finished, Status::ok);
    EXPECT_EQ(p.file, content);
  }
  // A real delimiter followed by neither CRLF nor "--" is malformed.
  const std::string bad = "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nA\r\n--Bq\r\n--B--";
  EXPECT_EQ(whole(bad).finished, Status::malformed);
}

TEST(DevnodeMultipartStream, RandomSplitsGiveTheSameBytesAsFindFilePart) {
  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    // Random file bytes seeded with pieces of the delimiter, so partial matches straddle splits.
    std::string file = random_bytes(20000, static_cast<std::uint32_t>(round));
    for (int i = 0; i < 40; ++i) file.insert(rng() % file.size(), std::string("\r\n--bnd").substr(0, rng() % 6 + 1));
    // ... but never a whole delimiter (a prefix may meet random bytes that complete it).
    for (auto pos = file.find("\r\n--bnd"); pos != std::string::npos; pos = file.find("\r\n--bnd")) file[pos + 6] = 'x';
    const std::string body = "--bnd\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n" + file +
                             "\r\n--bnd\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\n{}\r\n--bnd--\r\n";
    auto expected = find_file_part(body, "multipart/form-data; boundary=bnd");
    ASSERT_TRUE(expected);
    auto p = parse(body, "bnd", [&] { return std::size_t{1} + rng() % 3000; });
    ASSERT_EQ(p.finished, Status::ok) << round;
    ASSERT_EQ(p.file, expected->content) << round;
    EXPECT_EQ(p.fields.at("body"), "{}");
  }
}

TEST(DevnodeMultipartStream, MissingClosingDelimiterIsMalformed) {
  const std::string cut[] = {
      kBody.substr(0, kBody.size() - 4),   // "--B" without its "--"
      kBody.substr(0, kBody.size() - 12),  // ends inside the file part
      kBody.substr(0, 20),                 // inside the first headers
      "",                                  // nothing at all
      "no delimiter anywhere",
  };
  for (const auto& body : cut) {
    EXPECT_EQ(whole(body).finished, Status::malformed) << body;
    EXPECT_EQ(bytewise(body).finished, Status::malformed) << body;
  }
  EXPECT_EQ(whole(kBody, "").finished, Status::malformed);  // no boundary
  EXPECT_EQ(whole("--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nA\r\n--Bxy").fed, Status::malformed);
  EXPECT_EQ(whole("--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nA\r\n--B").finished, Status::malformed);
  // The first delimiter must be followed by CRLF or "--".
  EXPECT_EQ(whole("--B Content-Disposition: form-data; name=\"file\"\r\n\r\nA\r\n--B--").finished, Status::malformed);
}

TEST(DevnodeMultipartStream, APartTooBigIsRefused) {
  MultipartStream::Limits small;
  small.max_field_bytes = 8;
  small.max_header_bytes = 150;
  EXPECT_EQ(whole(kBody, "B", small).fed, Status::too_large);  // `body` holds 11 bytes
  small.max_field_bytes = 11;
  EXPECT_EQ(whole(kBody, "B", small).finished, Status::ok);
  const std::string long_headers =
      "--B\r\nContent-Disposition: form-data; name=\"file\"\r\nX-Pad: " + std::string(200, 'p') + "\r\n\r\nA\r\n--B--";
  EXPECT_EQ(whole(long_headers, "B", small).fed, Status::too_large);
  EXPECT_EQ(parse(long_headers, "B", [] { return std::size_t{7}; }, small).fed, Status::too_large);
}

TEST(DevnodeMultipartStream, ASinkFailureStopsTheStream) {
  int calls = 0;
  MultipartStream m("B", {}, [&](std::string_view) { return ++calls < 1; });
  EXPECT_EQ(m.feed(kBody), Status::sink_failed);
  EXPECT_EQ(m.feed("more"), Status::sink_failed);
  EXPECT_EQ(m.finish(), Status::sink_failed);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace carsync::net
