// The delta format's cost on the provider: builds the shared ~200 MB dataset (bench/dataset)
// as an ordinary archive (parallel_gzip / zstd_stream) and as a chunked one (independent
// frames cut by the CDC chunker), both through io::ArchiveWriter on the node's compute pool,
// and reports wall time, CPU time (this process, every thread) and size.
//
//   carsync_bench_chunked [--data DIR] [--repeat N] [--threads N]
//
// Also prints the CDC chunker's single-thread scan rate over the plain tar.
#include "core/cdc_chunker.hpp"
#include "dataset.hpp"
#include "io/archive_writer.hpp"
#include "io/compute_pool.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace carsync;

namespace {

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct Row {
  std::string name;
  double wall = 0, cpu = 0;
  std::uint64_t size = 0, frames = 0, plain = 0;
};

// The tree as one archive, files in sorted order (deterministic), content read in 1 MiB pieces.
Row build(const fs::path& tree, const fs::path& out, const io::ArchiveOptions& opts) {
  fs::remove(out);
  std::vector<fs::path> entries;
  for (const auto& e : fs::recursive_directory_iterator(tree)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  const auto w0 = std::chrono::steady_clock::now();
  const double c0 = cpu_seconds();
  auto w = io::ArchiveWriter::create(out, opts);
  if (!w) throw std::runtime_error(w.error().message);
  std::vector<std::byte> buf(1 << 20);
  for (const auto& p : entries) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) throw std::runtime_error("stat " + p.string());
    const std::string name = "data/" + fs::relative(p, tree).string();
    if (S_ISDIR(st.st_mode)) {
      if (auto r = (*w)->add_directory(name, st); !r) throw std::runtime_error(r.error().message);
      continue;
    }
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("open " + p.string());
    auto r = (*w)->add_file(name, st, [&](const auto& sink) -> Result<void> {
      for (;;) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0) return make_error(errc::io_failure, "read");
        if (n == 0) return {};
        if (auto s = sink(std::span(buf).first(static_cast<std::size_t>(n))); !s) return s;
      }
    });
    ::close(fd);
    if (!r) throw std::runtime_error(r.error().message);
  }
  auto seal = (*w)->finish();
  if (!seal) throw std::runtime_error(seal.error().message);
  Row row;
  row.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  row.cpu = cpu_seconds() - c0;
  row.size = seal->size;
  row.frames = seal->frames.size();
  row.plain = seal->plain_size;
  return row;
}

}  // namespace

int main(int argc, char** argv) try {
  fs::path data = "/tmp/carsync-bench-data";
  int repeat = 1;
  unsigned threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--data") data = argv[i + 1];
    else if (arg == "--repeat") repeat = std::max(1, std::atoi(argv[i + 1]));
    else if (arg == "--threads") threads = static_cast<unsigned>(std::atoi(argv[i + 1]));
    else {
      std::cerr << "usage: carsync_bench_chunked [--data DIR] [--repeat N] [--threads N]\n";
      return 2;
    }
  }
  const fs::path tree = bench::ensure_dataset(data), out = data / "out-chunked";
  fs::create_directories(out);
  io::ComputePool pool(threads);
  std::printf("compute pool: %u threads, best of %d run(s)\n", pool.size(), repeat);

  struct Case {
    const char* name;
    ArchiveFormat format;
    int level;
    bool chunked;
  };
  const Case cases[] = {{"tar.gz -6", ArchiveFormat::tar_gz, 6, false},
                        {"tar.gz -6 chunked", ArchiveFormat::tar_gz, 6, true},
                        {"tar.zst -3", ArchiveFormat::tar_zst, 3, false},
                        {"tar.zst -3 chunked", ArchiveFormat::tar_zst, 3, true}};
  std::vector<Row> rows;
  for (const auto& c : cases) {
    Row best;
    for (int i = 0; i < repeat; ++i) {
      auto r = build(tree, out / "a", {.format = c.format, .level = c.level, .compute = &pool, .chunked = c.chunked});
      if (i == 0 || r.wall < best.wall) best = r;
    }
    best.name = c.name;
    rows.push_back(best);
  }

  std::printf("%-20s %8s %8s %12s %8s %9s %9s %9s\n", "run", "wall s", "cpu s", "archive", "frames", "size/x",
              "wall/x", "cpu/x");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    const auto& base = rows[i & ~std::size_t{1}];
    std::printf("%-20s %8.2f %8.2f %12llu %8llu %9.4f %9.3f %9.3f\n", r.name.c_str(), r.wall, r.cpu,
                static_cast<unsigned long long>(r.size), static_cast<unsigned long long>(r.frames),
                static_cast<double>(r.size) / static_cast<double>(base.size), r.wall / base.wall, r.cpu / base.cpu);
  }

  // The chunker alone over the plain tar (one thread, the cost every build pays in line).
  const auto plain = out / "plain.tar";
  std::system(("zstd -q -d -f -o '" + plain.string() + "' '" + (out / "a").string() + "'").c_str());
  std::vector<std::byte> bytes(fs::file_size(plain));
  {
    const int fd = ::open(plain.c_str(), O_RDONLY | O_CLOEXEC);
    std::size_t at = 0;
    while (at < bytes.size()) {
      const ssize_t n = ::read(fd, bytes.data() + at, bytes.size() - at);
      if (n <= 0) break;
      at += static_cast<std::size_t>(n);
    }
    ::close(fd);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto lengths = core::chunk_lengths(bytes);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("chunker: %.0f MB/s over the %.1f MB plain tar, %zu chunks (average %.0f KiB)\n",
              static_cast<double>(bytes.size()) / s / 1e6, static_cast<double>(bytes.size()) / 1e6, lengths.size(),
              static_cast<double>(bytes.size()) / 1024.0 / static_cast<double>(lengths.size()));
  fs::remove_all(out);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "carsync_bench_chunked: " << e.what() << "\n";
  return 1;
}
