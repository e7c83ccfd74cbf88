// Times the consumer side of a sync, archive scan and staging (io/archive_scan) followed by the
// crash-safe commit (io/staged_apply), against GNU tar extracting the same archive.
//
//   carsync_bench_extract [--data DIR] [--rounds N] [--cold] [--carsync-only] [--json FILE]
//
// --cold evicts the archive from the page cache before every carsync run; --carsync-only
// runs only the carsync rows with syncfs (scripts/bench times its own tar yardsticks);
// --json also writes the rows as a JSON array to FILE.
//
// The dataset is the one carsync_bench_archive uses (bench/dataset.hpp, ~200 MB, generated
// into DIR/tree on first use). It is packed once by carsync itself into tar.gz (level 6) and
// tar.zst (level 3); every run then unpacks one of them into an empty directory under
// DIR/extract. The staging directory, the consumer volume and tar's target all sit on that
// one filesystem, as in a deployment where the daemon's state and the volumes share a disk:
// staged blobs become the volume's files by hard link. The archives are read from the page
// cache; each run starts after sync(2), so it flushes only what it wrote itself (and whatever
// other processes dirty meanwhile: syncfs covers the whole filesystem).
//
// "tar ... && sync -f" is the durable baseline: sync -f is one syncfs(2) of the target's
// filesystem, what carsync's syncfs mode does per volume. ApplyDurability has no "none"
// mode, so there is no non-durable carsync row. MB/s counts the dataset's (uncompressed)
// bytes; "cpu s" is user+system time (for tar: tar, its decompressor and sync), which a busy
// machine distorts far less than wall time. Each figure is the median of N rounds.
#include "carsync/config.hpp"
#include "core/path_rules.hpp"
#include "dataset.hpp"
#include "io/archive_scan.hpp"
#include "io/capture.hpp"
#include "io/file_engine.hpp"
#include "io/staged_apply.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace carsync;

namespace {

constexpr const char* kBind = "/app/data";

struct Tally {
  std::uint64_t files = 0, bytes = 0;
  bool operator==(const Tally&) const = default;
};

Tally tally(const fs::path& dir) {
  Tally t;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    ++t.files;
    t.bytes += e.file_size();
  }
  return t;
}

using Clock = std::chrono::steady_clock;
double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// User plus system CPU time of this process or of its waited-for children: unlike wall time,
// barely affected by other load on the machine.
double cpu_seconds(int who) {
  struct rusage ru {};
  ::getrusage(who, &ru);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

struct Sample {
  double total = 0, cpu = 0, scan = 0, commit = 0, durable = 0;
};

struct Row {
  std::string name;
  Sample median;
  std::optional<std::size_t> tar, tar_sync;  // indexes of the rows this one is compared with
};

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Sample median(const std::vector<Sample>& runs) {
  auto pick = [&](double Sample::*field) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.*field);
    return median_of(std::move(v));
  };
  return {pick(&Sample::total), pick(&Sample::cpu), pick(&Sample::scan), pick(&Sample::commit),
          pick(&Sample::durable)};
}

// An empty directory, with the removal of the previous run's output flushed before the clock.
void fresh(const fs::path& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
}

class Bench {
 public:
  Bench(fs::path work, Tally expected, int rounds) : work_(std::move(work)), expected_(expected), rounds_(rounds) {
    policy_.volume_roots = std::vector<std::string>{work_.string()};
    mounts_.push_back({(work_ / "volume").string(), kBind, "rw"});
  }

  bool cold = false;

  Sample carsync(const fs::path& archive, io::ApplyDurability durability) {
    return repeat(work_ / "volume", [&] {
      fresh(work_ / "staging");
      fs::create_directories(work_ / "state");
      ::sync();
      if (cold) bench::drop_cached(archive);
      Sample s;
      const double cpu = cpu_seconds(RUSAGE_SELF);
      const auto start = Clock::now();
      io::ScanContext ctx;
      ctx.mounts = mounts_;
      ctx.policy = &policy_;
      ctx.manifest_paths = {std::string(kBind) + "/"};
      auto plan = io::scan_and_stage(archive, ctx, work_ / "staging");
      if (!plan) throw std::runtime_error("scan: " + plan.error().message);
      s.scan = since(start);
      io::ApplyOptions opts;
      opts.durability = durability;
      opts.cid = "bench";
      const auto commit_start = Clock::now();
      const auto out = io::commit_plan(*plan, work_ / "state/apply_journal.json", opts);
      if (!out.success) throw std::runtime_error("commit: " + out.error);
      s.commit = since(commit_start);
      s.total = since(start);
      s.cpu = cpu_seconds(RUSAGE_SELF) - cpu;
      s.durable = out.durable_seconds;
      fs::remove_all(work_ / "staging");  // the daemon discards staging after the apply, untimed
      return s;
    });
  }

  Sample shell(const std::string& command) {
    const fs::path dir = work_ / "tar";
    return repeat(dir, [&] {
      ::sync();
      const double cpu = cpu_seconds(RUSAGE_CHILDREN);
      const auto start = Clock::now();
      if (std::system(command.c_str()) != 0) throw std::runtime_error("command failed: " + command);
      return Sample{since(start), cpu_seconds(RUSAGE_CHILDREN) - cpu, 0, 0, 0};
    });
  }

 private:
  // Runs `once` `rounds_` times into an emptied `out`, checks the last result holds the
  // whole dataset and returns the medians.
  template <class F>
  Sample repeat(const fs::path& out, F once) {
    std::vector<Sample> runs;
    for (int i = 0; i < rounds_; ++i) {
      fresh(out);
      runs.push_back(once());
    }
    if (const auto got = tally(out); !(got == expected_))
      throw std::runtime_error("extracted " + std::to_string(got.files) + " files / " + std::to_string(got.bytes) +
                               " bytes, expected " + std::to_string(expected_.files) + " / " +
                               std::to_string(expected_.bytes));
    fs::remove_all(out);
    return median(runs);
  }

  fs::path work_;
  Tally expected_;
  int rounds_;
  core::MountPolicy policy_;
  std::vector<VolumeMount> mounts_;
};

std::uint64_t pack(const fs::path& tree, const fs::path& out, ArchiveFormat format, int level) {
  if (fs::exists(out)) return fs::file_size(out);
  auto reader = io::make_portable_reader({});
  const core::ResolvedPath source{kBind, tree.string(), kBind, ""};
  auto stats = io::build_offline_archive({&source, 1}, out, {format, level}, *reader);
  if (!stats) throw std::runtime_error("archive build: " + stats.error().message);
  return stats->archive_size;
}

// Appended piecewise: g++ 12 warns falsely (-Wrestrict) about "'" + std::string.
std::string quoted(const fs::path& p) {
  std::string q(1, '\'');
  q += p.string();
  q += '\'';
  return q;
}

[[noreturn]] void usage() {
  std::cerr << "usage: carsync_bench_extract [--data DIR] [--rounds N] [--cold] [--carsync-only] [--json FILE]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) try {
  fs::path data = "/tmp/carsync-bench-data";
  int rounds = 3;
  bool cold = false, carsync_only = false;
  fs::path json_out;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--cold") cold = true;
    else if (arg == "--carsync-only") carsync_only = true;
    else if (i + 1 >= argc) usage();
    else if (arg == "--data") data = argv[++i];
    else if (arg == "--rounds") rounds = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--json") json_out = argv[++i];
    else usage();
  }

  const fs::path tree = bench::ensure_dataset(data);
  const fs::path work = data / "extract";
  fs::create_directories(work);
  const Tally expected = tally(tree);
  const double mb = static_cast<double>(expected.bytes) / 1e6;

  // Built by carsync, as a consumer receives them; reused across invocations.
  const fs::path gz = work / "dataset.tar.gz", zst = work / "dataset.tar.zst";
  const auto gz_size = pack(tree, gz, ArchiveFormat::tar_gz, 6);
  const auto zst_size = pack(tree, zst, ArchiveFormat::tar_zst, 3);

  std::printf("dataset: %llu files, %.1f MB; tar.gz -6 %.1f MB, tar.zst -3 %.1f MB\n",
              static_cast<unsigned long long>(expected.files), mb, static_cast<double>(gz_size) / 1e6,
              static_cast<double>(zst_size) / 1e6);
  std::printf("staging, volume and tar target on one filesystem (%s); median of %d round(s)\n\n",
              work.c_str(), rounds);

  Bench bench(work, expected, rounds);
  bench.cold = cold;
  const std::string target = quoted(work / "tar");
  std::vector<Row> rows;
  struct Format {
    const char* label;
    fs::path archive;
    std::string tar_flags;
  };
  for (const auto& f : {Format{"gz", gz, "-xzf"}, Format{"zst", zst, "-I zstd -xf"}}) {
    if (carsync_only) {
      rows.push_back({std::string("carsync ") + f.label + " syncfs", bench.carsync(f.archive, io::ApplyDurability::syncfs), {}, {}});
      std::cout << "." << std::flush;
      continue;
    }
    const std::string tar = "tar " + f.tar_flags + " " + quoted(f.archive) + " -C " + target;
    const std::size_t base = rows.size();
    rows.push_back({"tar " + f.tar_flags, bench.shell(tar), {}, {}});
    std::cout << "." << std::flush;
    rows.push_back({"tar " + f.tar_flags + " && sync -f", bench.shell(tar + " && sync -f " + target),
                    base, {}});
    std::cout << "." << std::flush;
    for (const auto mode : {io::ApplyDurability::syncfs, io::ApplyDurability::fsync_each}) {
      const std::string m = mode == io::ApplyDurability::syncfs ? "syncfs" : "fsync_each";
      rows.push_back({std::string("carsync ") + f.label + " " + m, bench.carsync(f.archive, mode), base, base + 1});
      std::cout << "." << std::flush;
    }
  }
  std::cout << "\n\n";
  if (!json_out.empty()) {
    std::string json = "[";
    for (const auto& r : rows) {
      if (json.size() > 1) json += ",";
      const auto& m = r.median;
      json += "{\"name\": \"" + r.name + "\", \"seconds\": " + std::to_string(m.total) + ", \"cpu\": " +
              std::to_string(m.cpu) + ", \"scan\": " + std::to_string(m.scan) + ", \"commit\": " +
              std::to_string(m.commit) + ", \"durable\": " + std::to_string(m.durable) + ", \"dataset_bytes\": " +
              std::to_string(expected.bytes) + ", \"archive_bytes\": " +
              std::to_string(r.name.find("gz") != std::string::npos ? gz_size : zst_size) + "}";
    }
    std::ofstream(json_out) << json << "]\n";
  }

  std::printf("%-30s %8s %8s %8s %8s %8s %9s %7s %9s\n", "run", "seconds", "MB/s", "cpu s", "scan s",
              "commit s", "durable s", "/tar", "/tar+sync");
  for (const auto& r : rows) {
    const auto& s = r.median;
    std::printf("%-30s %8.2f %8.1f %8.2f", r.name.c_str(), s.total, mb / s.total, s.cpu);
    if (r.name.starts_with("carsync"))
      std::printf(" %8.2f %8.2f %9.2f", s.scan, s.commit, s.durable);
    else
      std::printf(" %8s %8s %9s", "-", "-", "-");
    if (r.tar) std::printf(" %7.2f", s.total / rows[*r.tar].median.total);
    else std::printf(" %7s", "-");
    if (r.tar_sync) std::printf(" %9.2f\n", s.total / rows[*r.tar_sync].median.total);
    else std::printf(" %9s\n", "-");
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "\ncarsync_bench_extract: " << e.what() << "\n";
  return 1;
}
