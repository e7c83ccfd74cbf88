// Times the embedded store's hand-off of a freshly built archive (the provider's upload
// step) and the consumer's fetch of it (issue 10 item 2): before, LocalCas::put (read, hash,
// copy, fsync the copy) and LocalCas::fetch_to (hard link, then read the blob to verify);
// after, LocalCas::adopt (fsync, rename) and LocalCas::link_to (hard link; the scan verifies
// while it streams).
//
//   carsync_bench_handoff [--dir DIR] [--mib N] [--rounds R]
//
// Each round writes the archive afresh (dirty in the page cache, as the archive writer
// leaves it), so both hand-offs flush the same bytes. The fetch is timed warm (the blob in
// the page cache) and cold (posix_fadvise DONTNEED on the blob first, after a sync). Each
// figure is the median of R rounds, in seconds, one "name seconds" line each.
#include "backend/cid.hpp"
#include "backend/local_cas.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace carsync;

namespace {

// Writes `mib` MiB of pseudo-random bytes and returns their SHA-256 (hashed while written,
// as the archive writer does).
io::Sha256Digest write_archive(const fs::path& file, std::size_t mib, std::uint64_t seed) {
  std::vector<std::uint64_t> block(1 << 17);  // 1 MiB
  io::Sha256 h;
  FILE* f = std::fopen(file.c_str(), "wb");
  if (!f) std::abort();
  for (std::size_t i = 0; i < mib; ++i) {
    for (auto& w : block) {
      seed += 0x9e3779b97f4a7c15ull;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      w = z ^ (z >> 27);
    }
    auto bytes = std::as_bytes(std::span(block));
    h.update(bytes);
    if (std::fwrite(block.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  }
  std::fclose(f);
  return h.finish();
}

double seconds(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void drop_cache(const fs::path& file) {
  ::sync();
  int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

template <class R>
void check(const R& r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", what, r.error().message.c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = fs::temp_directory_path();
  std::size_t mib = 200;
  int rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--mib")) mib = std::strtoul(argv[i + 1], nullptr, 10);
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
  }
  const fs::path root = dir / ("carsync-handoff-bench." + std::to_string(::getpid()));
  fs::create_directories(root / "scratch");
  fs::create_directories(root / "downloads");
  backend::LocalCas cas(root / "cas");

  std::vector<double> put_s, adopt_s, fetch_warm, link_warm, fetch_cold, link_cold;
  for (int r = 0; r < rounds; ++r) {
    for (bool owned : {false, true}) {
      const fs::path archive = root / "scratch" / "archive.tar.gz";
      const auto digest = write_archive(archive, mib, 1000 * r + owned);
      const std::string cid = backend::cid_from_digest(digest);
      if (owned) {
        adopt_s.push_back(seconds([&] { check(cas.adopt(archive, digest), "adopt"); }));
      } else {
        put_s.push_back(seconds([&] {
          check(cas.put(archive), "put");
          fs::remove(archive);  // the provider's remove_archive step
        }));
      }
      const fs::path out = root / "downloads" / cid;
      for (bool cold : {false, true}) {
        if (cold) drop_cache(root / "cas" / "blobs" / cid);
        double t = seconds([&] {
          if (owned) check(cas.link_to(cid, out), "link_to");
          else check(cas.fetch_to(cid, out), "fetch_to");
        });
        (owned ? (cold ? link_cold : link_warm) : (cold ? fetch_cold : fetch_warm)).push_back(t);
        fs::remove(out);
      }
      check(cas.remove(cid), "remove");
    }
  }
  std::printf("archive_mib %zu\nrounds %d\n", mib, rounds);
  std::printf("upload_put_copy %.3f\nupload_adopt_rename %.3f\n", median(put_s), median(adopt_s));
  std::printf("fetch_verified_warm %.3f\nfetch_link_warm %.3f\n", median(fetch_warm), median(link_warm));
  std::printf("fetch_verified_cold %.3f\nfetch_link_cold %.3f\n", median(fetch_cold), median(link_cold));
  fs::remove_all(root);
  return 0;
}
