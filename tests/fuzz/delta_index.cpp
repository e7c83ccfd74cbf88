// A delta index as a consumer fetches it (core/delta_index.hpp): parse_index must refuse or
// accept any bytes without crashing. Properties of what it accepts:
//  - it re-encodes to exactly the input (one binary form per index: nothing ignored);
//  - planned against itself as the base, every frame comes from the base at its place in
//    the base archive, no pack is fetched;
//  - without a base the plan is full (no_base);
//  - the provider's next version from the same frames keeps every location and parses;
//    a first version of them (no previous index) parses and stores each chunk once.
#include "core/delta_index.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

using namespace carsync;

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "delta_index property broken: %s %s\n", what, detail.c_str());
  std::abort();
}

void must_parse(const core::DeltaIndex& x, const char* what) {
  auto again = core::parse_index(core::encode_index(x));
  if (!again) fail(what, again.error().message);
  if (*again != x) fail(what, "parsed to another index");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto parsed = core::parse_index(bytes);
  if (!parsed) {
    const auto& code = parsed.error().code;
    if (code != make_error_code(core::delta_errc::malformed_index) &&
        code != make_error_code(core::delta_errc::unsupported_format))
      fail("refused with a code of its own", parsed.error().message);
    return 0;
  }
  const core::DeltaIndex& x = *parsed;
  const auto encoded = core::encode_index(x);
  if (encoded.size() != size || !std::equal(encoded.begin(), encoded.end(), bytes.begin()))
    fail("re-encoding differs from the input");

  // Against itself: all from the base, nothing to fetch.
  std::set<std::uint64_t> serials;
  for (const auto& c : x.chunks) serials.insert(c.pack_serial);
  std::vector<core::PackRef> packs;
  for (auto s : serials) packs.push_back(core::PackRef{s, 1, {}, "p"});
  auto plan = core::plan_fetch(&x, x, packs);
  if (plan.mode != core::FetchMode::delta || !plan.packs.empty() || plan.fetch_bytes != 0 ||
      plan.sources.size() != x.chunks.size())
    fail("an index planned against itself is not an empty delta", std::string(to_string(plan.reason)));
  std::map<core::ChunkId, std::uint64_t> first_at;  // a repeated chunk comes from its first place
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < x.chunks.size(); ++i) {
    const auto& s = plan.sources[i];
    const auto at = first_at.emplace(x.chunks[i].id, offset).first->second;
    if (!s.from_base || s.offset != at) fail("a frame's base source is wrong", std::to_string(i));
    offset += x.chunks[i].frame_size;
  }
  if (core::plan_fetch(nullptr, x, packs).reason != core::FullReason::no_base) fail("no base is not no_base");

  // The provider's side over the same frames.
  std::vector<core::FrameInfo> frames;
  frames.reserve(x.chunks.size());
  for (const auto& c : x.chunks) frames.push_back({c.id, c.plain_size, c.frame_size});
  if (x.serial < UINT64_MAX) {
    auto next = core::plan_version(frames, &x, x.serial + 1, x.codec, x.archive_sha256);
    next.index.chunker = x.chunker;
    if (!next.pack.empty() || next.pack_size != 0) fail("unchanged frames went into a new pack");
    for (std::size_t i = 0; i < x.chunks.size(); ++i)
      if (next.index.chunks[i] != x.chunks[i]) fail("an unchanged frame moved", std::to_string(i));
    must_parse(next.index, "the next version's index does not parse:");
  }
  auto first = core::plan_version(frames, nullptr, 1, x.codec, x.archive_sha256);
  first.index.chunker = x.chunker;
  if (first.index.archive_size != x.archive_size || first.index.plain_size != x.plain_size)
    fail("a first version's sizes differ");
  must_parse(first.index, "a first version's index does not parse:");
  return 0;
}
