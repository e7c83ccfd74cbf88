#pragma once
// Shared by the libFuzzer targets: the consumer mounts every target validates against, and
// a private scratch directory for the targets whose parser reads from or writes to files.

#include "carsync/config.hpp"
#include "core/path_rules.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace carsync::fuzz {

// Host roots shaped like the reference's (rule 2: ".../fixed_volumes/mounts/..."), one rw
// data volume and the system volume, as a consumer's instance has them.
inline std::vector<VolumeMount> sample_mounts(const std::string& base) {
  return {{base + "/fixed_volumes/mounts/appdata", "/app/data", "rw"},
          {base + "/fixed_volumes/mounts/cfg", "/app/cfg", "ro"},
          {base + "/system", "/r1en_system", "rw"}};
}

// One directory per fuzzing process, created on first use under $TMPDIR (or /tmp) and
// removed at exit: nothing a target writes can land anywhere else.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/carsync-fuzz.XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return std::filesystem::path(tmpl);
  }();
  return dir;
}

}  // namespace carsync::fuzz
