#include "io/inotify.hpp"

#include <sys/inotify.h>

#include <cerrno>
#include <cstring>

namespace carsync::io {

Result<Inotify> Inotify::create() {
  unique_fd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!fd) return os_error(errno, "inotify_init1");
  return Inotify(std::move(fd));
}

Result<int> Inotify::add_watch(const std::filesystem::path& dir, std::uint32_t mask) {
  const int wd = ::inotify_add_watch(fd_.get(), dir.c_str(), mask | IN_ONLYDIR | IN_DONT_FOLLOW);
  if (wd < 0) return os_error(errno, "inotify_add_watch " + dir.string());
  return wd;
}

void Inotify::remove_watch(int wd) noexcept {
  // EINVAL when the kernel already dropped the watch (directory removed): nothing to do.
  ::inotify_rm_watch(fd_.get(), wd);
}

std::vector<InotifyEvent> Inotify::decode(std::span<const std::byte> buf) {
  std::vector<InotifyEvent> out;
  std::size_t off = 0;
  while (buf.size() - off >= sizeof(inotify_event)) {
    // The buffer carries no alignment guarantee for the caller's span: copy the header.
    inotify_event header;
    std::memcpy(&header, buf.data() + off, sizeof header);
    const std::size_t record = sizeof header + header.len;
    if (header.len > buf.size() - off - sizeof header) break;  // truncated trailing record

    const auto* name = reinterpret_cast<const char*>(buf.data() + off + sizeof header);
    // The name is NUL-padded to the record length.
    out.push_back({header.wd, header.mask, std::string(name, ::strnlen(name, header.len))});
    off += record;
  }
  return out;
}

}  // namespace carsync::io
