#include "core/cdc_chunker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <set>

namespace carsync::core {
namespace {

// Deterministic pseudo-random bytes (SplitMix64 from `seed`, little-endian words): the same
// on every machine, so the pinned cuts below are a fixed vector of the algorithm.
std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> out(n);
  std::uint64_t state = seed;
  for (std::size_t i = 0; i < n; i += 8) {
    state += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (std::size_t k = 0; k < 8 && i + k < n; ++k) out[i + k] = static_cast<std::byte>(z >> (8 * k));
  }
  return out;
}

// The chunk lengths of `data` fed to one chunker in pieces of the given sizes (cycled).
std::vector<std::uint32_t> lengths_fed(std::span<const std::byte> data, const std::vector<std::size_t>& pieces,
                                       ChunkerParams p = chunker_v1) {
  CdcChunker c(p);
  std::vector<std::uint32_t> out;
  std::uint64_t current = 0;
  std::size_t pos = 0, k = 0;
  while (pos < data.size()) {
    auto piece = data.subspan(pos, std::min(pieces[k++ % pieces.size()], data.size() - pos));
    pos += piece.size();
    while (!piece.empty()) {
      const auto cut = c.find_cut(piece);
      if (!cut) {
        current += piece.size();
        break;
      }
      current += *cut;
      out.push_back(static_cast<std::uint32_t>(current));
      current = 0;
      piece = piece.subspan(*cut);
    }
    EXPECT_EQ(c.pending(), current);
  }
  if (current > 0) out.push_back(static_cast<std::uint32_t>(current));
  return out;
}

// The chunks' [offset, length) as a set, to compare two cuttings of nearly the same data.
std::vector<std::pair<std::uint64_t, std::uint32_t>> spans_of(const std::vector<std::uint32_t>& lengths) {
  std::vector<std::pair<std::uint64_t, std::uint32_t>> out;
  std::uint64_t off = 0;
  for (auto l : lengths) {
    out.emplace_back(off, l);
    off += l;
  }
  return out;
}

TEST(CdcChunker, GearTableIsPinned) {
  const auto& g = gear_table_v1();
  // SplitMix64 from 0x6361727379636463: any other table cuts differently (format 1).
  EXPECT_EQ(g[0], 0x793826912f758a3bULL);
  EXPECT_EQ(g[1], 0x2a0c0812c40efdb2ULL);
  EXPECT_EQ(g[2], 0xc8b97ae9924e1070ULL);
  EXPECT_EQ(g[255], 0xe504f725e7c4e6beULL);
  EXPECT_EQ(std::set<std::uint64_t>(g.begin(), g.end()).size(), 256u);
}

TEST(CdcChunker, CutsOfAFixedInputArePinned) {
  const auto data = random_bytes(4u << 20, 1);
  const auto lengths = chunk_lengths(data);
  const std::vector<std::uint32_t> expected = {341369, 450096, 285132, 279265, 277400, 394847, 82802, 289300,
                                                199528, 334292, 391362, 353234, 195879, 89197, 230601};
  EXPECT_EQ(lengths, expected);
  EXPECT_EQ(std::accumulate(lengths.begin(), lengths.end(), std::uint64_t{0}), data.size());
}

TEST(CdcChunker, SmallParamsCutsArePinned) {
  // Small sizes: many cuts under both masks in little data.
  const ChunkerParams p{256, 1024, 4096};
  const auto data = random_bytes(64 * 1024, 2);
  const auto lengths = chunk_lengths(data, p);
  const std::vector<std::uint32_t> expected = {
      1554, 1182, 1140, 1059, 1046, 1134, 1132, 459, 1852, 1187, 1121, 1731, 1542, 1042, 1038, 1352,
      1181, 1114, 1058, 478, 881, 854, 1029, 303, 1092, 1322, 1119, 1115, 1695, 2020, 1078, 1031,
      967, 1216, 332, 1053, 1172, 1679, 1070, 739, 1885, 2034, 287, 1113, 856, 1024, 1202, 1095,
      2367, 1330, 1746, 617, 1357, 1183, 1270, 374, 500, 127};
  EXPECT_EQ(lengths, expected);
}

// The algorithm as the format states it, one byte at a time with nothing optimised: the
// chunker's unrolled loop must cut exactly here.
std::vector<std::uint32_t> reference_lengths(std::span<const std::byte> data, ChunkerParams p) {
  const auto& gear = gear_table_v1();
  unsigned bits = 0;
  while ((1u << bits) < p.avg_size) ++bits;
  const std::uint64_t small = ~std::uint64_t{0} << (64 - (bits + 2));
  const std::uint64_t large = ~std::uint64_t{0} << (64 - (bits - 2));
  std::vector<std::uint32_t> out;
  std::size_t start = 0;
  while (start < data.size()) {
    std::uint64_t h = 0;
    std::size_t len = 0;
    for (;;) {
      if (start + len == data.size()) break;
      const std::size_t at = len++;  // offset in the chunk of the byte taken now
      if (at >= p.min_size) {
        h = (h << 1) + gear[std::to_integer<unsigned>(data[start + at])];
        if ((h & (at < p.avg_size ? small : large)) == 0) break;
      }
      if (len == p.max_size) break;
    }
    out.push_back(static_cast<std::uint32_t>(len));
    start += len;
  }
  return out;
}

TEST(CdcChunker, CutsWhereTheStraightforwardAlgorithmCuts) {
  for (const ChunkerParams p : {chunker_v1, ChunkerParams{256, 1024, 4096}, ChunkerParams{64, 128, 256},
                                ChunkerParams{100, 512, 600}}) {
    const auto data = random_bytes(8u << 20, 10);
    EXPECT_EQ(chunk_lengths(data, p), reference_lengths(data, p)) << p.avg_size;
    const std::vector<std::byte> zeros(3u << 20, std::byte{0});
    EXPECT_EQ(chunk_lengths(zeros, p), reference_lengths(zeros, p)) << p.avg_size;
  }
}

TEST(CdcChunker, EveryChunkButTheLastIsWithinMinAndMax) {
  for (const ChunkerParams p : {chunker_v1, ChunkerParams{256, 1024, 4096}, ChunkerParams{64, 128, 256}}) {
    const auto data = random_bytes(8u << 20, 3);
    const auto lengths = chunk_lengths(data, p);
    ASSERT_GE(lengths.size(), 2u);
    for (std::size_t i = 0; i + 1 < lengths.size(); ++i) {
      EXPECT_GE(lengths[i], p.min_size) << i;
      EXPECT_LE(lengths[i], p.max_size) << i;
    }
    EXPECT_LE(lengths.back(), p.max_size);
    EXPECT_EQ(std::accumulate(lengths.begin(), lengths.end(), std::uint64_t{0}), data.size());
  }
}

TEST(CdcChunker, ConstantInputIsCutAtTheMaximum) {
  // Zeros never give a zero hash top (the Gear value of 0 is added each step), or always do;
  // either way every chunk is within bounds and a forced cut falls at max.
  const std::vector<std::byte> zeros(5u << 20, std::byte{0});
  const auto lengths = chunk_lengths(zeros);
  for (std::size_t i = 0; i + 1 < lengths.size(); ++i) {
    EXPECT_GE(lengths[i], chunker_v1.min_size);
    EXPECT_LE(lengths[i], chunker_v1.max_size);
  }
  EXPECT_EQ(std::accumulate(lengths.begin(), lengths.end(), std::uint64_t{0}), zeros.size());
}

TEST(CdcChunker, SameCutsWhateverThePieceSizes) {
  const auto data = random_bytes(6u << 20, 4);
  const auto whole = chunk_lengths(data);
  EXPECT_EQ(lengths_fed(data, {data.size()}), whole);
  EXPECT_EQ(lengths_fed(data, {1, 7, 65536, 3, 1 << 20, 4095, 131071}), whole);
  EXPECT_EQ(lengths_fed(data, {65536}), whole);
  EXPECT_EQ(lengths_fed(data, {12345}), whole);
  // One byte at a time: slow, so on the first 2 MiB only.
  const auto head = std::span(data).first(2u << 20);
  EXPECT_EQ(lengths_fed(head, {1}), chunk_lengths(head));
  // Small params: cuts fall inside pieces often.
  const ChunkerParams p{256, 1024, 4096};
  const auto small = chunk_lengths(data, p);
  EXPECT_EQ(lengths_fed(data, {1, 2, 3, 1000, 5000}, p), small);
  EXPECT_EQ(lengths_fed(std::span(data).first(1u << 20), {1}, p), chunk_lengths(std::span(data).first(1u << 20), p));
}

TEST(CdcChunker, EmptyInputHasNoChunk) {
  EXPECT_TRUE(chunk_lengths({}).empty());
  CdcChunker c;
  EXPECT_FALSE(c.find_cut({}));
  EXPECT_EQ(c.pending(), 0u);
}

// Counts the chunks of `b` that are not chunks (same offset from the end of the edit, same
// length) of `a`: what a consumer holding `a` would have to fetch.
std::size_t new_chunks(const std::vector<std::uint32_t>& a, const std::vector<std::uint32_t>& b,
                       std::int64_t shift_after, std::uint64_t edit_at) {
  std::set<std::pair<std::uint64_t, std::uint32_t>> old;
  for (auto [off, len] : spans_of(a)) {
    // Chunks after the edit moved by the edit's size change.
    const std::uint64_t moved = off >= edit_at ? static_cast<std::uint64_t>(static_cast<std::int64_t>(off) + shift_after) : off;
    old.emplace(moved, len);
  }
  std::size_t fresh = 0;
  for (auto s : spans_of(b))
    if (!old.contains(s)) ++fresh;
  return fresh;
}

TEST(CdcChunker, AnEditChangesOnlyTheChunksAroundIt) {
  const auto base = random_bytes(16u << 20, 5);
  const auto before = chunk_lengths(base);
  const std::size_t at = 8u << 20 | 12345;

  {  // insert 10 bytes
    auto edited = base;
    const auto ins = random_bytes(10, 6);
    edited.insert(edited.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
    const auto after = chunk_lengths(edited);
    EXPECT_LE(new_chunks(before, after, 10, at), 3u);
    EXPECT_GE(after.size(), before.size() - 2);
  }
  {  // delete 7 bytes
    auto edited = base;
    edited.erase(edited.begin() + static_cast<std::ptrdiff_t>(at), edited.begin() + static_cast<std::ptrdiff_t>(at + 7));
    EXPECT_LE(new_chunks(before, chunk_lengths(edited), -7, at), 3u);
  }
  {  // overwrite 100 bytes
    auto edited = base;
    for (std::size_t i = 0; i < 100; ++i) edited[at + i] ^= std::byte{0x5a};
    EXPECT_LE(new_chunks(before, chunk_lengths(edited), 0, at), 3u);
  }
  {  // insert 1 MiB (a new file in the middle of a tar)
    auto edited = base;
    const auto ins = random_bytes(1u << 20, 7);
    edited.insert(edited.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
    // The new bytes' own chunks (about 4) plus those around the two seams.
    EXPECT_LE(new_chunks(before, chunk_lengths(edited), 1 << 20, at), 10u);
  }
  {  // an edit at the very start only touches the first chunks
    auto edited = base;
    edited[10] ^= std::byte{1};
    EXPECT_LE(new_chunks(before, chunk_lengths(edited), 0, 11), 2u);
  }
}

TEST(CdcChunker, AverageSizeIsNearTheTargetOnRandomData) {
  const auto data = random_bytes(64u << 20, 8);
  const auto lengths = chunk_lengths(data);
  const double avg = static_cast<double>(data.size()) / static_cast<double>(lengths.size());
  // Normalised chunking with a 64 KiB minimum lands a little above 256 KiB.
  EXPECT_GT(avg, 200.0 * 1024);
  EXPECT_LT(avg, 360.0 * 1024);
  std::printf("[ info ] %zu chunks, average %.1f KiB\n", lengths.size(), avg / 1024);
}

TEST(CdcChunker, ValidParams) {
  struct Case {
    ChunkerParams p;
    bool valid;
  };
  const Case cases[] = {
      {chunker_v1, true},
      {{64, 128, 256}, true},
      {{64 * 1024, 256 * 1024, 16u << 20}, true},
      {{63, 128, 256}, false},                // min too small
      {{128, 128, 256}, false},               // min == avg
      {{64, 256, 256}, false},                // avg == max
      {{64, 200, 256}, false},                // avg not a power of two
      {{64, 1024, (16u << 20) + 1}, false},   // max too large
      {{0, 0, 0}, false},
      {{1024, 512, 4096}, false},             // min > avg
  };
  for (const auto& c : cases)
    EXPECT_EQ(valid_chunker_params(c.p), c.valid) << c.p.min_size << "/" << c.p.avg_size << "/" << c.p.max_size;
}

// Not a timed test (perf targets live in bench/): prints the single-thread scan rate, the
// figure the provider's CPU budget depends on.
TEST(CdcChunker, ThroughputInfo) {
  const auto data = random_bytes(256u << 20, 9);
  const auto t0 = std::chrono::steady_clock::now();
  const auto lengths = chunk_lengths(data);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(lengths.empty());
  std::printf("[ info ] chunker: %.0f MB/s on one thread (%zu chunks)\n",
              static_cast<double>(data.size()) / s / 1e6, lengths.size());
}

}  // namespace
}  // namespace carsync::core
