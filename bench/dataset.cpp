#include "dataset.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace carsync::bench {
namespace {

// splitmix64: tiny, fast and identical everywhere, so every machine builds the same dataset.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) { return lo + next() % (hi - lo + 1); }
  double unit() { return static_cast<double>(next() >> 11) / 9007199254740992.0; }

 private:
  std::uint64_t s_;
};

class Words {
 public:
  explicit Words(Rng& rng) : rng_(rng) {
    for (int i = 0; i < 4000; ++i) {
      std::string w;
      const auto len = rng.between(2, 10);
      for (std::uint64_t j = 0; j < len; ++j) w += static_cast<char>('a' + rng.next() % 26);
      vocab_.push_back(std::move(w));
    }
  }
  // Skewed towards the head of the vocabulary, roughly like natural text.
  const std::string& pick() {
    const double u = rng_.unit();
    return vocab_[static_cast<std::size_t>(u * u * u * static_cast<double>(vocab_.size()))];
  }

 private:
  Rng& rng_;
  std::vector<std::string> vocab_;
};

std::string prose(Rng& rng, Words& words, std::size_t size) {
  std::string out;
  std::size_t line = 0;
  while (out.size() < size) {
    const auto n = rng.between(5, 15);
    for (std::uint64_t i = 0; i < n; ++i) {
      std::string w = words.pick();
      if (i == 0) w[0] = static_cast<char>(w[0] - 'a' + 'A');
      out += w;
      out += i + 1 == n ? ". " : " ";
      line += w.size() + 1;
      if (line > 72) {
        out += '\n';
        line = 0;
      }
    }
  }
  out.resize(size);
  return out;
}

std::string log_text(Rng& rng, Words& words, std::size_t size) {
  static const char* const levels[] = {"INFO ", "INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"};
  std::string out;
  std::uint64_t ms = 1700000000000ull + rng.between(0, 1000000000);
  char buf[160];
  while (out.size() < size) {
    ms += rng.between(0, 2000);
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%03uZ %s [worker-%u] req=%016llx status=%u latency_ms=%u ",
                  static_cast<unsigned>(ms % 1000), levels[rng.next() % 6],
                  static_cast<unsigned>(rng.next() % 8), static_cast<unsigned long long>(rng.next()),
                  rng.next() % 10 == 0 ? 500u : 200u, static_cast<unsigned>(rng.between(1, 900)));
    out += buf;
    out += "path=/api/v1/" + words.pick() + "/" + words.pick() + " msg=\"";
    for (auto i = rng.between(3, 9); i > 0; --i) out += words.pick() + (i > 1 ? " " : "");
    out += "\"\n";
  }
  out.resize(size);
  return out;
}

std::string random_bytes(Rng& rng, std::size_t size) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i + 8 <= size; i += 8) {
    const std::uint64_t v = rng.next();
    std::memcpy(out.data() + i, &v, 8);
  }
  return out;
}

void write(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

}  // namespace

void generate_dataset(const fs::path& tree) {
  fs::remove_all(tree);
  Rng rng(20240501);
  Words words(rng);
  char name[64];
  for (int i = 0; i < 2000; ++i) {
    std::snprintf(name, sizeof name, "text/d%02d/note_%04d.txt", i / 100, i);
    write(tree / name, prose(rng, words, rng.between(1024, 64 * 1024)));
  }
  for (int i = 0; i < 20; ++i) {
    std::snprintf(name, sizeof name, "logs/service-%02d.log", i);
    write(tree / name, log_text(rng, words, rng.between(1 << 20, 8 << 20)));
  }
  for (int i = 0; i < 5; ++i) {
    std::snprintf(name, sizeof name, "blobs/blob-%d.bin", i);
    write(tree / name, random_bytes(rng, 10 << 20));
  }
}

fs::path ensure_dataset(const fs::path& data_dir) {
  const fs::path tree = data_dir / "tree", marker = data_dir / ".complete";
  if (!fs::exists(marker)) {
    std::cout << "generating dataset in " << tree << " ..." << std::endl;
    generate_dataset(tree);
    write(marker, "1\n");
  }
  return tree;
}

void drop_cached(const fs::path& path) {
  auto drop = [](const fs::path& file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ::fdatasync(fd);  // DONTNEED drops only clean pages
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  };
  if (!fs::is_directory(path)) return drop(path);
  for (const auto& e : fs::recursive_directory_iterator(path))
    if (e.is_regular_file()) drop(e.path());
}

}  // namespace carsync::bench
