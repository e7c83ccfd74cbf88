#pragma once
// The embedded hash store: <data_dir>/kv/<hex(hkey)>/<hex(key)>.json, each value replaced
// atomically with fsync of file and directory, so it survives kill -9. Several processes
// may share one directory (the CLI and carsyncd); watchers learn of changes through
// inotify on the hkey directory (see runtime/local_backend).
#include "core/error.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace carsync::backend {

class LocalKv {
 public:
  explicit LocalKv(std::filesystem::path root);  // <data_dir>/kv

  Result<void> hset(std::string_view hkey, std::string_view key, const boost::json::value& v);
  Result<std::optional<boost::json::value>> hget(std::string_view hkey, std::string_view key) const;
  Result<boost::json::object> hgetall(std::string_view hkey) const;

  // Directory holding hkey's values (created on demand), for change watching.
  std::filesystem::path hkey_dir(std::string_view hkey) const;
  // Inverse of the file naming: key of a value file name, if it is one.
  static std::optional<std::string> key_of_file(std::string_view file_name);

 private:
  std::filesystem::path root_;
};

}  // namespace carsync::backend
