// Ed25519 keys (libsodium), their public text with its key id and check, the secret file.
#include "core/signing_key.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace carsync::core {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::span<const unsigned char> bytes_of(std::string_view s) {
  return {reinterpret_cast<const unsigned char*>(s.data()), s.size()};
}

TEST(PublicKeyText, RoundTripsAndHasTheDocumentedShape) {
  const SecretKey key = SecretKey::generate();
  const std::string text = key.public_key().text();
  EXPECT_THAT(text, StartsWith("carsync-ed25519:" + key.public_key().id() + ":"));
  EXPECT_TRUE(valid_key_id(key.public_key().id()));
  EXPECT_EQ(text.size(), public_key_prefix.size() + 16 + 1 + 48);  // 36 bytes, base64url unpadded
  EXPECT_EQ(text.find_first_of("+/= \n"), std::string::npos);
  auto parsed = PublicKey::parse(text);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(*parsed, key.public_key());
  EXPECT_EQ(parsed->id(), key.public_key().id());
  EXPECT_EQ(parsed->text(), text);
  EXPECT_EQ(PublicKey::from_bytes(key.public_key().bytes()).text(), text);
  EXPECT_NE(SecretKey::generate().public_key(), key.public_key());
}

TEST(PublicKeyText, EverySingleCharacterChangeIsRefused) {
  const std::string text = SecretKey::generate().public_key().text();
  int tried = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    for (char c = 0x21; c < 0x7f; ++c) {
      if (c == text[i]) continue;
      std::string changed = text;
      changed[i] = c;
      EXPECT_FALSE(PublicKey::parse(changed)) << "position " << i << " -> " << c << ": " << changed;
      ++tried;
    }
    EXPECT_FALSE(PublicKey::parse(text.substr(0, i))) << "truncated to " << i;
    EXPECT_FALSE(PublicKey::parse(text.substr(0, i) + text.substr(i + 1))) << "deleted " << i;
  }
  EXPECT_GT(tried, 5000);
}

TEST(PublicKeyText, SaysWhichPartIsWrong) {
  const SecretKey key = SecretKey::generate();
  const std::string text = key.public_key().text();
  const std::string id = key.public_key().id();
  const std::string b64 = text.substr(text.rfind(':') + 1);
  const auto message = [](const std::string& t) {
    auto r = PublicKey::parse(t);
    EXPECT_FALSE(r) << t;
    if (r) return std::string();
    EXPECT_EQ(r.error().code, errc::bad_config);
    return r.error().message;
  };
  EXPECT_THAT(message("carsync-ed448:" + id + ":" + b64), HasSubstr("start with"));
  EXPECT_THAT(message(" " + text), HasSubstr("start with"));
  EXPECT_THAT(message("carsync-ed25519:" + b64), HasSubstr("':'"));
  EXPECT_THAT(message("carsync-ed25519:" + id.substr(1) + ":" + b64), HasSubstr("key id"));
  std::string upper = id;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  if (upper != id) EXPECT_THAT(message("carsync-ed25519:" + upper + ":" + b64), HasSubstr("key id"));
  EXPECT_THAT(message(text + "AAAA"), HasSubstr("bytes"));
  EXPECT_THAT(message(text.substr(0, text.size() - 4)), HasSubstr("bytes"));
  EXPECT_THAT(message(text + "="), HasSubstr("base64"));
  EXPECT_THAT(message(text + "\n"), HasSubstr("base64"));
  // Another key's id beside this key: the check (over id and key) fails.
  const std::string other_id = SecretKey::generate().public_key().id();
  EXPECT_THAT(message("carsync-ed25519:" + other_id + ":" + b64), HasSubstr("check failed"));
}

TEST(Signatures, VerifyAndAnyFlippedBitFails) {
  const SecretKey key = SecretKey::generate();
  const std::string message = "carsync-record-signature-v1\nhkey\nsync\n{\"cid\":\"Qm\"}";
  const Ed25519Signature sig = key.sign(message);
  EXPECT_TRUE(key.public_key().verify(message, sig));
  EXPECT_EQ(key.sign(message), sig);  // Ed25519 is deterministic
  for (std::size_t bit = 0; bit < message.size() * 8; bit += 7) {
    std::string changed = message;
    changed[bit / 8] = static_cast<char>(changed[bit / 8] ^ (1 << (bit % 8)));
    EXPECT_FALSE(key.public_key().verify(changed, sig)) << "message bit " << bit;
  }
  for (std::size_t bit = 0; bit < sig.size() * 8; ++bit) {
    Ed25519Signature changed = sig;
    changed[bit / 8] ^= static_cast<unsigned char>(1 << (bit % 8));
    EXPECT_FALSE(key.public_key().verify(message, changed)) << "signature bit " << bit;
  }
  EXPECT_FALSE(SecretKey::generate().public_key().verify(message, sig));
  EXPECT_FALSE(key.public_key().verify(message + " ", sig));
  EXPECT_FALSE(key.public_key().verify(message.substr(1), sig));
}

TEST(SecretKeyFile, RoundTripsTheSeedAndItsPublicKey) {
  const SecretKey key = SecretKey::generate();
  const std::string text = key.file_text();
  EXPECT_EQ(text.back(), '\n');
  auto doc = json::parse(text);
  EXPECT_EQ(doc.at("type"), "carsync-ed25519-secret-key");
  EXPECT_EQ(doc.at("public_key").as_string(), key.public_key().text());
  auto seed = from_base64(doc.at("seed").as_string());
  ASSERT_TRUE(seed);
  EXPECT_EQ(seed->size(), 32u);
  auto again = SecretKey::parse_file_text(text);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->public_key(), key.public_key());
  EXPECT_EQ(again->sign("m"), key.sign("m"));
  EXPECT_EQ(again->file_text(), text);
}

TEST(SecretKeyFile, RefusesWhatIsWrongNamingIt) {
  const SecretKey key = SecretKey::generate();
  json::object doc = json::parse(key.file_text()).as_object();
  const auto refused = [](const std::string& text) {
    auto r = SecretKey::parse_file_text(text);
    EXPECT_FALSE(r) << text;
    if (r) return std::string();
    EXPECT_EQ(r.error().code, errc::bad_config);
    return r.error().message;
  };
  EXPECT_THAT(refused("not json"), HasSubstr("not JSON"));
  EXPECT_THAT(refused("[]"), HasSubstr("not a JSON object"));
  json::object d = doc;
  d["type"] = "ssh-ed25519";
  EXPECT_THAT(refused(json::serialize(d)), HasSubstr("\"type\""));
  d = doc;
  d.erase("seed");
  EXPECT_THAT(refused(json::serialize(d)), HasSubstr("\"seed\""));
  d = doc;
  d["seed"] = to_base64(bytes_of(std::string(31, 'x')));
  EXPECT_THAT(refused(json::serialize(d)), HasSubstr("32 bytes"));
  d = doc;
  d["seed"] = "not base64!";
  EXPECT_THAT(refused(json::serialize(d)), HasSubstr("32 bytes"));
  d = doc;
  d["public_key"] = SecretKey::generate().public_key().text();
  EXPECT_THAT(refused(json::serialize(d)), HasSubstr("does not match its seed"));
  d = doc;
  d["public_key"] = "carsync-ed25519:x";
  EXPECT_THAT(refused(json::serialize(d)), HasSubstr("\"public_key\""));
  d = doc;
  d.erase("public_key");
  EXPECT_THAT(refused(json::serialize(d)), HasSubstr("\"public_key\""));
  std::string dup = key.file_text();
  dup.insert(1, "\"type\": \"x\",");
  EXPECT_THAT(refused(dup), HasSubstr("duplicate key \"type\""));
}

TEST(Base64, StandardAlphabetWithPaddingOnly) {
  EXPECT_EQ(to_base64(bytes_of("")), "");
  EXPECT_EQ(to_base64(bytes_of("f")), "Zg==");
  EXPECT_EQ(to_base64(bytes_of("fo")), "Zm8=");
  EXPECT_EQ(to_base64(bytes_of("foo")), "Zm9v");
  EXPECT_EQ(to_base64(bytes_of("\xfb\xff")), "+/8=");
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xfb\xff\xfe"})
    EXPECT_EQ(from_base64(to_base64(bytes_of(s))).value(), s);
  EXPECT_FALSE(from_base64("Zg"));        // padding missing
  EXPECT_FALSE(from_base64("Zg="));       // padding short
  EXPECT_FALSE(from_base64("Zg==="));     // padding long
  EXPECT_FALSE(from_base64("Zh=="));      // non-zero trailing bits
  EXPECT_FALSE(from_base64("Zm9v\n"));    // whitespace
  EXPECT_FALSE(from_base64(" Zm9v"));
  EXPECT_FALSE(from_base64("Zm 9v"));
  EXPECT_FALSE(from_base64("-_8="));      // url alphabet
  EXPECT_FALSE(from_base64("Zm9v!"));
  auto r = from_base64("Zm9v\n");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("base64"));
}

TEST(KeyId, SixteenLowercaseHexDigits) {
  EXPECT_TRUE(valid_key_id("0123456789abcdef"));
  EXPECT_FALSE(valid_key_id("0123456789ABCDEF"));
  EXPECT_FALSE(valid_key_id("0123456789abcde"));
  EXPECT_FALSE(valid_key_id("0123456789abcdef0"));
  EXPECT_FALSE(valid_key_id("0123456789abcdeg"));
  EXPECT_FALSE(valid_key_id(""));
}

}  // namespace
}  // namespace carsync::core
