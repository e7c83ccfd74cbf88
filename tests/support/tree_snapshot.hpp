#pragma once
// A comparable picture of a directory tree (paths, types, permission bits, file contents,
// link targets), for asserting that an operation left a tree byte-for-byte unchanged.
// Symlinks are recorded, never followed.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <ostream>
#include <stdexcept>
#include <string>

namespace carsync::test {

struct TreeNode {
  char type = '?';  // 'd' directory, 'f' regular file, 'l' symlink, 'o' anything else
  unsigned mode = 0;  // permission and special bits (07777)
  std::string data;   // file contents or link target
  bool operator==(const TreeNode&) const = default;
};

// Keyed by the path relative to the root; the root itself is ".".
using TreeSnapshot = std::map<std::string, TreeNode>;

inline TreeNode snapshot_node(const std::filesystem::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) throw std::runtime_error("lstat failed: " + p.string());
  TreeNode node;
  node.mode = st.st_mode & 07777;
  if (S_ISDIR(st.st_mode)) {
    node.type = 'd';
  } else if (S_ISLNK(st.st_mode)) {
    node.type = 'l';
    node.data = std::filesystem::read_symlink(p).string();
  } else if (S_ISREG(st.st_mode)) {
    node.type = 'f';
    std::ifstream in(p, std::ios::binary);
    node.data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw std::runtime_error("read failed: " + p.string());
  } else {
    node.type = 'o';
  }
  return node;
}

inline TreeSnapshot snapshot_tree(const std::filesystem::path& root) {
  TreeSnapshot out;
  out.emplace(".", snapshot_node(root));
  // The iterator does not descend through directory symlinks by default.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root))
    out.emplace(entry.path().lexically_relative(root).string(), snapshot_node(entry.path()));
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
