// The record's "delta" field: what a provider writes reads back; every malformed shape is
// refused with its code and a message naming the part (the consumer then fetches the full
// archive, the record itself stays valid).
#include "core/delta_record.hpp"

#include "core/json_text.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace carsync::core {
namespace {

namespace json = boost::json;

Digest32 digest(unsigned char fill) {
  Digest32 d;
  d.fill(static_cast<std::byte>(fill));
  return d;
}

RecordDelta sample() {
  RecordDelta d;
  d.serial = 7;
  d.index = DeltaObject{"QmIndex", 4096, digest(0xab)};
  d.packs.push_back(PackRef{5, 1000, digest(1), "QmPack5"});
  d.packs.push_back(PackRef{7, 2000, digest(2), "QmPack7"});
  return d;
}

json::value record_with(json::value delta) { return json::object{{"cid", "QmArchive"}, {"delta", std::move(delta)}}; }

TEST(RecordDelta, WhatTheProviderWritesReadsBack) {
  const auto d = sample();
  auto back = record_delta(record_with(to_json(d)));
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_TRUE(back->has_value());
  EXPECT_EQ((*back)->serial, 7u);
  EXPECT_EQ((*back)->index, d.index);
  ASSERT_EQ((*back)->packs.size(), 2u);
  EXPECT_EQ((*back)->packs[1].cid, "QmPack7");
  EXPECT_EQ((*back)->packs[1].size, 2000u);
  EXPECT_EQ((*back)->packs[1].sha256, digest(2));
  // The text form: what a mixed fleet sees (the reference ignores the field).
  std::string ab;
  for (int i = 0; i < 32; ++i) ab += "ab";
  EXPECT_EQ(json::serialize(to_json(d.index)), R"({"cid":"QmIndex","size":4096,"sha256":")" + ab + "\"}");
}

TEST(RecordDelta, AbsentIsNotAnError) {
  auto r = record_delta(json::object{{"cid", "QmArchive"}});
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->has_value());
  auto not_object = record_delta(json::value(nullptr));
  ASSERT_TRUE(not_object);
  EXPECT_FALSE(not_object->has_value());
}

struct Case {
  const char* name;
  const char* mutation;  // JSON merged over the sample's field (top level of "delta")
  delta_errc code;
  const char* names;     // the message names this
};

class MalformedDelta : public ::testing::TestWithParam<Case> {};

TEST_P(MalformedDelta, IsRefusedNamingThePart) {
  json::object field = to_json(sample());
  const json::value patch = json::parse(GetParam().mutation);
  for (const auto& kv : patch.as_object()) {
    if (kv.value().is_null()) field.erase(kv.key());
    else field[kv.key()] = kv.value();
  }
  auto r = record_delta(record_with(field));
  ASSERT_FALSE(r) << GetParam().name;
  EXPECT_EQ(r.error().code, make_error_code(GetParam().code)) << r.error().message;
  EXPECT_NE(r.error().message.find(GetParam().names), std::string::npos) << r.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Table, MalformedDelta,
    ::testing::Values(
        Case{"future format", R"({"format": 2})", delta_errc::unsupported_format, "format 2"},
        Case{"format text", R"({"format": "1"})", delta_errc::malformed_field, "delta.format"},
        Case{"no serial", R"({"serial": null})", delta_errc::malformed_field, "delta.serial"},
        Case{"serial zero", R"({"serial": 0})", delta_errc::malformed_field, "delta.serial"},
        Case{"negative serial", R"({"serial": -3})", delta_errc::malformed_field, "delta.serial"},
        Case{"serial above 2^53", R"({"serial": 9007199254740993})", delta_errc::malformed_field, "2^53"},
        Case{"no index", R"({"index": null})", delta_errc::malformed_field, "delta.index"},
        Case{"index not object", R"({"index": "QmIndex"})", delta_errc::malformed_field, "delta.index"},
        Case{"index cid empty",
             R"({"index": {"cid": "", "size": 1, "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}})",
             delta_errc::malformed_field, "delta.index.cid"},
        Case{"index size float",
             R"({"index": {"cid": "Qm", "size": 1.5, "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}})",
             delta_errc::malformed_field, "delta.index.size"},
        Case{"index sha uppercase",
             R"({"index": {"cid": "Qm", "size": 1, "sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}})",
             delta_errc::malformed_field, "delta.index.sha256"},
        Case{"index sha short", R"({"index": {"cid": "Qm", "size": 1, "sha256": "abcd"}})",
             delta_errc::malformed_field, "delta.index.sha256"},
        Case{"packs missing", R"({"packs": null})", delta_errc::malformed_field, "delta.packs"},
        Case{"packs object", R"({"packs": {}})", delta_errc::malformed_field, "delta.packs"},
        Case{"pack serial above the record's",
             R"({"packs": [{"serial": 8, "cid": "Qm", "size": 1, "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]})",
             delta_errc::malformed_field, "delta.packs[0].serial 8"},
        Case{"packs out of order",
             R"({"packs": [{"serial": 6, "cid": "Qm", "size": 1, "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
                           {"serial": 5, "cid": "Qm", "size": 1, "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]})",
             delta_errc::malformed_field, "delta.packs[1].serial 5"},
        Case{"pack repeated",
             R"({"packs": [{"serial": 6, "cid": "Qm", "size": 1, "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
                           {"serial": 6, "cid": "Qm", "size": 1, "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]})",
             delta_errc::malformed_field, "delta.packs[1].serial 6"},
        Case{"pack without cid", R"({"packs": [{"serial": 6, "size": 1, "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]})",
             delta_errc::malformed_field, "delta.packs[0].cid"}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (auto& c : n)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

TEST(RecordDelta, TooManyPacksAreRefused) {
  RecordDelta d = sample();
  d.serial = 1000;
  d.packs.clear();
  for (std::uint64_t s = 1; s <= max_record_packs + 1; ++s) d.packs.push_back(PackRef{s, 1, digest(3), "Qm"});
  auto r = record_delta(record_with(to_json(d)));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("more than 64"), std::string::npos) << r.error().message;
}

TEST(RecordDelta, ObjectsOfHistoryEntriesReadBack) {
  const DeltaObject o{"QmPack", 12, digest(0x0f)};
  auto back = delta_object_from_json(to_json(o));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, o);
}

}  // namespace
}  // namespace carsync::core
