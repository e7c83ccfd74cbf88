#pragma once
// A comparable picture of a directory tree (paths, types, permission bits, file contents,
// link targets), for asserting that an operation left a tree byte-for-byte unchanged.
// Symlinks are recorded, never followed.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::test {

struct TreeNode {
  char type = '?';  // 'd' directory, 'f' regular file, 'l' symlink, 'o' anything else
  unsigned mode = 0;  // permission and special bits (07777)
  std::string data;   // file contents or link target
  bool operator==(const TreeNode&) const = default;
};

// Keyed by the path relative to the root; the root itself is ".".
using TreeSnapshot = std::map<std::string, TreeNode>;

namespace detail {

// Descriptor-relative throughout, so trees deeper than PATH_MAX are pictured too.
inline TreeNode snapshot_at(int dir_fd, const char* name, const std::string& shown, struct stat& st) {
  if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) throw std::runtime_error("lstat failed: " + shown);
  TreeNode node;
  node.mode = st.st_mode & 07777;
  if (S_ISDIR(st.st_mode)) {
    node.type = 'd';
  } else if (S_ISLNK(st.st_mode)) {
    node.type = 'l';
    std::string target(PATH_MAX, '\0');
    const auto n = ::readlinkat(dir_fd, name, target.data(), target.size());
    if (n < 0) throw std::runtime_error("readlink failed: " + shown);
    target.resize(static_cast<std::size_t>(n));
    node.data = std::move(target);
  } else if (S_ISREG(st.st_mode)) {
    node.type = 'f';
    const int fd = ::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("open failed: " + shown);
    char buf[65536];
    for (;;) {
      const auto n = ::read(fd, buf, sizeof buf);
      if (n < 0) {
        ::close(fd);
        throw std::runtime_error("read failed: " + shown);
      }
      if (n == 0) break;
      node.data.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
  } else {
    node.type = 'o';
  }
  return node;
}

inline void snapshot_dir(int dir_fd, const std::string& rel, std::map<std::string, TreeNode>& out) {
  DIR* dir = ::fdopendir(dir_fd);
  if (!dir) {
    ::close(dir_fd);
    throw std::runtime_error("opendir failed: " + rel);
  }
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(dir)) {
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  for (const auto& name : names) {
    const std::string child = rel == "." ? name : rel + "/" + name;
    struct stat st {};
    out.emplace(child, snapshot_at(::dirfd(dir), name.c_str(), child, st));
    if (S_ISDIR(st.st_mode)) {
      const int fd = ::openat(::dirfd(dir), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) {
        ::closedir(dir);
        throw std::runtime_error("open failed: " + child);
      }
      snapshot_dir(fd, child, out);
    }
  }
  ::closedir(dir);
}

}  // namespace detail

inline TreeNode snapshot_node(const std::filesystem::path& p) {
  struct stat st {};
  return detail::snapshot_at(AT_FDCWD, p.c_str(), p.string(), st);
}

// Symlinks are recorded, never descended into.
inline TreeSnapshot snapshot_tree(const std::filesystem::path& root) {
  TreeSnapshot out;
  out.emplace(".", snapshot_node(root));
  const int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open failed: " + root.string());
  detail::snapshot_dir(fd, ".", out);
  return out;
}

// Readable gtest output when two snapshots differ.
inline void PrintTo(const TreeNode& n, std::ostream* os) {
  *os << n.type << " 0" << std::oct << n.mode << std::dec << " ";
  if (n.data.size() <= 64)
    *os << '"' << n.data << '"';
  else
    *os << n.data.size() << " bytes";
}

}  // namespace carsync::test
