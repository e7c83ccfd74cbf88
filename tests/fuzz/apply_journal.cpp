// The staged apply's write-ahead journal as recovery reads it after a crash (io/apply_journal):
// a torn or tampered journal must be refused, never guessed at. read_journal reads a file,
// so each input is written to a journal file in the process's scratch directory.
#include "io/apply_journal.hpp"

#include "fuzz_support.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

using namespace carsync;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto file = fuzz::scratch_dir() / "apply-journal.json";
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || (size > 0 && ::write(fd, data, size) != static_cast<ssize_t>(size))) std::abort();
  ::close(fd);

  auto j = io::read_journal(file);
  if (j && *j) {
    // Whatever recovery accepts names only clean relative paths inside known volumes.
    for (const auto& f : (*j)->files)
      if (f.volume >= (*j)->volumes.size() || !io::is_clean_rel(f.rel) ||
          f.temp.find('/') != std::string::npos || f.temp.find((*j)->apply_id) == std::string::npos)
        std::abort();
    for (const auto& d : (*j)->dirs)
      if (d.volume >= (*j)->volumes.size() || !io::is_clean_rel(d.rel)) std::abort();
    for (const auto& p : (*j)->created_dirs)
      if (p.volume >= (*j)->volumes.size() || !io::is_clean_rel(p.rel)) std::abort();
    for (const auto& p : (*j)->removals)
      if (p.volume >= (*j)->volumes.size() || !io::is_clean_rel(p.rel)) std::abort();
  }
  return 0;
}
