#include "io/unique_fd.hpp"

#include <unistd.h>

namespace carsync::io {

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);  // EINTR on Linux still closes the fd: never retry
  fd_ = fd;
}

}  // namespace carsync::io
