#pragma once
// Writes the tar stream a container export (GET /containers/{id}/archive?path=) returns, for
// the online capture tests: members named relative to the exported path's parent, any type.
#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace carsync::test {

struct TarMember {
  std::string name{};
  unsigned type = AE_IFREG;
  std::string content{};   // regular files only
  unsigned perm = 0644;
  std::string symlink{};   // target of a symlink member
  std::string hardlink{};  // name of the member a hard-link member points at
  std::int64_t uid = 1000, gid = 1000, mtime = 1700000000;
  unsigned rdev_major = 0, rdev_minor = 0;
};

inline TarMember tar_file(std::string name, std::string content, unsigned perm = 0644) {
  return {.name = std::move(name), .content = std::move(content), .perm = perm};
}
inline TarMember tar_dir(std::string name, unsigned perm = 0755) {
  return {.name = std::move(name), .type = AE_IFDIR, .perm = perm};
}

inline void write_tar(const std::filesystem::path& file, const std::vector<TarMember>& members, bool gzip = false) {
  std::unique_ptr<archive, decltype(&archive_write_free)> a(archive_write_new(), archive_write_free);
  auto check = [&](int rc, const char* what) {
    if (rc < ARCHIVE_WARN) throw std::runtime_error(std::string("write_tar ") + what + ": " + archive_error_string(a.get()));
  };
  // Restricted PAX, like Docker's Go writer: plain ustar unless a member needs more.
  check(archive_write_set_format_pax_restricted(a.get()), "format");
  if (gzip) check(archive_write_add_filter_gzip(a.get()), "gzip");
  check(archive_write_open_filename(a.get(), file.c_str()), "open");
  for (const auto& m : members) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(e.get(), m.name.c_str());
    archive_entry_set_filetype(e.get(), m.type);
    archive_entry_set_perm(e.get(), m.perm);
    archive_entry_set_uid(e.get(), m.uid);
    archive_entry_set_gid(e.get(), m.gid);
    archive_entry_set_mtime(e.get(), m.mtime, 0);
    const bool has_data = m.type == AE_IFREG && m.hardlink.empty();
    archive_entry_set_size(e.get(), has_data ? static_cast<la_int64_t>(m.content.size()) : 0);
    if (!m.symlink.empty()) archive_entry_set_symlink(e.get(), m.symlink.c_str());
    if (!m.hardlink.empty()) archive_entry_set_hardlink(e.get(), m.hardlink.c_str());
    archive_entry_set_rdevmajor(e.get(), m.rdev_major);
    archive_entry_set_rdevminor(e.get(), m.rdev_minor);
    check(archive_write_header(a.get(), e.get()), "header");
    if (has_data && !m.content.empty() &&
        archive_write_data(a.get(), m.content.data(), m.content.size()) != static_cast<la_ssize_t>(m.content.size()))
      check(ARCHIVE_FATAL, "data");
  }
  check(archive_write_close(a.get()), "close");
}

}  // namespace carsync::test
