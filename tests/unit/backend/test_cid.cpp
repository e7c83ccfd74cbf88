#include "backend/cid.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace carsync::backend {
namespace {

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string cid_of(std::string_view content) {
  Sha256 h;
  h.update(bytes_of(content));
  return cid_from_digest(h.finish());
}

TEST(Cid, EmptyInputMatchesIpfs) {
  EXPECT_EQ(cid_of(""), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
}

TEST(Cid, HelloWorldMatchesIpfs) {
  EXPECT_EQ(cid_of("hello world"), "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e");
}

TEST(Cid, IncrementalHashEqualsOneShot) {
  Sha256 h;
  h.update(bytes_of("hello"));
  h.update(bytes_of(""));
  h.update(bytes_of(" world"));
  EXPECT_EQ(cid_from_digest(h.finish()), cid_of("hello world"));
}

TEST(Cid, DigestRoundTrips) {
  Sha256 h;
  h.update(bytes_of("round trip"));
  const Sha256Digest d = h.finish();
  auto back = digest_from_cid(cid_from_digest(d));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, d);
}

TEST(Cid, BadCidsRejected) {
  const std::string good = cid_of("x");
  const std::string wrong_codec = [] {
    // CIDv1 dag-pb (0x70) of the empty digest: a real CID, but not a raw blob.
    std::string c = cid_of("");
    auto raw = base32_decode(std::string_view(c).substr(1)).value();
    raw[1] = '\x70';
    return "b" + base32_lower(bytes_of(raw));
  }();
  for (std::string bad : {std::string(), std::string("b"), "B" + good.substr(1), "z" + good.substr(1),
                          good.substr(0, good.size() - 1), good + "a", good.substr(0, 10) + "1" + good.substr(11),
                          std::string("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"), std::string("b../../etc"),
                          wrong_codec}) {
    auto r = digest_from_cid(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, make_error_code(errc::invalid_record)) << bad;
  }
}

TEST(Base32, Rfc4648Vectors) {
  // RFC 4648 §10, lowercased and without padding.
  const std::pair<std::string_view, std::string_view> vectors[] = {
      {"", ""}, {"f", "my"}, {"fo", "mzxq"}, {"foo", "mzxw6"}, {"foob", "mzxw6yq"},
      {"fooba", "mzxw6ytb"}, {"foobar", "mzxw6ytboi"},
  };
  for (auto [plain, encoded] : vectors) {
    EXPECT_EQ(base32_lower(bytes_of(plain)), encoded);
    auto decoded = base32_decode(encoded);
    ASSERT_TRUE(decoded) << encoded;
    EXPECT_EQ(*decoded, plain);
  }
}

TEST(Base32, RoundTripsEveryLengthAndByte) {
  std::string data;
  for (int i = 0; i < 300; ++i) {
    auto decoded = base32_decode(base32_lower(bytes_of(data)));
    ASSERT_TRUE(decoded) << "length " << data.size();
    ASSERT_EQ(*decoded, data);
    data.push_back(static_cast<char>(i * 37 + 11));
  }
}

TEST(Base32, RejectsNonCanonicalText) {
  EXPECT_FALSE(base32_decode("MZXW6"));   // upper case
  EXPECT_FALSE(base32_decode("mzxw6="));  // padding
  EXPECT_FALSE(base32_decode("mzx1"));    // '1' is not in the alphabet
  EXPECT_FALSE(base32_decode("m"));       // 5 bits: no whole byte
  EXPECT_FALSE(base32_decode("mzx"));     // impossible length
  EXPECT_FALSE(base32_decode("mz"));      // non-zero trailing bits ("f" is "my")
}

}  // namespace
}  // namespace carsync::backend
