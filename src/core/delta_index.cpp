#include "core/delta_index.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <optional>
#include <string_view>
#include <unordered_map>

namespace carsync::core {
namespace {

constexpr std::string_view magic{"CSDELTA\0", 8};

// ---- little-endian fields ------------------------------------------------------------------

void put32(std::byte* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
void put64(std::byte* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
std::uint32_t get32(const std::byte* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint32_t>(p[i]);
  return v;
}
std::uint64_t get64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}
bool all_zero(const std::byte* p, std::size_t n) noexcept {
  return std::all_of(p, p + n, [](std::byte b) { return b == std::byte{0}; });
}

// Header field offsets (delta_index.hpp).
constexpr std::size_t h_format = 8, h_codec = 12, h_min = 16, h_avg = 20, h_max = 24, h_reserved = 28,
                      h_serial = 32, h_count = 40, h_archive = 48, h_plain = 56, h_sha = 64, h_zero = 96;
// Entry field offsets.
constexpr std::size_t e_plain = 32, e_frame = 36, e_pack = 40, e_offset = 48, e_reserved = 56;
static_assert(h_zero + 32 == delta_index_header_bytes);
static_assert(e_reserved + 8 == delta_index_entry_bytes);

// The chunker parameters' rule (cdc_chunker.hpp's valid_chunker_params), kept here so that
// the index does not depend on the chunker's implementation; test_delta_index holds it to
// the header's words over a table of boundary cases.
bool usable_params(const ChunkerParams& p) noexcept {
  return p.min_size >= 64 && p.min_size < p.avg_size && p.avg_size < p.max_size &&
         p.max_size <= 16u * 1024 * 1024 && (p.avg_size & (p.avg_size - 1)) == 0;
}

bool add_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& sum) noexcept {
  return __builtin_add_overflow(a, b, &sum);
}

// The first 8 bytes of an id in hex: enough to tell entries apart in a message.
std::string short_id(const ChunkId& id) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < 8; ++i) {
    auto b = std::to_integer<unsigned>(id[i]);
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

Error malformed(std::string text) {
  return Error{make_error_code(delta_errc::malformed_index), "malformed delta index: " + std::move(text)};
}
Error entry_fault(std::uint64_t i, std::string text) {
  return malformed("entry " + std::to_string(i) + ": " + std::move(text));
}

struct IdHash {
  std::size_t operator()(const ChunkId& id) const noexcept {
    std::size_t h = 0;
    std::memcpy(&h, id.data(), sizeof h);  // a SHA-256 is uniform already
    return h;
  }
};

// The checks that span entries: a repeated id with a differing entry, and ranges of one pack
// that overlap. Run after every entry passed its own checks.
std::optional<Error> check_across(const std::vector<ChunkEntry>& c) {
  const auto n = static_cast<std::uint32_t>(c.size());
  std::vector<std::uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);

  // Same id, same entry: the first position (in archive order) whose entry differs from the
  // id's first occurrence.
  std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    if (c[a].id != c[b].id) return c[a].id < c[b].id;
    return a < b;
  });
  std::optional<std::pair<std::uint32_t, std::uint32_t>> dup;  // (position, first occurrence)
  for (std::uint32_t k = 1, first = order.empty() ? 0 : order[0]; k < n; ++k) {
    const std::uint32_t cur = order[k];
    if (c[cur].id != c[first].id) {
      first = cur;  // a new id: sorted by position, its first element is its first occurrence
      continue;
    }
    if (c[cur] != c[first] && (!dup || cur < dup->first)) dup = {cur, first};
  }
  if (dup)
    return entry_fault(dup->first, "chunk " + short_id(c[dup->first].id) + " differs from entry " +
                                       std::to_string(dup->second) + " with the same id");

  // Distinct ranges of one pack must not overlap. After the check above one id has one
  // range; two different ids at the same place are an overlap too.
  std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    if (c[a].pack_serial != c[b].pack_serial) return c[a].pack_serial < c[b].pack_serial;
    if (c[a].pack_offset != c[b].pack_offset) return c[a].pack_offset < c[b].pack_offset;
    return a < b;
  });
  std::optional<std::pair<std::uint32_t, std::uint32_t>> overlap;  // (later position, other)
  const ChunkEntry* reach = nullptr;  // of the current pack's ranges so far, the one ending last
  std::uint32_t reach_pos = 0;
  for (std::uint32_t k = 0; k < n; ++k) {
    const std::uint32_t cur = order[k];
    const ChunkEntry& e = c[cur];
    const std::uint64_t end = e.pack_offset + e.frame_size;  // checked not to overflow per entry
    if (!reach || reach->pack_serial != e.pack_serial) {
      reach = &e;
      reach_pos = cur;
      continue;
    }
    if (reach->id == e.id) continue;  // the same frame again (its entries are identical)
    if (e.pack_offset < reach->pack_offset + reach->frame_size) {
      const std::uint32_t later = std::max(cur, reach_pos), other = std::min(cur, reach_pos);
      if (!overlap || later < overlap->first) overlap = {later, other};
    }
    if (end > reach->pack_offset + reach->frame_size) {
      reach = &e;
      reach_pos = cur;
    }
  }
  if (overlap) {
    const ChunkEntry& e = c[overlap->first];
    return entry_fault(overlap->first, "bytes " + std::to_string(e.pack_offset) + ".." +
                                           std::to_string(e.pack_offset + e.frame_size) + " of pack " +
                                           std::to_string(e.pack_serial) + " overlap entry " +
                                           std::to_string(overlap->second) + "'s");
  }
  return std::nullopt;
}

}  // namespace

std::uint64_t max_frame_size(FrameCodec codec, std::uint64_t plain) noexcept {
  // Callers pass a chunk's plain size (at most 16 MiB), so none of this can overflow.
  switch (codec) {
    case FrameCodec::gzip:
      // zlib's deflateBound for windowBits 15 and memLevel 8 (the compressor's settings; a
      // lower memLevel would cut smaller blocks and need more): deflate emits each block in
      // the cheapest of its three forms, so a stored block bounds it: 5 bytes per block of
      // at most 16383 bytes, 5*plain/16383, which plain>>12 + plain>>14 (5*plain/16384)
      // meets to within a byte per 50 MiB (a chunk is at most 16 MiB). The 64: the gzip
      // member's 18 bytes of header and trailer, the last block's rounding up (5) and the
      // floors of the shifts (3), with room to spare.
      return plain + (plain >> 12) + (plain >> 14) + (plain >> 25) + 64;
    case FrameCodec::zstd:
      // ZSTD_COMPRESSBOUND plus a frame header and checksum, with room to spare.
      return plain + (plain >> 8) + (plain < (128u << 10) ? ((128u << 10) - plain) >> 11 : 0) + 64;
  }
  return 0;
}

std::vector<std::byte> encode_index(const DeltaIndex& x) {
  std::vector<std::byte> out(delta_index_header_bytes + x.chunks.size() * delta_index_entry_bytes);
  std::byte* h = out.data();
  std::memcpy(h, magic.data(), magic.size());
  put32(h + h_format, x.format);
  put32(h + h_codec, static_cast<std::uint32_t>(x.codec));
  put32(h + h_min, x.chunker.min_size);
  put32(h + h_avg, x.chunker.avg_size);
  put32(h + h_max, x.chunker.max_size);
  put64(h + h_serial, x.serial);
  put64(h + h_count, x.chunks.size());
  put64(h + h_archive, x.archive_size);
  put64(h + h_plain, x.plain_size);
  std::memcpy(h + h_sha, x.archive_sha256.data(), 32);
  std::byte* e = h + delta_index_header_bytes;
  for (const auto& c : x.chunks) {
    std::memcpy(e, c.id.data(), 32);
    put32(e + e_plain, c.plain_size);
    put32(e + e_frame, c.frame_size);
    put64(e + e_pack, c.pack_serial);
    put64(e + e_offset, c.pack_offset);
    e += delta_index_entry_bytes;
  }
  return out;
}

// Rules beyond the header comment's, enforced here because plan_version produces nothing
// else and reassembly relies on them:
//  - every plain size is >= 1; every one but the last's is >= the chunker's minimum;
//  - the entries stored in the index's own pack (pack serial == serial) tile that pack from
//    offset 0, in the order of their first occurrence, with no gap (a repeat of an earlier
//    chunk points back into what is already tiled);
//  - serial >= 1; a count of 0 only for an empty archive (the sums say so).
// The message names the first fault; the per-entry rules are checked in archive order
// first, then the rules across entries (same id, overlapping ranges).
Result<DeltaIndex> parse_index(std::span<const std::byte> bytes) {
  const std::size_t size = bytes.size();
  const std::byte* h = bytes.data();
  if (size < magic.size() || std::memcmp(h, magic.data(), magic.size()) != 0)
    return malformed("no CSDELTA magic");
  if (size < h_codec)
    return malformed(std::to_string(size) + " bytes, shorter than the " +
                     std::to_string(delta_index_header_bytes) + "-byte header");
  DeltaIndex x;
  // A later format may lay out its header differently: its version is read before the rest.
  x.format = get32(h + h_format);
  if (x.format != delta_format_version)
    return Error{make_error_code(delta_errc::unsupported_format),
                 "delta index format " + std::to_string(x.format) + " (this build reads format " +
                     std::to_string(delta_format_version) + ")"};
  if (size < delta_index_header_bytes)
    return malformed(std::to_string(size) + " bytes, shorter than the " +
                     std::to_string(delta_index_header_bytes) + "-byte header");
  const std::uint32_t codec = get32(h + h_codec);
  if (codec != static_cast<std::uint32_t>(FrameCodec::gzip) && codec != static_cast<std::uint32_t>(FrameCodec::zstd))
    return malformed("unknown codec " + std::to_string(codec));
  x.codec = static_cast<FrameCodec>(codec);
  x.chunker = {get32(h + h_min), get32(h + h_avg), get32(h + h_max)};
  if (!usable_params(x.chunker))
    return malformed("chunker parameters " + std::to_string(x.chunker.min_size) + "/" +
                     std::to_string(x.chunker.avg_size) + "/" + std::to_string(x.chunker.max_size) +
                     " are not usable");
  if (get32(h + h_reserved) != 0) return malformed("reserved header field is not 0");
  if (!all_zero(h + h_zero, 32)) return malformed("reserved header bytes are not 0");
  x.serial = get64(h + h_serial);
  if (x.serial == 0) return malformed("serial 0");
  const std::uint64_t count = get64(h + h_count);
  x.archive_size = get64(h + h_archive);
  x.plain_size = get64(h + h_plain);
  std::memcpy(x.archive_sha256.data(), h + h_sha, 32);

  // The count against the limit and the bytes present, before anything is allocated.
  if (count > max_delta_chunks)
    return malformed("chunk count " + std::to_string(count) + " above the limit of " +
                     std::to_string(max_delta_chunks));
  const std::uint64_t body = size - delta_index_header_bytes;
  const std::uint64_t want = count * delta_index_entry_bytes;  // <= 2^28: no overflow
  if (body < want)
    return malformed("chunk count " + std::to_string(count) + " needs " + std::to_string(want) +
                     " bytes of entries, only " + std::to_string(body) + " present (truncated)");
  if (body > want)
    return malformed(std::to_string(body - want) + " trailing bytes after " + std::to_string(count) + " entries");

  x.chunks.resize(count);
  std::uint64_t archive_sum = 0, plain_sum = 0, own_next = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::byte* e = h + delta_index_header_bytes + i * delta_index_entry_bytes;
    ChunkEntry& c = x.chunks[i];
    std::memcpy(c.id.data(), e, 32);
    c.plain_size = get32(e + e_plain);
    c.frame_size = get32(e + e_frame);
    c.pack_serial = get64(e + e_pack);
    c.pack_offset = get64(e + e_offset);
    if (get64(e + e_reserved) != 0) return entry_fault(i, "reserved field is not 0");
    if (c.plain_size == 0) return entry_fault(i, "plain size 0");
    if (c.plain_size > x.chunker.max_size)
      return entry_fault(i, "plain size " + std::to_string(c.plain_size) + " above the chunker's maximum " +
                                std::to_string(x.chunker.max_size));
    if (c.plain_size < x.chunker.min_size && i + 1 != count)
      return entry_fault(i, "plain size " + std::to_string(c.plain_size) + " below the chunker's minimum " +
                                std::to_string(x.chunker.min_size) + " and not the last chunk");
    if (c.frame_size == 0) return entry_fault(i, "frame of 0 bytes");
    if (c.frame_size > max_frame_size(x.codec, c.plain_size))
      return entry_fault(i, "frame of " + std::to_string(c.frame_size) + " bytes above the bound " +
                                std::to_string(max_frame_size(x.codec, c.plain_size)) + " for " +
                                std::to_string(c.plain_size) + " plain bytes");
    if (c.pack_serial == 0) return entry_fault(i, "pack serial 0");
    if (c.pack_serial > x.serial)
      return entry_fault(i, "pack serial " + std::to_string(c.pack_serial) + " above the index's serial " +
                                std::to_string(x.serial));
    std::uint64_t end = 0;
    if (add_overflows(c.pack_offset, c.frame_size, end))
      return entry_fault(i, "pack offset " + std::to_string(c.pack_offset) + " + frame size overflows");
    if (c.pack_serial == x.serial) {
      if (c.pack_offset > own_next)
        return entry_fault(i, "offset " + std::to_string(c.pack_offset) + " in the index's own pack leaves a gap or "
                                  "breaks first-occurrence order (expected " + std::to_string(own_next) + ")");
      if (c.pack_offset == own_next) own_next = end;  // below: a repeat, checked across entries
    }
    if (add_overflows(archive_sum, c.frame_size, archive_sum) || add_overflows(plain_sum, c.plain_size, plain_sum))
      return entry_fault(i, "sizes overflow");  // unreachable with u32 sizes and the count cap
  }
  if (archive_sum != x.archive_size)
    return malformed("frames add up to " + std::to_string(archive_sum) + " bytes, header says archive size " +
                     std::to_string(x.archive_size));
  if (plain_sum != x.plain_size)
    return malformed("chunks add up to " + std::to_string(plain_sum) + " plain bytes, header says " +
                     std::to_string(x.plain_size));
  if (auto fault = check_across(x.chunks)) return *fault;
  return x;
}

NewVersion plan_version(std::span<const FrameInfo> frames, const DeltaIndex* previous, std::uint64_t serial,
                        FrameCodec codec, const Digest32& archive_sha256) {
  NewVersion v;
  DeltaIndex& x = v.index;
  x.codec = codec;
  x.serial = serial;
  x.archive_sha256 = archive_sha256;
  x.chunks.reserve(frames.size());

  // Where the previous version's index keeps each chunk. Only an earlier version of the same
  // codec is a usable previous: a later serial (a chain started over) would point at packs
  // above this index's serial.
  std::unordered_map<ChunkId, const ChunkEntry*, IdHash> known;
  if (previous && previous->codec == codec && previous->serial < serial) {
    known.reserve(previous->chunks.size());
    for (const auto& c : previous->chunks) known.emplace(c.id, &c);
  }
  std::unordered_map<ChunkId, std::size_t, IdHash> here;  // id -> its first entry in x.chunks
  here.reserve(frames.size());

  std::uint64_t archive_offset = 0;
  for (const auto& f : frames) {
    ChunkEntry e{f.id, f.plain_size, f.frame_size, serial, 0};
    if (auto h = here.find(f.id); h != here.end()) {
      e = x.chunks[h->second];
    } else {
      auto k = known.find(f.id);
      if (k != known.end() && k->second->frame_size == f.frame_size && k->second->plain_size == f.plain_size) {
        e.pack_serial = k->second->pack_serial;
        e.pack_offset = k->second->pack_offset;
      } else {
        e.pack_offset = v.pack_size;
        v.pack.push_back(PackPiece{archive_offset, f.frame_size});
        v.pack_size += f.frame_size;
      }
      here.emplace(f.id, x.chunks.size());
    }
    x.chunks.push_back(e);
    archive_offset += f.frame_size;
    x.plain_size += f.plain_size;
  }
  x.archive_size = archive_offset;
  return v;
}

std::string_view to_string(FullReason r) noexcept {
  switch (r) {
    case FullReason::none: return "none";
    case FullReason::no_base: return "no_base";
    case FullReason::other_chain: return "other_chain";
    case FullReason::pack_missing: return "pack_missing";
    case FullReason::no_pack: return "no_pack";
    case FullReason::not_cheaper: return "not_cheaper";
  }
  return "unknown";
}

FetchPlan plan_fetch(const DeltaIndex* base, const DeltaIndex& next, std::span<const PackRef> packs) {
  FetchPlan full;  // mode full
  if (!base) {
    full.reason = FullReason::no_base;
    return full;
  }
  if (base->codec != next.codec || base->chunker != next.chunker || base->format != next.format) {
    full.reason = FullReason::other_chain;
    return full;
  }

  // Where each chunk of the base sits in the base archive (its first occurrence).
  std::unordered_map<ChunkId, std::pair<std::uint64_t, std::uint32_t>, IdHash> in_base;  // offset, size
  in_base.reserve(base->chunks.size());
  std::uint64_t offset = 0;
  for (const auto& c : base->chunks) {
    in_base.emplace(c.id, std::pair{offset, c.frame_size});
    offset += c.frame_size;
  }

  FetchPlan plan;
  plan.mode = FetchMode::delta;
  plan.reason = FullReason::none;
  plan.sources.reserve(next.chunks.size());
  std::vector<const PackRef*> needed;
  for (const auto& c : next.chunks) {
    auto b = in_base.find(c.id);
    if (b != in_base.end() && b->second.second == c.frame_size) {
      plan.sources.push_back(FrameSource{true, b->second.first, 0});
      continue;
    }
    auto ref = std::find_if(packs.begin(), packs.end(), [&](const PackRef& p) { return p.serial == c.pack_serial; });
    if (ref == packs.end()) {
      full.reason = c.pack_serial == next.serial ? FullReason::no_pack : FullReason::pack_missing;
      return full;
    }
    if (std::find(needed.begin(), needed.end(), &*ref) == needed.end()) needed.push_back(&*ref);
    plan.sources.push_back(FrameSource{false, c.pack_offset, c.pack_serial});
  }
  std::sort(needed.begin(), needed.end(), [](const PackRef* a, const PackRef* b) { return a->serial < b->serial; });
  for (const PackRef* p : needed) {
    if (add_overflows(plan.fetch_bytes, p->size, plan.fetch_bytes)) {
      full.reason = FullReason::not_cheaper;
      return full;
    }
    plan.packs.push_back(*p);
  }
  if (plan.fetch_bytes >= next.archive_size && !(plan.fetch_bytes == 0 && next.archive_size == 0)) {
    full.reason = FullReason::not_cheaper;
    return full;
  }
  return plan;
}

}  // namespace carsync::core
