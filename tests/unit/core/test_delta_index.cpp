// The delta index (core/delta_index.hpp): its binary form, every rule parse_index enforces
// (one hostile index per rule, each refused with its code and a message naming the fault),
// the provider's plan of a new version and the consumer's plan of a fetch.
#include "core/delta_index.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace carsync::core {
namespace {

ChunkId id_of(int n) {
  ChunkId id{};
  id[0] = static_cast<std::byte>(n);
  id[31] = static_cast<std::byte>(0xA5);
  return id;
}

void fix_sums(DeltaIndex& x) {
  x.archive_size = 0;
  x.plain_size = 0;
  for (const auto& c : x.chunks) {
    x.archive_size += c.frame_size;
    x.plain_size += c.plain_size;
  }
}

// Serial 3, zstd, format 1's chunker: a chunk from pack 1, two in the index's own pack (in
// order from 0), a repeat of the first, and a short last chunk from pack 2.
DeltaIndex sample() {
  DeltaIndex x;
  x.codec = FrameCodec::zstd;
  x.serial = 3;
  x.archive_sha256[0] = std::byte{0x42};
  x.chunks = {
      {id_of(1), 100000, 40000, 1, 0},      // 0
      {id_of(2), 200000, 90000, 3, 0},      // 1
      {id_of(1), 100000, 40000, 1, 0},      // 2: a repeat of 0
      {id_of(3), 70000, 30000, 3, 90000},   // 3
      {id_of(4), 1000, 600, 2, 500},        // 4: short, last
  };
  fix_sums(x);
  return x;
}

void put32(std::vector<std::byte>& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<std::byte>(v >> (8 * i));
}
void put64(std::vector<std::byte>& b, std::size_t at, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = static_cast<std::byte>(v >> (8 * i));
}
std::size_t entry_at(std::size_t i) { return delta_index_header_bytes + i * delta_index_entry_bytes; }

TEST(DeltaIndex, RoundTripsThroughItsBinaryForm) {
  const DeltaIndex x = sample();
  const auto bytes = encode_index(x);
  ASSERT_EQ(bytes.size(), delta_index_header_bytes + 5 * delta_index_entry_bytes);
  EXPECT_EQ(std::memcmp(bytes.data(), "CSDELTA\0", 8), 0);
  auto parsed = parse_index(bytes);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(*parsed, x);
  EXPECT_EQ(encode_index(*parsed), bytes);
}

TEST(DeltaIndex, FieldsAreLittleEndianWhereTheHeaderSays) {
  DeltaIndex x = sample();
  x.serial = 0x0102030405060708ull;
  for (auto& c : x.chunks)
    if (c.pack_serial == 3) c.pack_serial = x.serial;
  const auto b = encode_index(x);
  EXPECT_EQ(b[8], std::byte{1});    // format
  EXPECT_EQ(b[12], std::byte{2});   // codec zstd
  EXPECT_EQ(b[16 + 2], std::byte{1});  // min 64 KiB = 0x00010000
  EXPECT_EQ(b[32], std::byte{8});   // serial, low byte first
  EXPECT_EQ(b[39], std::byte{1});
  EXPECT_EQ(b[40], std::byte{5});   // count
  EXPECT_EQ(b[64], std::byte{0x42});  // archive SHA-256
  EXPECT_EQ(b[entry_at(1) + 32], static_cast<std::byte>(200000 & 0xff));  // plain size
  EXPECT_EQ(b[entry_at(4) + 48], static_cast<std::byte>(500 & 0xff));     // pack offset
  EXPECT_TRUE(parse_index(b));
}

TEST(DeltaIndex, AnEmptyArchiveHasAnEmptyIndex) {
  DeltaIndex x;
  x.serial = 1;
  auto parsed = parse_index(encode_index(x));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_TRUE(parsed->chunks.empty());
}

struct Hostile {
  const char* name;
  std::function<void(DeltaIndex&)> edit_index;          // before encoding (sums fixed after)
  std::function<void(std::vector<std::byte>&)> edit_bytes;  // after encoding
  delta_errc code;
  const char* says;  // a piece of the message
};

TEST(DeltaIndex, RefusesEveryHostileIndexNamingTheFault) {
  const std::uint64_t u64max = std::numeric_limits<std::uint64_t>::max();
  const std::vector<Hostile> cases = {
      {"bad magic", {}, [](auto& b) { b[3] = std::byte{'X'}; }, delta_errc::malformed_index, "magic"},
      {"empty", {}, [](auto& b) { b.clear(); }, delta_errc::malformed_index, "magic"},
      {"unknown format", {}, [](auto& b) { put32(b, 8, 2); }, delta_errc::unsupported_format, "format 2"},
      {"future format, other header", {}, [](auto& b) { put32(b, 8, 7); b.resize(20); },
       delta_errc::unsupported_format, "format 7"},
      {"format 0", {}, [](auto& b) { put32(b, 8, 0); }, delta_errc::unsupported_format, "format 0"},
      {"magic alone", {}, [](auto& b) { b.resize(10); }, delta_errc::malformed_index, "10 bytes, shorter than"},
      {"short header", {}, [](auto& b) { b.resize(100); }, delta_errc::malformed_index, "shorter than the 128-byte header"},
      {"unknown codec", {}, [](auto& b) { put32(b, 12, 3); }, delta_errc::malformed_index, "unknown codec 3"},
      {"codec 0", {}, [](auto& b) { put32(b, 12, 0); }, delta_errc::malformed_index, "unknown codec 0"},
      {"min below 64", {}, [](auto& b) { put32(b, 16, 63); }, delta_errc::malformed_index, "chunker parameters 63/"},
      {"avg not a power of two", {}, [](auto& b) { put32(b, 20, 300000); }, delta_errc::malformed_index,
       "chunker parameters"},
      {"min not below avg", {}, [](auto& b) { put32(b, 16, 262144); }, delta_errc::malformed_index,
       "chunker parameters"},
      {"max above 16 MiB", {}, [](auto& b) { put32(b, 24, (16u << 20) + 1); }, delta_errc::malformed_index,
       "not usable"},
      {"reserved header word", {}, [](auto& b) { put32(b, 28, 1); }, delta_errc::malformed_index,
       "reserved header field"},
      {"reserved header bytes", {}, [](auto& b) { b[127] = std::byte{1}; }, delta_errc::malformed_index,
       "reserved header bytes"},
      {"serial 0", {}, [](auto& b) { put64(b, 32, 0); }, delta_errc::malformed_index, "serial 0"},
      {"count larger than the bytes", {}, [](auto& b) { put64(b, 40, 6); }, delta_errc::malformed_index,
       "chunk count 6 needs 384 bytes of entries, only 320 present"},
      {"count far larger than the bytes", {}, [](auto& b) { put64(b, 40, max_delta_chunks); },
       delta_errc::malformed_index, "truncated"},
      {"count above the limit", {}, [](auto& b) { put64(b, 40, max_delta_chunks + 1); },
       delta_errc::malformed_index, "above the limit"},
      {"count that overflows when multiplied", {}, [=](auto& b) { put64(b, 40, u64max / 2); },
       delta_errc::malformed_index, "above the limit"},
      {"truncated entry", {}, [](auto& b) { b.resize(b.size() - 10); }, delta_errc::malformed_index, "truncated"},
      {"trailing bytes", {}, [](auto& b) { b.push_back(std::byte{0}); }, delta_errc::malformed_index,
       "1 trailing bytes after 5 entries"},
      {"reserved entry field", {}, [](auto& b) { b[entry_at(2) + 60] = std::byte{1}; }, delta_errc::malformed_index,
       "entry 2: reserved field"},
      {"archive size mismatch", {}, [](auto& b) { b[48] ^= std::byte{1}; }, delta_errc::malformed_index,
       "header says archive size"},
      {"plain size mismatch", {}, [](auto& b) { b[56] ^= std::byte{1}; }, delta_errc::malformed_index,
       "plain bytes, header says"},
      {"frame of 0 bytes", [](auto& x) { x.chunks[1].frame_size = 0; }, {}, delta_errc::malformed_index,
       "entry 1: frame of 0 bytes"},
      {"frame above the bound",
       [](auto& x) { x.chunks[3].frame_size = static_cast<std::uint32_t>(max_frame_size(FrameCodec::zstd, 70000) + 1); },
       {}, delta_errc::malformed_index, "entry 3: frame of"},
      {"gzip frame above the bound",
       [](auto& x) {
         x.codec = FrameCodec::gzip;
         x.chunks[4].frame_size = static_cast<std::uint32_t>(max_frame_size(FrameCodec::gzip, 1000) + 1);
       },
       {}, delta_errc::malformed_index, "entry 4: frame of"},
      {"plain size 0", [](auto& x) { x.chunks[4].plain_size = 0; }, {}, delta_errc::malformed_index,
       "entry 4: plain size 0"},
      {"plain above the maximum", [](auto& x) { x.chunks[1].plain_size = (1u << 20) + 1; }, {},
       delta_errc::malformed_index, "entry 1: plain size 1048577 above the chunker's maximum"},
      {"short chunk not last", [](auto& x) { x.chunks[3].plain_size = 1000; }, {}, delta_errc::malformed_index,
       "entry 3: plain size 1000 below the chunker's minimum"},
      {"pack serial 0", [](auto& x) { x.chunks[4].pack_serial = 0; }, {}, delta_errc::malformed_index,
       "entry 4: pack serial 0"},
      {"pack serial above the index's", [](auto& x) { x.chunks[4].pack_serial = 4; }, {},
       delta_errc::malformed_index, "entry 4: pack serial 4 above the index's serial 3"},
      {"pack range that overflows u64", [=](auto& x) { x.chunks[4].pack_offset = u64max - 100; }, {},
       delta_errc::malformed_index, "entry 4: pack offset"},
      {"same id, other sizes",
       [](auto& x) {
         x.chunks[2].plain_size = 100001;
       },
       {}, delta_errc::malformed_index, "entry 2: chunk 0100000000000000 differs from entry 0 with the same id"},
      {"same id, other place", [](auto& x) { x.chunks[2].pack_offset = 40000; }, {}, delta_errc::malformed_index,
       "entry 2: chunk 0100000000000000 differs from entry 0"},
      {"same id as an own-pack chunk, other place",
       [](auto& x) { x.chunks.insert(x.chunks.begin() + 4, ChunkEntry{id_of(2), 200000, 90000, 2, 10000}); },
       {}, delta_errc::malformed_index, "entry 4: chunk 0200000000000000 differs from entry 1"},
      {"overlapping ranges of an older pack",
       [](auto& x) {
         x.chunks[0].pack_serial = x.chunks[2].pack_serial = 2;  // [0, 40000) and entry 4's [500, 1100)
       },
       {}, delta_errc::malformed_index, "entry 4: bytes 500..1100 of pack 2 overlap entry 0's"},
      {"overlapping ranges of the own pack", [](auto& x) { x.chunks[3].pack_offset = 50000; }, {},
       delta_errc::malformed_index, "entry 3: bytes 50000..80000 of pack 3 overlap entry 1's"},
      {"two ids at one range",
       [](auto& x) { x.chunks.insert(x.chunks.begin() + 4, ChunkEntry{id_of(5), 70000, 30000, 3, 90000}); },
       {}, delta_errc::malformed_index, "entry 4: bytes 90000..120000 of pack 3 overlap entry 3's"},
      {"own pack out of first-occurrence order",
       [](auto& x) {
         x.chunks[1].pack_offset = 30000;
         x.chunks[3].pack_offset = 0;
       },
       {}, delta_errc::malformed_index, "entry 1: offset 30000 in the index's own pack"},
      {"gap in the own pack", [](auto& x) { x.chunks[3].pack_offset = 90001; }, {}, delta_errc::malformed_index,
       "entry 3: offset 90001 in the index's own pack leaves a gap"},
  };
  for (const auto& c : cases) {
    DeltaIndex x = sample();
    if (c.edit_index) {
      c.edit_index(x);
      fix_sums(x);
    }
    auto bytes = encode_index(x);
    if (c.edit_bytes) c.edit_bytes(bytes);
    auto parsed = parse_index(bytes);
    ASSERT_FALSE(parsed) << c.name << ": parsed";
    EXPECT_EQ(parsed.error().code, make_error_code(c.code)) << c.name << ": " << parsed.error().message;
    EXPECT_NE(parsed.error().message.find(c.says), std::string::npos)
        << c.name << ": \"" << parsed.error().message << "\" does not say \"" << c.says << "\"";
  }
}

TEST(DeltaIndex, FrameBoundsCoverTheWorstCaseOfEachCodec) {
  for (std::uint64_t plain : {0ull, 1ull, 100ull, 16383ull, 65536ull, 131071ull, 1ull << 20, 16ull << 20}) {
    // gzip at any level may fall back to stored blocks: 5 bytes per block of at most 16383
    // bytes (the literal buffer at memLevel 8), plus the member's 18 bytes of framing.
    const std::uint64_t stored = plain + 5 * ((plain + 16382) / 16383 + 1) + 18;
    EXPECT_GE(max_frame_size(FrameCodec::gzip, plain), stored) << plain;
    // zstd: raw blocks of 128 KiB cost 3 bytes each; the frame header at most 18, the
    // checksum 4.
    const std::uint64_t raw = plain + 3 * ((plain + (128u << 10) - 1) / (128u << 10) + 1) + 18 + 4;
    EXPECT_GE(max_frame_size(FrameCodec::zstd, plain), raw) << plain;
  }
}

TEST(DeltaIndex, AValidIndexMayUseOtherUsableChunkerParams) {
  DeltaIndex x = sample();
  x.chunker = {1024, 4096, 1u << 20};
  x.chunks[3].plain_size = 2000;  // above this minimum, far below format 1's
  x.chunks[3].frame_size = 1900;
  fix_sums(x);
  auto parsed = parse_index(encode_index(x));
  EXPECT_TRUE(parsed) << parsed.error().message;
}

// The chunker rule the index applies is cdc_chunker.hpp's valid_chunker_params: 64 <= min <
// avg < max <= 16 MiB, avg a power of two (delta_index.cpp keeps its own copy so as not to
// depend on the chunker's implementation; this table holds both to the header's words).
TEST(DeltaIndex, ChunkerParamsFollowTheChunkersRule) {
  const std::vector<std::pair<ChunkerParams, bool>> table = {
      {chunker_v1, true},
      {{64, 128, 129}, true},
      {{63, 128, 4096}, false},
      {{128, 128, 4096}, false},
      {{256, 128, 4096}, false},
      {{64, 4096, 4096}, false},
      {{64, 3000, 4096}, false},
      {{64, 1u << 23, 16u << 20}, true},
      {{64, 1u << 23, (16u << 20) + 1}, false},
      {{0, 0, 0}, false},
  };
  for (const auto& [params, usable] : table) {
    DeltaIndex x;
    x.serial = 1;
    x.chunker = params;
    auto parsed = parse_index(encode_index(x));
    EXPECT_EQ(static_cast<bool>(parsed), usable)
        << params.min_size << "/" << params.avg_size << "/" << params.max_size;
  }
}

// ---- plan_version ------------------------------------------------------------------------

std::vector<FrameInfo> frames_of(std::initializer_list<std::pair<int, std::uint32_t>> ids_and_sizes) {
  std::vector<FrameInfo> f;
  for (auto [n, size] : ids_and_sizes) f.push_back(FrameInfo{id_of(n), 100000, size});
  return f;
}

TEST(DeltaPlanVersion, FirstVersionStoresEveryChunkOnceInOrder) {
  const auto frames = frames_of({{1, 500}, {2, 700}, {1, 500}, {3, 300}});
  Digest32 sha{};
  sha[5] = std::byte{9};
  auto v = plan_version(frames, nullptr, 1, FrameCodec::gzip, sha);
  EXPECT_EQ(v.index.serial, 1u);
  EXPECT_EQ(v.index.codec, FrameCodec::gzip);
  EXPECT_EQ(v.index.chunker, chunker_v1);
  EXPECT_EQ(v.index.archive_sha256, sha);
  EXPECT_EQ(v.index.archive_size, 2000u);
  EXPECT_EQ(v.index.plain_size, 400000u);
  ASSERT_EQ(v.pack.size(), 3u);  // the repeat is stored once
  EXPECT_EQ(v.pack[0].archive_offset, 0u);
  EXPECT_EQ(v.pack[0].size, 500u);
  EXPECT_EQ(v.pack[1].archive_offset, 500u);
  EXPECT_EQ(v.pack[1].size, 700u);
  EXPECT_EQ(v.pack[2].archive_offset, 1700u);
  EXPECT_EQ(v.pack[2].size, 300u);
  EXPECT_EQ(v.pack_size, 1500u);
  ASSERT_EQ(v.index.chunks.size(), 4u);
  EXPECT_EQ(v.index.chunks[0], (ChunkEntry{id_of(1), 100000, 500, 1, 0}));
  EXPECT_EQ(v.index.chunks[1], (ChunkEntry{id_of(2), 100000, 700, 1, 500}));
  EXPECT_EQ(v.index.chunks[2], v.index.chunks[0]);
  EXPECT_EQ(v.index.chunks[3], (ChunkEntry{id_of(3), 100000, 300, 1, 1200}));
  auto parsed = parse_index(encode_index(v.index));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(*parsed, v.index);
}

TEST(DeltaPlanVersion, UnchangedFramesKeepTheirLocationsNewOnesGoIntoThisPack) {
  auto v1 = plan_version(frames_of({{1, 500}, {2, 700}, {3, 300}}), nullptr, 1, FrameCodec::zstd, {});
  auto v2 = plan_version(frames_of({{1, 500}, {4, 650}, {3, 300}, {5, 50}, {4, 650}}), &v1.index, 2,
                         FrameCodec::zstd, {});
  ASSERT_EQ(v2.index.chunks.size(), 5u);
  EXPECT_EQ(v2.index.chunks[0], (ChunkEntry{id_of(1), 100000, 500, 1, 0}));
  EXPECT_EQ(v2.index.chunks[1], (ChunkEntry{id_of(4), 100000, 650, 2, 0}));
  EXPECT_EQ(v2.index.chunks[2], (ChunkEntry{id_of(3), 100000, 300, 1, 1200}));
  EXPECT_EQ(v2.index.chunks[3], (ChunkEntry{id_of(5), 100000, 50, 2, 650}));
  EXPECT_EQ(v2.index.chunks[4], v2.index.chunks[1]);
  ASSERT_EQ(v2.pack.size(), 2u);
  EXPECT_EQ(v2.pack[0].archive_offset, 500u);
  EXPECT_EQ(v2.pack[1].archive_offset, 1450u);
  EXPECT_EQ(v2.pack_size, 700u);
  EXPECT_TRUE(parse_index(encode_index(v2.index)));

  // A third version keeps what the second kept from the first, and the second's own.
  auto v3 = plan_version(frames_of({{1, 500}, {4, 650}, {6, 10}}), &v2.index, 3, FrameCodec::zstd, {});
  EXPECT_EQ(v3.index.chunks[0].pack_serial, 1u);
  EXPECT_EQ(v3.index.chunks[1].pack_serial, 2u);
  EXPECT_EQ(v3.index.chunks[2], (ChunkEntry{id_of(6), 100000, 10, 3, 0}));
  EXPECT_EQ(v3.pack_size, 10u);
  EXPECT_TRUE(parse_index(encode_index(v3.index)));
}

TEST(DeltaPlanVersion, APreviousIndexOfAnotherCodecOrALaterSerialIsNotUsed) {
  auto v1 = plan_version(frames_of({{1, 500}}), nullptr, 5, FrameCodec::zstd, {});
  auto other_codec = plan_version(frames_of({{1, 500}}), &v1.index, 6, FrameCodec::gzip, {});
  EXPECT_EQ(other_codec.index.chunks[0].pack_serial, 6u);
  auto restarted = plan_version(frames_of({{1, 500}}), &v1.index, 1, FrameCodec::zstd, {});
  EXPECT_EQ(restarted.index.chunks[0].pack_serial, 1u);
  EXPECT_EQ(restarted.pack_size, 500u);
  EXPECT_TRUE(parse_index(encode_index(restarted.index)));
}

// ---- plan_fetch --------------------------------------------------------------------------

// A chain of four versions of four chunks: v2 changes chunk b, v3 chunk d, v4 chunk c.
struct Chain {
  std::vector<NewVersion> v;  // v[0] is version 1
  std::vector<PackRef> refs;  // one per version
  Chain() {
    const std::vector<std::vector<std::pair<int, std::uint32_t>>> frames = {
        {{1, 5000}, {2, 7000}, {3, 3000}, {4, 9000}},
        {{1, 5000}, {12, 7100}, {3, 3000}, {4, 9000}},
        {{1, 5000}, {12, 7100}, {3, 3000}, {14, 8000}},
        {{1, 5000}, {12, 7100}, {13, 2900}, {14, 8000}},
    };
    for (std::size_t i = 0; i < frames.size(); ++i) {
      std::vector<FrameInfo> f;
      for (auto [n, size] : frames[i]) f.push_back(FrameInfo{id_of(n), 100000, size});
      v.push_back(plan_version(f, i ? &v.back().index : nullptr, i + 1, FrameCodec::zstd, {}));
      refs.push_back(PackRef{i + 1, v.back().pack_size, {}, "cid" + std::to_string(i + 1)});
    }
  }
};

TEST(DeltaPlanFetch, IdenticalVersionNeedsNoPack) {
  Chain c;
  auto plan = plan_fetch(&c.v[3].index, c.v[3].index, c.refs);
  EXPECT_EQ(plan.mode, FetchMode::delta);
  EXPECT_EQ(plan.reason, FullReason::none);
  EXPECT_TRUE(plan.packs.empty());
  EXPECT_EQ(plan.fetch_bytes, 0u);
  ASSERT_EQ(plan.sources.size(), 4u);
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(plan.sources[i].from_base);
    EXPECT_EQ(plan.sources[i].offset, offset);
    offset += c.v[3].index.chunks[i].frame_size;
  }
}

TEST(DeltaPlanFetch, OneChangedChunkComesFromTheNewPack) {
  Chain c;
  auto plan = plan_fetch(&c.v[0].index, c.v[1].index, c.refs);
  ASSERT_EQ(plan.mode, FetchMode::delta);
  ASSERT_EQ(plan.packs.size(), 1u);
  EXPECT_EQ(plan.packs[0].serial, 2u);
  EXPECT_EQ(plan.packs[0].cid, "cid2");
  EXPECT_EQ(plan.fetch_bytes, 7100u);
  ASSERT_EQ(plan.sources.size(), 4u);
  EXPECT_TRUE(plan.sources[0].from_base);
  EXPECT_FALSE(plan.sources[1].from_base);
  EXPECT_EQ(plan.sources[1].pack_serial, 2u);
  EXPECT_EQ(plan.sources[1].offset, 0u);
  EXPECT_TRUE(plan.sources[2].from_base);
  EXPECT_EQ(plan.sources[2].offset, 12000u);  // 5000 + 7000 in the base archive
  EXPECT_TRUE(plan.sources[3].from_base);
  EXPECT_EQ(plan.sources[3].offset, 15000u);
}

TEST(DeltaPlanFetch, SkippingVersionsNeedsTheUnionOfTheirPacksInOrder) {
  Chain c;
  // Offered out of order, with the first version's pack (not needed) among them.
  const std::vector<PackRef> offered = {c.refs[3], c.refs[0], c.refs[1], c.refs[2]};
  auto plan = plan_fetch(&c.v[0].index, c.v[3].index, offered);
  ASSERT_EQ(plan.mode, FetchMode::delta);
  ASSERT_EQ(plan.packs.size(), 3u);
  EXPECT_EQ(plan.packs[0].serial, 2u);
  EXPECT_EQ(plan.packs[1].serial, 3u);
  EXPECT_EQ(plan.packs[2].serial, 4u);
  EXPECT_EQ(plan.fetch_bytes, 7100u + 8000u + 2900u);
  EXPECT_EQ(plan.sources[2].pack_serial, 4u);
  EXPECT_EQ(plan.sources[3].pack_serial, 3u);
}

TEST(DeltaPlanFetch, FallsBackToTheFullArchiveWithItsReason) {
  Chain c;
  const std::vector<PackRef> last_two = {c.refs[2], c.refs[3]};
  auto k_exceeded = plan_fetch(&c.v[0].index, c.v[3].index, last_two);
  EXPECT_EQ(k_exceeded.mode, FetchMode::full);
  EXPECT_EQ(k_exceeded.reason, FullReason::pack_missing);
  EXPECT_TRUE(k_exceeded.packs.empty());
  EXPECT_TRUE(k_exceeded.sources.empty());

  // The newest version's own frames without its pack: the provider made none for it.
  const std::vector<PackRef> older = {c.refs[0], c.refs[1], c.refs[2]};
  auto no_pack = plan_fetch(&c.v[2].index, c.v[3].index, older);
  EXPECT_EQ(no_pack.mode, FetchMode::full);
  EXPECT_EQ(no_pack.reason, FullReason::no_pack);

  auto none = plan_fetch(nullptr, c.v[3].index, c.refs);
  EXPECT_EQ(none.mode, FetchMode::full);
  EXPECT_EQ(none.reason, FullReason::no_base);

  std::vector<PackRef> fat = c.refs;
  fat[1].size = c.v[1].index.archive_size;  // as large as the whole archive
  auto dear = plan_fetch(&c.v[0].index, c.v[1].index, fat);
  EXPECT_EQ(dear.mode, FetchMode::full);
  EXPECT_EQ(dear.reason, FullReason::not_cheaper);
  fat[1].size = c.v[1].index.archive_size - 1;
  EXPECT_EQ(plan_fetch(&c.v[0].index, c.v[1].index, fat).mode, FetchMode::delta);
  fat[1].size = std::numeric_limits<std::uint64_t>::max();
  fat[2].size = 10;
  EXPECT_EQ(plan_fetch(&c.v[0].index, c.v[3].index, fat).reason, FullReason::not_cheaper);  // sum overflows

  DeltaIndex gzip_base = c.v[0].index;
  gzip_base.codec = FrameCodec::gzip;
  EXPECT_EQ(plan_fetch(&gzip_base, c.v[1].index, c.refs).reason, FullReason::other_chain);
  DeltaIndex other_chunker = c.v[0].index;
  other_chunker.chunker.avg_size = 128 * 1024;
  EXPECT_EQ(plan_fetch(&other_chunker, c.v[1].index, c.refs).reason, FullReason::other_chain);
}

TEST(DeltaPlanFetch, ABaseEntryOfAnotherSizeIsNotTrusted) {
  Chain c;
  DeltaIndex odd = c.v[0].index;  // chunk 3's id with another frame size: not the same frame
  odd.chunks[2].frame_size += 1;
  std::vector<PackRef> refs = c.refs;
  refs[0].size = 100;  // cheap enough to fetch from
  auto plan = plan_fetch(&odd, c.v[0].index, refs);
  ASSERT_EQ(plan.mode, FetchMode::delta);
  EXPECT_FALSE(plan.sources[2].from_base);
  EXPECT_EQ(plan.sources[2].pack_serial, 1u);
  EXPECT_TRUE(plan.sources[3].from_base);
  EXPECT_EQ(plan.sources[3].offset, 15001u);  // the base's own layout
}

TEST(DeltaPlanFetch, ReasonsHaveLabels) {
  EXPECT_EQ(to_string(FullReason::none), "none");
  EXPECT_EQ(to_string(FullReason::no_base), "no_base");
  EXPECT_EQ(to_string(FullReason::other_chain), "other_chain");
  EXPECT_EQ(to_string(FullReason::pack_missing), "pack_missing");
  EXPECT_EQ(to_string(FullReason::no_pack), "no_pack");
  EXPECT_EQ(to_string(FullReason::not_cheaper), "not_cheaper");
}

}  // namespace
}  // namespace carsync::core
