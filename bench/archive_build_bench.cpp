// Times carsync's offline archive build against GNU tar on a fixed ~200 MB dataset.
//
//   carsync_bench_archive [--data DIR] [--repeat N] [--cold] [--carsync-only] [--json FILE]
//
// --cold evicts the dataset from the page cache before every run (bench::drop_cached) instead
// of warming it; --carsync-only skips the tar rows (scripts/bench times its own yardsticks);
// --json also writes the rows as a JSON array to FILE (name, engine, format, seconds, bytes).
//
// The dataset (generated into DIR/tree on first use, deterministic) mixes the shapes an app
// volume holds: 2,000 small text files, 20 logs of 1-8 MiB and 5 incompressible 10 MiB blobs.
// Every run reads from the page cache (one warm-up pass first), so the figures compare
// CPU cost: the file engine plus single-threaded compression against tar piped into a
// compressor process. Each figure is the best of N runs.
#include "dataset.hpp"
#include "io/capture.hpp"
#include "io/compute_pool.hpp"
#include "io/file_engine.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace carsync;

namespace {

// Reads every file once so all timed runs start from a warm page cache.
std::pair<std::uint64_t, std::uint64_t> warm_up(const fs::path& tree) {
  auto reader = io::make_portable_reader({});
  std::uint64_t files = 0, bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(tree)) {
    if (!e.is_regular_file()) continue;
    io::unique_fd fd(::open(e.path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw std::runtime_error("cannot open " + e.path().string());
    auto ok = reader->stream(fd.get(), e.file_size(), [](auto) -> Result<void> { return {}; });
    if (!ok) throw std::runtime_error(ok.error().message);
    ++files;
    bytes += e.file_size();
  }
  return {files, bytes};
}

struct Run {
  std::string name;
  double seconds = 0;
  std::uint64_t size = 0;
  std::optional<std::size_t> baseline;  // index of the tar run this one is compared with
};

bool g_cold = false;
fs::path g_tree;

// Best of `repeat` timings of `once`, which returns the archive size.
template <class F>
Run timed(std::string name, int repeat, F once) {
  Run run;
  run.name = std::move(name);
  for (int i = 0; i < repeat; ++i) {
    if (g_cold) bench::drop_cached(g_tree);
    const auto start = std::chrono::steady_clock::now();
    run.size = once();
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    if (i == 0 || took.count() < run.seconds) run.seconds = took.count();
  }
  return run;
}

std::uint64_t carsync_build(const fs::path& data, const fs::path& out, ArchiveFormat format,
                            int level, io::EngineKind engine) {
  fs::remove(out);
  auto reader = io::make_reader(engine, {});
  if (reader->kind() != engine) throw std::runtime_error("io_uring is not available here");
  const core::ResolvedPath source{"/data", (data / "tree").string(), "/data", ""};
  static io::ComputePool compute(0);  // every usable CPU, as the node's pool
  auto stats = io::build_offline_archive({&source, 1}, out, {format, level, nullptr, &compute}, *reader);
  if (!stats) throw std::runtime_error(stats.error().message);
  return stats->archive_size;
}

std::uint64_t shell_build(const std::string& command, const fs::path& out) {
  fs::remove(out);
  if (std::system(command.c_str()) != 0 || !fs::exists(out) || fs::file_size(out) == 0)
    throw std::runtime_error("command failed: " + command);
  return fs::file_size(out);
}

[[noreturn]] void usage() {
  std::cerr << "usage: carsync_bench_archive [--data DIR] [--repeat N] [--cold] [--carsync-only] [--json FILE]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) try {
  fs::path data = "/tmp/carsync-bench-data";
  int repeat = 1;
  bool carsync_only = false;
  fs::path json_out;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--cold") g_cold = true;
    else if (arg == "--carsync-only") carsync_only = true;
    else if (i + 1 >= argc) usage();
    else if (arg == "--data") data = argv[++i];
    else if (arg == "--repeat") repeat = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--json") json_out = argv[++i];
    else usage();
  }

  const fs::path tree = bench::ensure_dataset(data), out = data / "out";
  g_tree = tree;
  fs::create_directories(out);
  const auto [files, bytes] = warm_up(tree);
  const double mb = static_cast<double>(bytes) / 1e6;
  std::printf("dataset: %llu files, %.1f MB (%s page cache), best of %d run(s)\n\n",
              static_cast<unsigned long long>(files), mb, g_cold ? "cold" : "warm", repeat);

  const std::string q = "'" + data.string() + "'";
  const std::string tar_gz = (out / "tar.tar.gz").string(), tar_zst = (out / "tar.tar.zst").string();
  const std::string ours_gz = (out / "carsync.tar.gz").string(), ours_zst = (out / "carsync.tar.zst").string();

  std::vector<Run> runs;
  if (!carsync_only) {
    runs.push_back(timed("tar -czf (gzip -6)", repeat, [&] {
      return shell_build("tar -C " + q + " -I 'gzip -6' -cf '" + tar_gz + "' tree", tar_gz);
    }));
    runs.push_back(timed("tar -cf - | zstd -3", repeat, [&] {
      return shell_build("tar -C " + q + " -cf - tree | zstd -3 -q > '" + tar_zst + "'", tar_zst);
    }));
  }
  std::string json = "[";
  for (const auto engine : {io::EngineKind::io_uring, io::EngineKind::portable}) {
    const std::string e(io::to_string(engine));
    runs.push_back(timed("carsync tar.gz -6 " + e, repeat, [&] {
      return carsync_build(data, ours_gz, ArchiveFormat::tar_gz, 6, engine);
    }));
    if (!carsync_only) runs.back().baseline = 0;
    runs.push_back(timed("carsync tar.zst -3 " + e, repeat, [&] {
      return carsync_build(data, ours_zst, ArchiveFormat::tar_zst, 3, engine);
    }));
    if (!carsync_only) runs.back().baseline = 1;
    for (std::size_t k = runs.size() - 2; k < runs.size(); ++k) {
      if (json.size() > 1) json += ",";
      json += "{\"name\": \"" + runs[k].name + "\", \"engine\": \"" + e + "\", \"format\": \"" +
              (k + 2 == runs.size() ? "tar.gz" : "tar.zst") + "\", \"seconds\": " + std::to_string(runs[k].seconds) +
              ", \"archive_bytes\": " + std::to_string(runs[k].size) + ", \"dataset_bytes\": " + std::to_string(bytes) +
              ", \"dataset_files\": " + std::to_string(files) + "}";
    }
  }
  if (!json_out.empty()) {
    std::ofstream(json_out) << json << "]\n";
  }
  for (const auto* f : {&tar_gz, &tar_zst, &ours_gz, &ours_zst}) fs::remove(*f);

  std::printf("%-28s %9s %9s %11s %9s %9s\n", "run", "seconds", "MB/s", "archive MB",
              "size/tar", "time/tar");
  for (const auto& r : runs) {
    std::printf("%-28s %9.2f %9.1f %11.2f", r.name.c_str(), r.seconds, mb / r.seconds,
                static_cast<double>(r.size) / 1e6);
    if (r.baseline) {
      const Run& tar = runs[*r.baseline];
      std::printf(" %9.3f %9.2f\n", static_cast<double>(r.size) / static_cast<double>(tar.size),
                  r.seconds / tar.seconds);
    } else {
      std::printf(" %9s %9s\n", "-", "-");
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "carsync_bench_archive: " << e.what() << "\n";
  return 1;
}
