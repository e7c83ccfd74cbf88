#include "backend/local_kv.hpp"

#include "support/temp_dir.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>

namespace carsync::backend {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using test::TempDir;
using test::write_file;

class LocalKvTest : public ::testing::Test {
 protected:
  TempDir tmp;
  LocalKv kv{tmp / "kv"};
};

TEST_F(LocalKvTest, SetThenGet) {
  const json::value record = json::parse(R"({"cid":"bafy","version":17,"ok":true,"xs":[1,2.5,null]})");
  ASSERT_TRUE(kv.hset("CHAINSTORE_SYNC", "key-1", record));
  auto got = kv.hget("CHAINSTORE_SYNC", "key-1");
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_TRUE(*got);
  EXPECT_EQ(**got, record);
}

TEST_F(LocalKvTest, MissingIsNullopt) {
  auto no_hkey = kv.hget("CHAINSTORE_SYNC", "absent");
  ASSERT_TRUE(no_hkey);
  EXPECT_FALSE(*no_hkey);
  ASSERT_TRUE(kv.hset("CHAINSTORE_SYNC", "present", 1));
  auto no_key = kv.hget("CHAINSTORE_SYNC", "absent");
  ASSERT_TRUE(no_key);
  EXPECT_FALSE(*no_key);
  auto all = kv.hgetall("OTHER");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->empty());
}

TEST_F(LocalKvTest, StringValueStaysString) {
  // A string that looks like JSON must not come back parsed.
  ASSERT_TRUE(kv.hset("h", "k", json::string(R"({"a":1})")));
  auto got = kv.hget("h", "k");
  ASSERT_TRUE(got && *got);
  ASSERT_TRUE((*got)->is_string());
  EXPECT_EQ((*got)->as_string(), R"({"a":1})");
}

TEST_F(LocalKvTest, OverwriteReplacesValue) {
  ASSERT_TRUE(kv.hset("h", "k", "first"));
  ASSERT_TRUE(kv.hset("h", "k", json::parse(R"({"second":2})")));
  auto got = kv.hget("h", "k");
  ASSERT_TRUE(got && *got);
  EXPECT_EQ(**got, json::parse(R"({"second":2})"));
  EXPECT_EQ(kv.hgetall("h")->size(), 1u);
}

TEST_F(LocalKvTest, HgetallReturnsEveryKey) {
  ASSERT_TRUE(kv.hset("h", "a", 1));
  ASSERT_TRUE(kv.hset("h", "b", "two"));
  ASSERT_TRUE(kv.hset("h", "", nullptr));
  ASSERT_TRUE(kv.hset("other", "c", 3));
  auto all = kv.hgetall("h");
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(json::value(*all), json::parse(R"({"a":1,"b":"two","":null})"));
}

TEST_F(LocalKvTest, UnicodeAndAwkwardKeys) {
  const std::string keys[] = {"ключ", "日本語🔑", "../../etc/passwd", "a/b", ".hidden", "with space\n"};
  for (const auto& k : keys) ASSERT_TRUE(kv.hset("hk/é", k, json::string(k))) << k;
  for (const auto& k : keys) {
    auto got = kv.hget("hk/é", k);
    ASSERT_TRUE(got && *got) << k;
    EXPECT_EQ((*got)->as_string(), k);
  }
  auto all = kv.hgetall("hk/é");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), std::size(keys));
  // Nothing escaped the store's own directory.
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
}

TEST_F(LocalKvTest, SecondInstanceSeesWrites) {
  LocalKv other(tmp / "kv");
  ASSERT_TRUE(kv.hset("h", "k", 42));
  auto got = other.hget("h", "k");
  ASSERT_TRUE(got && *got);
  EXPECT_EQ(**got, json::value(42));
  ASSERT_TRUE(other.hset("h", "k", 43));
  EXPECT_EQ(**kv.hget("h", "k"), json::value(43));
}

TEST_F(LocalKvTest, NoTempFilesLeft) {
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(kv.hset("h", "k" + std::to_string(i % 3), i));
  const fs::path dir = kv.hkey_dir("h");
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    ++files;
    EXPECT_TRUE(LocalKv::key_of_file(e.path().filename().string())) << e.path();
  }
  EXPECT_EQ(files, 3u);
}

TEST_F(LocalKvTest, HgetallSkipsStrayFiles) {
  ASSERT_TRUE(kv.hset("h", "good", true));
  const fs::path dir = kv.hkey_dir("h");
  write_file(dir / ".deadbeefdeadbeef.tmp", "{\"half");  // a writer killed mid-write
  write_file(dir / "6261.json", "{not json");             // key "ba", unparseable
  write_file(dir / "README", "hello");
  auto all = kv.hgetall("h");
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(json::value(*all), json::parse(R"({"good":true})"));
}

TEST_F(LocalKvTest, UnparseableValueIsAnErrorForHget) {
  write_file(kv.hkey_dir("h") / "6b.json", "{not json");  // key "k"
  auto got = kv.hget("h", "k");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, make_error_code(errc::store_failure));
}

// A reference provider sharing the store writes Python's json dialect; its records must
// not read as "unreadable value" and stall every consumer of the key.
TEST_F(LocalKvTest, PythonNonFiniteTokensAreRead) {
  write_file(kv.hkey_dir("h") / "6b.json", R"({"cid": "Qm", "metadata": {"x": NaN, "y": -Infinity}})");
  auto got = kv.hget("h", "k");
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_TRUE(*got);
  EXPECT_TRUE(std::isnan((*got)->at("metadata").at("x").as_double()));
  EXPECT_EQ((*got)->at("metadata").at("y").as_double(), -std::numeric_limits<double>::infinity());
  auto all = kv.hgetall("h");
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(all->size(), 1u);
}

// A stored value with a repeated key reads differently in different readers: refused.
TEST_F(LocalKvTest, StoredValueWithADuplicateKeyIsRefused) {
  write_file(kv.hkey_dir("h") / "6b.json", R"({"cid": "Qm", "manifest": {"archive_paths": [], "archive_paths": ["/"]}})");
  auto got = kv.hget("h", "k");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, make_error_code(errc::store_failure));
  EXPECT_NE(got.error().message.find("duplicate key \"archive_paths\" in $.manifest"), std::string::npos)
      << got.error().message;
}

TEST_F(LocalKvTest, KeyOfFileInvertsNaming) {
  EXPECT_EQ(LocalKv::key_of_file("6b6579.json"), "key");
  EXPECT_EQ(LocalKv::key_of_file(".json"), "");
  EXPECT_FALSE(LocalKv::key_of_file("6b6579.json.tmp"));
  EXPECT_FALSE(LocalKv::key_of_file("6b657.json"));
  EXPECT_FALSE(LocalKv::key_of_file("6B6579.json"));
  EXPECT_FALSE(LocalKv::key_of_file("zz.json"));
}

TEST_F(LocalKvTest, EmptyHkeyRejected) {
  EXPECT_FALSE(kv.hset("", "k", 1));
  EXPECT_FALSE(kv.hget("", "k"));
}

}  // namespace
}  // namespace carsync::backend
