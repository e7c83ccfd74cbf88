// The delta transfer's files (io/delta_files.hpp): packs and indexes written by the provider,
// the consumer's reassembly (byte-exact against the full archive; every hostile pack, frame,
// base or digest refused with its code and no output left behind) and its base.
//
// Frames are made here with zlib and libzstd directly (one gzip member or one zstd frame per
// chunk), so these tests stand on their own.
#include "io/delta_files.hpp"

#include "core/delta_index.hpp"
#include "io/sha256.hpp"
#include "support/temp_dir.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <tuple>

namespace carsync::io {
namespace {

namespace fs = std::filesystem;
using carsync::test::TempDir;
using core::delta_errc;
using core::FrameCodec;
using ::testing::HasSubstr;

using Bytes = std::vector<std::byte>;

Bytes gzip_member(const Bytes& plain, int level = 6) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
  Bytes out(deflateBound(&z, plain.size()));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(plain.data()));
  z.avail_in = static_cast<uInt>(plain.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// Without the content size in the header by default: reassembly then learns a frame's size
// only by decompressing it, the path these tests are about (a declared size is checked first).
Bytes zstd_frame(const Bytes& plain, int level = 3, bool declare_size = false) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, declare_size ? 1 : 0);
  Bytes out(ZSTD_compressBound(plain.size()));
  const std::size_t n = ZSTD_compress2(c, out.data(), out.size(), plain.data(), plain.size());
  EXPECT_FALSE(ZSTD_isError(n));
  ZSTD_freeCCtx(c);
  out.resize(n);
  return out;
}

Bytes frame_of(FrameCodec codec, const Bytes& plain) {
  return codec == FrameCodec::gzip ? gzip_member(plain) : zstd_frame(plain);
}

Sha256Digest sha_of(std::span<const std::byte> b) {
  Sha256 h;
  h.update(b);
  return h.finish();
}

// A chunk's plain bytes: half text-like (compressible), half random, distinct per label.
Bytes content(int label, std::size_t size = 80000) {
  std::mt19937 rng(static_cast<unsigned>(label) * 7919u + 1);
  Bytes b(size);
  for (std::size_t i = 0; i < size; ++i)
    b[i] = i < size / 2 ? static_cast<std::byte>("carsync delta "[(i + label) % 14]) : static_cast<std::byte>(rng());
  return b;
}

void write_bytes(const fs::path& p, std::span<const std::byte> b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
Bytes read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), {});
  Bytes b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// One published version: its archive (a file), its index and its pack (a file).
struct Version {
  Bytes archive;
  fs::path archive_file;
  core::DeltaIndex index;
  core::PackRef ref;
  fs::path pack_file;
};

// A provider publishing versions made of labelled chunks, as provider_run will.
class Chain {
 public:
  Chain(const fs::path& dir, FrameCodec codec) : dir_(dir), codec_(codec) {}

  const Version& publish(const std::vector<int>& labels) {
    std::vector<core::FrameInfo> frames;
    Bytes archive;
    for (int label : labels) {
      const Bytes plain = content(label);
      const Bytes frame = frame_of(codec_, plain);
      frames.push_back({sha_of(frame), static_cast<std::uint32_t>(plain.size()), static_cast<std::uint32_t>(frame.size())});
      archive.insert(archive.end(), frame.begin(), frame.end());
    }
    const std::uint64_t serial = versions_.size() + 1;
    auto plan = core::plan_version(frames, versions_.empty() ? nullptr : &versions_.back().index, serial, codec_,
                                   sha_of(archive));
    Version v;
    v.archive = archive;
    v.archive_file = dir_ / ("archive." + std::to_string(serial));
    write_bytes(v.archive_file, archive);
    v.index = plan.index;
    v.pack_file = dir_ / ("pack." + std::to_string(serial));
    auto seal = write_pack(v.archive_file, plan.pack, v.pack_file);
    EXPECT_TRUE(seal) << seal.error().message;
    EXPECT_EQ(seal->size, plan.pack_size);
    v.ref = core::PackRef{serial, seal->size, seal->sha256, "cid" + std::to_string(serial)};
    versions_.push_back(std::move(v));
    return versions_.back();
  }
  std::vector<core::PackRef> refs() const {
    std::vector<core::PackRef> r;
    for (const auto& v : versions_) r.push_back(v.ref);
    return r;
  }
  std::map<std::uint64_t, fs::path> pack_files() const {
    std::map<std::uint64_t, fs::path> m;
    for (const auto& v : versions_) m[v.ref.serial] = v.pack_file;
    return m;
  }
  const Version& operator[](std::size_t serial) const { return versions_.at(serial - 1); }

 private:
  fs::path dir_;
  FrameCodec codec_;
  std::vector<Version> versions_;
};

class DeltaFiles : public ::testing::TestWithParam<FrameCodec> {
 protected:
  TempDir tmp;
  Chain chain{tmp.path(), GetParam()};
  fs::path out = tmp / "out.archive";

  // The consumer's reassembly of version `next` from version `base`'s archive.
  Result<FileSeal> assemble(std::size_t base, std::size_t next, core::FetchPlan* plan_out = nullptr,
                            const std::atomic<bool>* cancel = nullptr) {
    const auto& n = chain[next];
    const auto refs = chain.refs();
    plan_ = core::plan_fetch(base ? &chain[base].index : nullptr, n.index, refs);
    EXPECT_EQ(plan_.mode, core::FetchMode::delta) << to_string(plan_.reason);
    if (plan_out) *plan_out = plan_;
    AssembleInput in;
    in.base_archive = base ? &chain[base].archive_file : nullptr;
    in.next = &n.index;
    in.plan = &plan_;
    in.packs = chain.pack_files();
    in.expected = n.index.archive_sha256;
    in.cancel = cancel;
    return reassemble(in, out);
  }
  void expect_exact(const Result<FileSeal>& r, std::size_t next) {
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->size, chain[next].archive.size());
    EXPECT_EQ(r->sha256, chain[next].index.archive_sha256);
    EXPECT_EQ(read_bytes(out), chain[next].archive);
    EXPECT_EQ(fs::status(out).permissions(), fs::perms(0600));
  }
  void expect_refused(const Result<FileSeal>& r, delta_errc code, const std::string& says) {
    ASSERT_FALSE(r) << "reassembled";
    EXPECT_EQ(r.error().code, make_error_code(code)) << r.error().message;
    EXPECT_THAT(r.error().message, HasSubstr(says));
    EXPECT_FALSE(fs::exists(out)) << "a refused reassembly left its output";
  }

  core::FetchPlan plan_;
};

TEST_P(DeltaFiles, PackHoldsTheNewFramesInOrder) {
  chain.publish({1, 2, 3, 4});
  const auto& v2 = chain.publish({1, 5, 3, 5, 6});
  // The pack holds frames 5 and 6 once each, in order: the bytes of the archive at their
  // places.
  std::uint64_t f0 = v2.index.chunks[0].frame_size;
  std::uint64_t f5 = v2.index.chunks[1].frame_size, f3 = v2.index.chunks[2].frame_size;
  std::uint64_t f6 = v2.index.chunks[4].frame_size;
  Bytes expect(v2.archive.begin() + f0, v2.archive.begin() + f0 + f5);
  const auto at6 = f0 + f5 + f3 + f5;
  expect.insert(expect.end(), v2.archive.begin() + at6, v2.archive.begin() + at6 + f6);
  EXPECT_EQ(read_bytes(v2.pack_file), expect);
  EXPECT_EQ(v2.ref.size, f5 + f6);
  EXPECT_EQ(v2.ref.sha256, sha_of(expect));
  EXPECT_EQ(fs::status(v2.pack_file).permissions(), fs::perms(0600));
}

TEST_P(DeltaFiles, ReassemblesFromBaseAndPackByteExact) {
  chain.publish({1, 2, 3, 4});
  chain.publish({1, 5, 3, 4});
  core::FetchPlan plan;
  auto r = assemble(1, 2, &plan);
  expect_exact(r, 2);
  EXPECT_EQ(plan.packs.size(), 1u);
  EXPECT_EQ(std::count_if(plan.sources.begin(), plan.sources.end(), [](auto& s) { return s.from_base; }), 3);
}

TEST_P(DeltaFiles, ReassemblesFromTheBaseAlone) {
  chain.publish({1, 2, 3, 4});
  chain.publish({4, 3, 2, 1, 2});  // reordered and repeated: nothing new
  core::FetchPlan plan;
  auto r = assemble(1, 2, &plan);
  expect_exact(r, 2);
  EXPECT_TRUE(plan.packs.empty());
  EXPECT_EQ(chain[2].ref.size, 0u);
}

TEST_P(DeltaFiles, ReassemblesFromPacksAloneWithoutABaseFile) {
  chain.publish({1, 2});
  chain.publish({7, 8, 7, 9});  // nothing of the base; the repeat makes the pack cheaper
  core::FetchPlan plan;
  auto r = assemble(1, 2, &plan);  // the base file is passed but not needed
  expect_exact(r, 2);
  EXPECT_TRUE(std::none_of(plan.sources.begin(), plan.sources.end(), [](auto& s) { return s.from_base; }));

  // Nor is it opened: a plan with no base frame works with no base at all.
  fs::remove(out);
  AssembleInput in;
  in.next = &chain[2].index;
  in.plan = &plan;
  in.packs = chain.pack_files();
  in.expected = chain[2].index.archive_sha256;
  expect_exact(reassemble(in, out), 2);
}

TEST_P(DeltaFiles, SkippingVersionsTakesFramesFromSeveralPacks) {
  chain.publish({1, 2, 3, 4, 5});
  chain.publish({1, 12, 3, 4, 5});
  chain.publish({1, 12, 3, 14, 5});
  chain.publish({1, 12, 13, 14, 5, 15});
  core::FetchPlan plan;
  auto r = assemble(1, 4, &plan);
  expect_exact(r, 4);
  ASSERT_EQ(plan.packs.size(), 3u);
  EXPECT_EQ(plan.fetch_bytes, chain[2].ref.size + chain[3].ref.size + chain[4].ref.size);
}

// ---- hostile packs, frames, bases and digests ----------------------------------------------

TEST_P(DeltaFiles, APackWithAFlippedByteIsRefused) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  Bytes pack = read_bytes(chain[2].pack_file);
  pack[pack.size() / 2] ^= std::byte{0x10};
  write_bytes(chain[2].pack_file, pack);
  expect_refused(assemble(1, 2), delta_errc::pack_mismatch, "pack 2 does not hash to the SHA-256 the record names");
}

TEST_P(DeltaFiles, AFrameThatDoesNotHashToItsIdIsRefused) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  // The pack as the record names it (size and SHA-256 match), holding other bytes than the
  // index's id: a provider's fault, or a colliding pack.
  Bytes pack = read_bytes(chain[2].pack_file);
  pack[pack.size() / 2] ^= std::byte{0x10};
  write_bytes(chain[2].pack_file, pack);
  auto& ref = const_cast<core::PackRef&>(chain[2].ref);
  ref.sha256 = sha_of(pack);
  expect_refused(assemble(1, 2), delta_errc::frame_mismatch, "frame 1 (pack 2, offset 0) does not hash to its chunk id");
}

TEST_P(DeltaFiles, ATruncatedOrLongerPackIsRefused) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  const Bytes pack = read_bytes(chain[2].pack_file);
  write_bytes(chain[2].pack_file, std::span(pack).first(pack.size() - 1));
  expect_refused(assemble(1, 2), delta_errc::pack_mismatch, "bytes, the record says");
  Bytes longer = pack;
  longer.push_back(std::byte{0});
  write_bytes(chain[2].pack_file, longer);
  expect_refused(assemble(1, 2), delta_errc::pack_mismatch, "pack 2 has " + std::to_string(longer.size()));
}

TEST_P(DeltaFiles, AMissingPackIsRefused) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  auto plan = core::plan_fetch(&chain[1].index, chain[2].index, chain.refs());
  AssembleInput in;
  in.base_archive = &chain[1].archive_file;
  in.next = &chain[2].index;
  in.plan = &plan;
  in.expected = chain[2].index.archive_sha256;
  expect_refused(reassemble(in, out), delta_errc::pack_mismatch, "pack 2 was not fetched");
  in.packs[2] = tmp / "nowhere";
  expect_refused(reassemble(in, out), delta_errc::pack_mismatch, "pack 2: open");
}

TEST_P(DeltaFiles, AFrameBeyondItsPackIsRefusedBeforeAnyWrite) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  auto& entry = const_cast<core::ChunkEntry&>(chain[2].index.chunks[1]);
  entry.pack_offset = 1;  // the frame's last byte is past the pack's end
  expect_refused(assemble(1, 2), delta_errc::pack_mismatch,
                 "frame 1 (bytes 1+" + std::to_string(entry.frame_size) + ") lies beyond pack 2's");
}

TEST_P(DeltaFiles, AMissingBaseIsUnusable) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  fs::remove(chain[1].archive_file);
  expect_refused(assemble(1, 2), delta_errc::base_unusable, "base archive: open");
  auto plan = core::plan_fetch(&chain[1].index, chain[2].index, chain.refs());
  AssembleInput in;
  in.next = &chain[2].index;
  in.plan = &plan;
  in.packs = chain.pack_files();
  expect_refused(reassemble(in, out), delta_errc::base_unusable, "no base archive");
}

TEST_P(DeltaFiles, AFullPlanIsNotReassembled) {
  chain.publish({1, 2, 3});
  core::FetchPlan full;  // mode full
  AssembleInput in;
  in.next = &chain[1].index;
  in.plan = &full;
  auto r = reassemble(in, out);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::invalid_request));
  EXPECT_FALSE(fs::exists(out));
}

// The index is the provider's: a frame whose id is right may still lie about its plain size.
TEST_P(DeltaFiles, AFrameThatDecompressesToAnotherSizeIsRefused) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  auto& entry = const_cast<core::ChunkEntry&>(chain[2].index.chunks[1]);
  const auto plain = entry.plain_size;
  entry.plain_size = plain - 1;
  expect_refused(assemble(1, 2), delta_errc::frame_size_mismatch,
                 "frame 1 (pack 2) decompresses past " + std::to_string(plain - 1) + " bytes");
  entry.plain_size = plain + 1;
  expect_refused(assemble(1, 2), delta_errc::frame_size_mismatch,
                 "frame 1 (pack 2) decompresses to " + std::to_string(plain) + " bytes, its entry says " +
                     std::to_string(plain + 1));
}

// A small frame that would expand to 64 MiB: decompression stops one byte past the entry's
// plain size, so the refusal costs nothing.
TEST_P(DeltaFiles, ADecompressionBombStopsAtItsDeclaredSize) {
  const Bytes zeros(64u << 20);
  const Bytes bomb = frame_of(GetParam(), zeros);
  ASSERT_LT(bomb.size(), 1u << 20);
  const fs::path pack = tmp / "bomb.pack";
  write_bytes(pack, bomb);
  core::DeltaIndex next;
  next.codec = GetParam();
  next.serial = 1;
  next.chunks = {{sha_of(bomb), 1000, static_cast<std::uint32_t>(bomb.size()), 1, 0}};
  next.archive_size = bomb.size();
  core::FetchPlan plan;
  plan.mode = core::FetchMode::delta;
  plan.reason = core::FullReason::none;
  plan.packs = {{1, bomb.size(), sha_of(bomb), "bomb"}};
  plan.sources = {{false, 0, 1}};
  AssembleInput in;
  in.next = &next;
  in.plan = &plan;
  in.packs[1] = pack;
  in.expected = sha_of(bomb);
  expect_refused(reassemble(in, out), delta_errc::frame_size_mismatch, "frame 0 (pack 1) decompresses past 1000 bytes");
}

TEST_P(DeltaFiles, AFrameOfTwoMembersOrGarbageIsRefused) {
  const Bytes a = content(1, 70000), b = content(2, 70000);
  Bytes two = frame_of(GetParam(), a);
  const Bytes second = frame_of(GetParam(), b);
  two.insert(two.end(), second.begin(), second.end());
  Bytes garbage = content(3, 5000);
  for (const auto& [frame, plain, says] :
       {std::tuple{two, 140000u, std::string("holds bytes after its")}, std::tuple{garbage, 5000u, std::string("is not a valid")}}) {
    const fs::path pack = tmp / "odd.pack";
    write_bytes(pack, frame);
    core::DeltaIndex next;
    next.codec = GetParam();
    next.serial = 1;
    next.chunks = {{sha_of(frame), plain, static_cast<std::uint32_t>(frame.size()), 1, 0}};
    next.archive_size = frame.size();
    core::FetchPlan plan;
    plan.mode = core::FetchMode::delta;
    plan.reason = core::FullReason::none;
    plan.packs = {{1, frame.size(), sha_of(frame), "odd"}};
    plan.sources = {{false, 0, 1}};
    AssembleInput in;
    in.next = &next;
    in.plan = &plan;
    in.packs[1] = pack;
    in.expected = sha_of(frame);
    expect_refused(reassemble(in, out), delta_errc::frame_size_mismatch, says);
  }
}

// Found by fuzz_delta_frames: a zstd frame whose header declares 16 bytes of content but
// whose one (raw, empty) block holds none. The streaming decoder yields 0 bytes without
// complaint; a one-shot decoder refuses the frame. Reassembly holds the frame to its header.
Result<FileSeal> reassemble_one_frame(const Bytes& frame, FrameCodec codec, std::uint32_t plain, const fs::path& dir) {
  write_bytes(dir / "pack", frame);
  core::DeltaIndex next;
  next.codec = codec;
  next.serial = 1;
  next.chunks = {{sha_of(frame), plain, static_cast<std::uint32_t>(frame.size()), 1, 0}};
  next.archive_size = frame.size();
  core::FetchPlan plan;
  plan.mode = core::FetchMode::delta;
  plan.reason = core::FullReason::none;
  plan.packs = {{1, frame.size(), sha_of(frame), "p"}};
  plan.sources = {{false, 0, 1}};
  AssembleInput in;
  in.next = &next;
  in.plan = &plan;
  in.packs[1] = dir / "pack";
  in.expected = sha_of(frame);
  return reassemble(in, dir / "out");
}

TEST(DeltaFrames, AZstdFrameWhoseHeaderDeclaresAnotherSizeIsRefused) {
  TempDir tmp;
  const Bytes text = content(4, 70000);
  const Bytes declared = zstd_frame(text, 3, true);
  auto r = reassemble_one_frame(declared, FrameCodec::zstd, 69999, tmp.path());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(delta_errc::frame_size_mismatch));
  EXPECT_THAT(r.error().message, HasSubstr("frame 0 (pack 1) declares 70000 bytes of content"));
  EXPECT_FALSE(fs::exists(tmp / "out"));
  fs::remove(tmp / "pack");
  ASSERT_TRUE(reassemble_one_frame(declared, FrameCodec::zstd, 70000, tmp.path()));
}

TEST(DeltaFrames, AZstdFrameWhoseHeaderDisagreesWithItsBlocksIsRefused) {
  TempDir tmp;
  const Bytes frame = {std::byte{0x28}, std::byte{0xb5}, std::byte{0x2f}, std::byte{0xfd},  // magic
                       std::byte{0x24}, std::byte{0x10},  // single segment, checksum; content size 16
                       std::byte{0x01}, std::byte{0x00}, std::byte{0x00},  // last block, raw, 0 bytes
                       std::byte{0x99}, std::byte{0xe9}, std::byte{0xd8}, std::byte{0x51}};  // XXH64("") low
  auto r = reassemble_one_frame(frame, FrameCodec::zstd, 0, tmp.path());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(delta_errc::frame_size_mismatch));
  EXPECT_THAT(r.error().message, HasSubstr("frame 0 (pack 1) declares 16 bytes of content"));
  EXPECT_FALSE(fs::exists(tmp / "out"));
}

TEST_P(DeltaFiles, ACorruptBaseIsCaughtByTheWholeArchiveHash) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  Bytes base = chain[1].archive;
  base[10] ^= std::byte{1};
  write_bytes(chain[1].archive_file, base);
  expect_refused(assemble(1, 2), delta_errc::archive_mismatch, "reassembled archive hashes to");
  write_bytes(chain[1].archive_file, std::span(base).first(base.size() - 100));
  expect_refused(assemble(1, 2), delta_errc::base_unusable, "frame 2 lies beyond the base archive's");
}

TEST_P(DeltaFiles, AWrongExpectedDigestIsRefused) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  auto& sha = const_cast<Sha256Digest&>(chain[2].index.archive_sha256);
  sha[0] ^= std::byte{1};
  expect_refused(assemble(1, 2), delta_errc::archive_mismatch, "the record says " + to_hex(sha));
}

TEST_P(DeltaFiles, CancelStopsBetweenFramesAndLeavesNothing) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  const std::atomic<bool> cancel{true};
  auto r = assemble(1, 2, nullptr, &cancel);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::cancelled));
  EXPECT_FALSE(fs::exists(out));
}

TEST_P(DeltaFiles, AnExistingOutputIsNeitherOverwrittenNorRemoved) {
  chain.publish({1, 2, 3});
  chain.publish({1, 5, 3});
  write_bytes(out, Bytes(3, std::byte{'x'}));
  auto r = assemble(1, 2);
  ASSERT_FALSE(r);
  EXPECT_EQ(read_bytes(out), Bytes(3, std::byte{'x'}));
}

INSTANTIATE_TEST_SUITE_P(Codecs, DeltaFiles, ::testing::Values(FrameCodec::gzip, FrameCodec::zstd),
                         [](const auto& info) { return info.param == FrameCodec::gzip ? "gzip" : "zstd"; });

// ---- single files --------------------------------------------------------------------------

TEST(DeltaFileWrites, WritePackRefusesAPieceBeyondTheArchiveAndLeavesNoPack) {
  TempDir tmp;
  write_bytes(tmp / "a", Bytes(100, std::byte{1}));
  const std::vector<core::PackPiece> pieces = {{0, 50}, {60, 41}};
  auto r = write_pack(tmp / "a", pieces, tmp / "p");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("pack piece 1"));
  EXPECT_FALSE(fs::exists(tmp / "p"));
}

TEST(DeltaFileWrites, SealedFileIsExclusivePrivateAndHashed) {
  TempDir tmp;
  const Bytes b = content(1, 1000);
  for (bool durable : {false, true}) {
    const auto f = tmp / (durable ? "d" : "n");
    auto r = write_file_sealed(f, b, durable);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->size, 1000u);
    EXPECT_EQ(r->sha256, sha_of(b));
    EXPECT_EQ(read_bytes(f), b);
    EXPECT_EQ(fs::status(f).permissions(), fs::perms(0600));
    auto again = write_file_sealed(f, Bytes(5), durable);
    EXPECT_FALSE(again);
    EXPECT_EQ(read_bytes(f), b) << "an existing file was touched";
  }
}

core::DeltaIndex small_index(std::uint64_t archive_size) {
  core::DeltaIndex x;
  x.serial = 1;
  x.codec = FrameCodec::zstd;
  const auto size = static_cast<std::uint32_t>(archive_size);
  x.chunks = {{{}, size, size, 1, 0}};  // a stored frame's size, near enough
  x.archive_size = archive_size;
  x.plain_size = archive_size;
  return x;
}

TEST(DeltaFileWrites, ReadIndexChecksSizeHashAndCap) {
  TempDir tmp;
  const auto bytes = core::encode_index(small_index(50));
  write_bytes(tmp / "i", bytes);
  auto plain = read_index(tmp / "i", std::nullopt);
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_EQ(*plain, small_index(50));

  auto good = read_index(tmp / "i", ExpectedBytes{bytes.size(), sha_of(bytes)});
  EXPECT_TRUE(good);
  auto wrong_size = read_index(tmp / "i", ExpectedBytes{bytes.size() + 1, sha_of(bytes)});
  ASSERT_FALSE(wrong_size);
  EXPECT_EQ(wrong_size.error().code, make_error_code(delta_errc::index_mismatch));
  Sha256Digest other = sha_of(bytes);
  other[3] ^= std::byte{1};
  auto wrong_sha = read_index(tmp / "i", ExpectedBytes{bytes.size(), other});
  ASSERT_FALSE(wrong_sha);
  EXPECT_EQ(wrong_sha.error().code, make_error_code(delta_errc::index_mismatch));
  EXPECT_THAT(wrong_sha.error().message, HasSubstr("does not hash"));

  // A sparse file one byte over the largest valid index: refused before it is read.
  const std::uint64_t cap = core::delta_index_header_bytes + core::max_delta_chunks * core::delta_index_entry_bytes;
  write_bytes(tmp / "big", bytes);
  ASSERT_EQ(::truncate((tmp / "big").c_str(), static_cast<off_t>(cap + 1)), 0);
  auto big = read_index(tmp / "big", std::nullopt);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, make_error_code(delta_errc::malformed_index));
  EXPECT_THAT(big.error().message, HasSubstr("above the largest valid"));

  auto bad = read_index(tmp / "missing", std::nullopt);
  EXPECT_FALSE(bad);
}

// ---- the consumer's base -----------------------------------------------------------------

TEST(DeltaBaseFiles, InstallThenLoadRoundTrips) {
  TempDir tmp;
  const Bytes archive = content(1, 5000);
  write_bytes(tmp / "applied", archive);
  DeltaBase base(tmp / "state" / "base");
  fs::create_directories(tmp / "state");
  std::string why;
  EXPECT_FALSE(base.load(&why));
  EXPECT_THAT(why, HasSubstr("base index"));

  const auto index = small_index(archive.size());
  ASSERT_TRUE(base.install(tmp / "applied", core::encode_index(index)));
  auto loaded = base.load(&why);
  ASSERT_TRUE(loaded) << why;
  EXPECT_EQ(loaded->index, index);
  EXPECT_EQ(read_bytes(loaded->archive), archive);
  EXPECT_TRUE(fs::exists(tmp / "applied")) << "the applied archive is left where it is";
  // Nothing else in the directory (no temporaries).
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(base.dir())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"base.archive", "base.index"}));

  // Replaced by a newer one.
  const Bytes newer = content(2, 7000);
  write_bytes(tmp / "applied2", newer);
  ASSERT_TRUE(base.install(tmp / "applied2", core::encode_index(small_index(newer.size()))));
  loaded = base.load(&why);
  ASSERT_TRUE(loaded) << why;
  EXPECT_EQ(loaded->index.archive_size, 7000u);
  EXPECT_EQ(read_bytes(loaded->archive), newer);

  base.clear();
  EXPECT_FALSE(base.load());
  EXPECT_FALSE(fs::exists(base.dir() / "base.archive"));
}

TEST(DeltaBaseFiles, InstallCreatesItsDirectoryAndTakesItsOwnArchiveAgain) {
  TempDir tmp;
  const Bytes archive = content(1, 5000);
  write_bytes(tmp / "applied", archive);
  DeltaBase base(tmp / "a" / "b" / "base");
  const auto index = core::encode_index(small_index(archive.size()));
  ASSERT_TRUE(base.install(tmp / "applied", index));
  EXPECT_EQ(fs::status(base.dir()).permissions(), fs::perms(0700));
  // The base archive itself as the applied one (an identical version applied again).
  auto again = base.install(base.dir() / "base.archive", index);
  ASSERT_TRUE(again) << again.error().message;
  std::string why;
  auto loaded = base.load(&why);
  ASSERT_TRUE(loaded) << why;
  EXPECT_EQ(read_bytes(loaded->archive), archive);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(base.dir())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"base.archive", "base.index"}));
}

TEST(DeltaBaseFiles, AnInconsistentBaseIsUnusable) {
  TempDir tmp;
  const Bytes archive = content(1, 5000);
  write_bytes(tmp / "applied", archive);
  DeltaBase base(tmp / "base");
  ASSERT_TRUE(base.install(tmp / "applied", core::encode_index(small_index(archive.size()))));

  ASSERT_EQ(::truncate((base.dir() / "base.archive").c_str(), 4000), 0);
  std::string why;
  EXPECT_FALSE(base.load(&why));
  EXPECT_THAT(why, HasSubstr("base archive has 4000 bytes, its index says 5000"));

  // The base shares the applied archive's inode: a new applied archive is a new file.
  fs::remove(tmp / "applied");
  write_bytes(tmp / "applied", archive);
  ASSERT_TRUE(base.install(tmp / "applied", core::encode_index(small_index(archive.size()))));
  Bytes index = read_bytes(base.dir() / "base.index");
  index[0] = std::byte{'X'};
  write_bytes(base.dir() / "base.index", index);
  EXPECT_FALSE(base.load(&why));
  EXPECT_THAT(why, HasSubstr("magic"));

  fs::remove(base.dir() / "base.archive");
  ASSERT_TRUE(base.install(tmp / "applied", core::encode_index(small_index(archive.size()))));
  fs::remove(base.dir() / "base.archive");
  EXPECT_FALSE(base.load(&why));
  EXPECT_THAT(why, HasSubstr("base archive"));
}

TEST(DeltaBaseFiles, InstallRefusesAnIndexOfAnotherArchive) {
  TempDir tmp;
  write_bytes(tmp / "applied", Bytes(5000));
  DeltaBase base(tmp / "base");
  auto r = base.install(tmp / "applied", core::encode_index(small_index(4999)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(delta_errc::index_mismatch));
  EXPECT_FALSE(base.load());
  auto bad = base.install(tmp / "applied", Bytes(10));
  EXPECT_FALSE(bad);
}

}  // namespace
}  // namespace carsync::io
