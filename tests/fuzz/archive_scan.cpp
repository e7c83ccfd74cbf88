// The consumer's archive scan (io/archive_scan) over a downloaded snapshot: tar in gzip or
// zstd. The first input byte picks how the rest becomes the archive file: 0 compresses it
// with gzip and 1 with zstd here (so mutations reach the tar headers, not only the
// compressed stream), anything else uses it as it is (compressed bytes from the corpus).
//
// Everything lives in the process's scratch directory: the mounts' host roots (with a few
// existing files the scan compares against), the archive and the staging directory. After
// every scan the volumes must be exactly as before and, when the scan failed, the staging
// directory empty (its documented contract); a successful scan's blobs are removed again.
#include "io/archive_scan.hpp"

#include "fuzz_support.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <string_view>

using namespace carsync;
namespace fs = std::filesystem;

namespace {

std::string gzip(std::string_view in) {
  z_stream z{};
  if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::string out(deflateBound(&z, in.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string zstd(std::string_view in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  const auto n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 1);
  if (ZSTD_isError(n)) std::abort();
  out.resize(n);
  return out;
}

void write_file(const fs::path& p, std::string_view bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Every path below `root` with its size (directories: -1), to prove the scan wrote nothing.
std::set<std::pair<std::string, std::intmax_t>> tree(const fs::path& root) {
  std::set<std::pair<std::string, std::intmax_t>> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const bool dir = e.is_directory() && !e.is_symlink();
    out.emplace(e.path().string(), dir || e.is_symlink() ? -1 : static_cast<std::intmax_t>(e.file_size()));
  }
  return out;
}

struct World {
  fs::path root = fuzz::scratch_dir();
  fs::path volumes = root / "volumes";
  fs::path staging = root / "staging";
  fs::path archive = root / "snapshot.tar";
  std::vector<VolumeMount> mounts = fuzz::sample_mounts(volumes.string());
  core::MountPolicy policy;
  io::ScanContext ctx;
  std::set<std::pair<std::string, std::intmax_t>> before;

  World() {
    spdlog::set_level(spdlog::level::off);  // ARCHIVE_WARN members would log every run
    const fs::path data = mounts[0].host_root, cfg = mounts[1].host_root, sys = mounts[2].host_root;
    fs::create_directories(data / "sub");
    fs::create_directories(cfg);
    fs::create_directories(sys);
    fs::create_directories(staging);
    write_file(data / "existing.txt", "old");
    write_file(data / "sub" / "leaf", "leaf");
    fs::create_symlink("/etc", data / "link");
    write_file(cfg / "app.json", "{}");
    ctx.mounts = mounts;
    ctx.policy = &policy;
    ctx.manifest_paths = {"/app/data", "/app/cfg/app.json", "/r1en_system/x"};
    // Small bounds keep every run fast; the limit paths are exercised as well.
    ctx.limits.max_member_bytes = 256 * 1024;
    ctx.limits.max_total_bytes = 1024 * 1024;
    ctx.limits.max_members = 512;
    before = tree(volumes);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0]) {
    case 0: write_file(w.archive, gzip(rest)); break;
    case 1: write_file(w.archive, zstd(rest)); break;
    default: write_file(w.archive, rest); break;
  }

  auto plan = io::scan_and_stage(w.archive, w.ctx, w.staging);
  const bool staged_left = !fs::is_empty(w.staging);
  if (!plan && staged_left) {
    std::fprintf(stderr, "failed scan left blobs in staging: %s\n", plan.error().message.c_str());
    std::abort();
  }
  if (tree(w.volumes) != w.before) {
    std::fprintf(stderr, "the scan changed a volume\n");
    std::abort();
  }
  if (plan) {
    for (const auto& e : plan->entries)
      if (!e.blob.empty() && (e.blob.find('/') != std::string::npos || !fs::exists(w.staging / e.blob))) {
        std::fprintf(stderr, "planned blob %s is not in staging\n", e.blob.c_str());
        std::abort();
      }
    for (const auto& e : fs::directory_iterator(w.staging)) fs::remove(e.path());
  }
  return 0;
}
