// Times the staged commit of a consumer apply (io/staged_apply) with one syncfs per volume
// against an fsync of every file and directory.
//
//   carsync_bench_apply [--dir DIR] [--rounds N]
//
// The plan (deterministic): 2,000 files of 1-64 KiB in 40 directories plus four files of
// 1, 2, 4 and 8 MiB, ~79 MiB in all, applied to an empty volume. Each run stages its blobs
// afresh and calls sync(2) before the clock starts, so both modes flush the same dirty data
// (the staged blobs, as the archive scan leaves them) and nothing else. Staging sits on the
// volume's filesystem (blobs are hard-linked) and, when /dev/shm is another filesystem,
// also there (blobs are copied). Each figure is the median of N runs.
#include "io/staged_apply.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace fs = std::filesystem;
using namespace carsync;

namespace {

class Rng {  // splitmix64
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) { return lo + next() % (hi - lo + 1); }

 private:
  std::uint64_t s_;
};

struct FileSpec {
  std::string rel;
  std::uint64_t size;
};

std::vector<FileSpec> dataset() {
  Rng rng(42);
  std::vector<FileSpec> files;
  for (int i = 0; i < 2000; ++i)
    files.push_back({"d" + std::to_string(i % 40) + "/f" + std::to_string(i), rng.between(1024, 64 * 1024)});
  for (int i = 0; i < 4; ++i) files.push_back({"big/blob" + std::to_string(i), (1ull << i) << 20});
  return files;
}

void write_blob(const fs::path& p, std::uint64_t size, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<std::uint64_t> chunk(8192);
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  for (std::uint64_t left = size; left > 0;) {
    for (auto& w : chunk) w = rng.next();
    const auto n = std::min<std::uint64_t>(left, chunk.size() * sizeof(std::uint64_t));
    out.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(n));
    left -= n;
  }
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", p.c_str());
    std::exit(1);
  }
}

io::ApplyPlan stage(const std::vector<FileSpec>& files, const fs::path& volume, const fs::path& staging) {
  fs::create_directories(staging);
  io::ApplyPlan plan;
  plan.volumes.push_back({volume.string(), "/app/data"});
  plan.staging_dir = staging;
  plan.entries.push_back({"/app/data", 0, "", true, 0755, 1'700'000'000, 0, 0, {}});
  for (std::size_t i = 0; i < files.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%06zu.blob", i);
    write_blob(staging / name, files[i].size, i);
    plan.entries.push_back(
        {"/app/data/" + files[i].rel, 0, files[i].rel, false, 0644, 1'700'000'000, 0, files[i].size, name});
    plan.total_bytes += files[i].size;
  }
  return plan;
}

struct Run {
  double total;
  double durable;
};

Run run_once(const std::vector<FileSpec>& files, const fs::path& work, const fs::path& staging_base,
             io::ApplyDurability durability) {
  const auto volume = work / "volume";
  const auto staging = staging_base / "staging";
  fs::remove_all(volume);
  fs::remove_all(staging);
  fs::create_directories(volume);
  const auto plan = stage(files, volume, staging);
  ::sync();

  io::ApplyOptions opts;
  opts.durability = durability;
  const auto start = std::chrono::steady_clock::now();
  const auto out = io::commit_plan(plan, work / "state/apply_journal.json", opts);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!out.success) {
    std::fprintf(stderr, "apply failed: %s\n", out.error.c_str());
    std::exit(1);
  }
  fs::remove_all(staging);
  return {total, out.durable_seconds};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = fs::temp_directory_path();
  int rounds = 3;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: %s [--dir DIR] [--rounds N]\n", argv[0]);
      return 2;
    }
  }

  const auto files = dataset();
  std::uint64_t bytes = 0;
  for (const auto& f : files) bytes += f.size;
  const auto work = dir / ("carsync-bench-apply." + std::to_string(::getpid()));
  fs::create_directories(work);

  struct stat vst {}, sst {};
  const bool copy_scenario =
      ::stat(work.c_str(), &vst) == 0 && ::stat("/dev/shm", &sst) == 0 && vst.st_dev != sst.st_dev;
  const auto shm = fs::path("/dev/shm") / work.filename();

  std::printf("plan: %zu files, %.1f MiB; %d rounds, median\n", files.size(),
              static_cast<double>(bytes) / (1 << 20), rounds);
  std::printf("%-28s %10s %12s %10s\n", "staging / durability", "total s", "durable s", "files/s");
  for (const bool copy : {false, true}) {
    if (copy && !copy_scenario) continue;
    for (const auto mode : {io::ApplyDurability::syncfs, io::ApplyDurability::fsync_each}) {
      std::vector<double> totals, durables;
      for (int r = 0; r < rounds; ++r) {
        const auto run = run_once(files, work, copy ? shm : work, mode);
        totals.push_back(run.total);
        durables.push_back(run.durable);
      }
      const std::string label = std::string(copy ? "copied (/dev/shm)" : "linked (same fs)") + " / " +
                                (mode == io::ApplyDurability::syncfs ? "syncfs" : "fsync_each");
      const double t = median(totals);
      std::printf("%-28s %10.3f %12.3f %10.0f\n", label.c_str(), t, median(durables),
                  static_cast<double>(files.size()) / t);
      std::fflush(stdout);
    }
  }
  fs::remove_all(work);
  fs::remove_all(shm);
  return 0;
}
