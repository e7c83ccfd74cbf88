#pragma once
// Reads an archive back with libarchive for the archive writer and capture tests.
#include "core/error.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace carsync::test {

struct Member {
  std::string name;
  unsigned type = 0;  // AE_IFREG, AE_IFDIR, ...
  unsigned perm = 0;
  std::int64_t size = 0;
  std::int64_t mtime = 0;
  std::int64_t uid = 0;
  std::int64_t gid = 0;
  std::optional<std::string> uname, gname, hardlink;
  std::string content;
};

struct ReadBack {
  std::string filter;  // outermost compression, e.g. "gzip", "zstd"
  std::vector<Member> members;
};

inline Result<ReadBack> read_archive(const std::filesystem::path& file) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_all(a.get());
  auto fail = [&] { return make_error(errc::corrupt_archive, archive_error_string(a.get())); };
  if (archive_read_open_filename(a.get(), file.c_str(), 64 * 1024) != ARCHIVE_OK) return fail();

  ReadBack out;
  archive_entry* e = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK) {
    Member m;
    m.name = archive_entry_pathname(e);
    m.type = archive_entry_filetype(e);
    m.perm = archive_entry_perm(e);
    m.size = archive_entry_size(e);
    m.mtime = archive_entry_mtime(e);
    m.uid = archive_entry_uid(e);
    m.gid = archive_entry_gid(e);
    // An empty ustar field reads back as "": count it as absent.
    auto text = [](const char* s) { return s && *s ? std::optional<std::string>(s) : std::nullopt; };
    m.uname = text(archive_entry_uname(e));
    m.gname = text(archive_entry_gname(e));
    m.hardlink = text(archive_entry_hardlink(e));
    char buf[64 * 1024];
    la_ssize_t n;
    while ((n = archive_read_data(a.get(), buf, sizeof buf)) > 0) m.content.append(buf, static_cast<std::size_t>(n));
    if (n < 0) return fail();
    out.members.push_back(std::move(m));
  }
  if (rc != ARCHIVE_EOF) return fail();
  if (const char* f = archive_filter_name(a.get(), 0)) out.filter = f;
  return out;
}

}  // namespace carsync::test
