#pragma once
// Online capture (spec §7.2, §7.3 "online entry"): the container's own tar stream of each
// path, as the Docker "get archive" API returns it, is copied into the archive with its
// members renamed to container paths without the leading '/'.
//
// Unlike the reference (§12 item 25) only regular files and directories are copied:
// symlink, hard-link, device, FIFO and socket members fail the build, naming the member, so
// a consumer never receives a link or a device node it would skip or mis-restore.
#include "core/error.hpp"
#include "io/archive_writer.hpp"
#include "io/capture.hpp"

#include <atomic>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace carsync::io {

struct OnlineSource {
  std::string container_path;    // normalised (§6.1), not "/"
  std::filesystem::path stream;  // the exported Docker tar (plain or gzip)
  std::string base;              // basename Docker reports; empty: basename of container_path
};

// §7.3 renaming of one Docker member of `container_path`'s export: the member name in our
// archive (no leading '/'). A '..' segment is rejected, and so is a name that would leave
// the container path.
Result<std::string> online_member_name(std::string_view container_path, std::string_view base,
                                       std::string_view member);

// Builds `out` from the sources in order. On failure `out` is removed. `cancel` is polled
// between members and chunks so shutdown can abandon a long build.
Result<CaptureStats> build_online_archive(std::span<const OnlineSource> sources,
                                          const std::filesystem::path& out,
                                          const ArchiveOptions& opts,
                                          const std::atomic<bool>* cancel = nullptr);

}  // namespace carsync::io
