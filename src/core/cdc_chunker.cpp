#include "core/cdc_chunker.hpp"

#include <algorithm>
#include <bit>

namespace carsync::core {
namespace {

// SplitMix64 (Steele, Lea, Flood 2014): a fixed, well-mixed sequence from one seed.
constexpr std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  state += 0x9e3779b97f4a7c15ULL;
  std::uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The seed is part of delta format 1 and must never change: the table decides every cut,
// and a provider cutting with a different table would make every chunk of every archive
// look new to consumers holding a base cut with this one (no delta, only full fetches).
// 0x6361727379636463 is "carsycdc" in ASCII.
constexpr std::array<std::uint64_t, 256> make_gear_v1() noexcept {
  std::array<std::uint64_t, 256> t{};
  std::uint64_t state = 0x6361727379636463ULL;
  for (auto& v : t) v = splitmix64(state);
  return t;
}

constexpr std::array<std::uint64_t, 256> gear_v1 = make_gear_v1();

// Hashes bytes[from, to) into `h`; returns the index just past the first byte whose hash has
// no bit of `mask` set, or `to`. The hot loop of the provider's build (it sees every byte of
// the plain tar on one thread): unrolled by four (below).
inline std::size_t scan(const unsigned char* bytes, std::size_t from, std::size_t to, std::uint64_t& hash,
                        std::uint64_t mask) noexcept {
  const auto& g = gear_v1;
  std::uint64_t h = hash;
  std::size_t j = from;
  for (; j + 4 <= to; j += 4) {
    // h_{k+1} = 2 h_k + g_k, written so that each of the four hashes is h shifted plus a sum
    // of table values: the chain from one h to the next is one shift and one add per four
    // bytes, and the intermediate hashes are computed beside it.
    const std::uint64_t t1 = g[bytes[j]];
    const std::uint64_t t2 = (t1 << 1) + g[bytes[j + 1]];
    const std::uint64_t t3 = (t2 << 1) + g[bytes[j + 2]];
    const std::uint64_t t4 = (t3 << 1) + g[bytes[j + 3]];
    const std::uint64_t h1 = (h << 1) + t1, h2 = (h << 2) + t2, h3 = (h << 3) + t3, h4 = (h << 4) + t4;
    if (((h1 & mask) == 0) | ((h2 & mask) == 0) | ((h3 & mask) == 0) | ((h4 & mask) == 0)) [[unlikely]] {
      const std::uint64_t hs[4] = {h1, h2, h3, h4};
      for (std::size_t k = 0; k < 4; ++k)
        if ((hs[k] & mask) == 0) {
          hash = hs[k];
          return j + k + 1;
        }
    }
    h = h4;
  }
  for (; j < to; ++j) {
    h = (h << 1) + g[bytes[j]];
    if ((h & mask) == 0) {
      hash = h;
      return j + 1;
    }
  }
  hash = h;
  return to;
}

// The top `bits` bits of a 64-bit word. A shift-left Gear hash's low bits depend only on the
// last few bytes, its top bit on the last 64: the cut tests the top bits.
constexpr std::uint64_t top_bits(unsigned bits) noexcept {
  return bits == 0 ? 0 : bits >= 64 ? ~std::uint64_t{0} : ~std::uint64_t{0} << (64 - bits);
}

}  // namespace

const std::array<std::uint64_t, 256>& gear_table_v1() noexcept { return gear_v1; }

bool valid_chunker_params(const ChunkerParams& p) noexcept {
  return p.min_size >= 64 && p.min_size < p.avg_size && p.avg_size < p.max_size &&
         p.max_size <= 16u * 1024 * 1024 && std::has_single_bit(p.avg_size);
}

CdcChunker::CdcChunker(ChunkerParams p) noexcept : p_(p) {
  // FastCDC's normalisation level 2: two bits more than log2(avg) before the average (a cut
  // 4x less likely), two fewer after (4x more likely), which keeps sizes near the average.
  const auto bits = static_cast<unsigned>(std::bit_width(p.avg_size > 0 ? p.avg_size : 1u) - 1);
  mask_small_ = top_bits(bits + 2);
  mask_large_ = top_bits(bits > 2 ? bits - 2 : 1);
}

std::optional<std::size_t> CdcChunker::find_cut(std::span<const std::byte> data) noexcept {
  const auto* const bytes = reinterpret_cast<const unsigned char*>(data.data());
  const std::size_t n = data.size();
  std::size_t i = 0;

  // The first min_size bytes of a chunk are never cut in, so they are not hashed either (the
  // hash starts from 0 at each chunk's min_size: a cut depends only on the 64 bytes before it,
  // and on the chunk's start only through min_size).
  if (length_ < p_.min_size) {
    const std::size_t skip = static_cast<std::size_t>(std::min<std::uint64_t>(p_.min_size - length_, n));
    i = skip;
    length_ += skip;
    if (length_ < p_.min_size) return std::nullopt;
  }

  std::uint64_t h = hash_;

  // Bytes at offsets [min, avg) of the chunk: the harder mask.
  if (length_ < p_.avg_size) {
    const std::size_t end = i + static_cast<std::size_t>(std::min<std::uint64_t>(p_.avg_size - length_, n - i));
    const std::size_t stop = scan(bytes, i, end, h, mask_small_);
    if ((h & mask_small_) == 0 && stop > i) {
      hash_ = 0;
      length_ = 0;
      return stop;
    }
    length_ += end - i;
    i = end;
    if (i == n) {
      hash_ = h;
      return std::nullopt;
    }
  }

  // Bytes at offsets [avg, max): the easier mask, and a forced cut at max.
  const std::size_t end = i + static_cast<std::size_t>(std::min<std::uint64_t>(p_.max_size - length_, n - i));
  const std::size_t stop = scan(bytes, i, end, h, mask_large_);
  if (stop > i && ((h & mask_large_) == 0 || length_ + (stop - i) >= p_.max_size)) {
    hash_ = 0;
    length_ = 0;
    return stop;
  }
  length_ += end - i;
  hash_ = h;
  return std::nullopt;
}

std::vector<std::uint32_t> chunk_lengths(std::span<const std::byte> data, ChunkerParams p) {
  std::vector<std::uint32_t> out;
  CdcChunker c(p);
  std::uint64_t start = 0;  // of the current chunk within `data`
  std::size_t pos = 0;
  while (pos < data.size()) {
    const auto cut = c.find_cut(data.subspan(pos));
    if (!cut) break;
    pos += *cut;
    out.push_back(static_cast<std::uint32_t>(pos - start));
    start = pos;
  }
  if (c.pending() > 0) out.push_back(static_cast<std::uint32_t>(c.pending()));
  return out;
}

}  // namespace carsync::core
