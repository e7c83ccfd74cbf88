#pragma once
// Instances added through the control API, kept in <data_dir>/api_instances.json so that
// they survive a restart of carsyncd. Each is stored as the instance object the API got
// (the configuration file's form), and merged into the file's configuration at start-up and
// on every reload. An id the file defines wins over a stored one (logged).
#include "carsync/config.hpp"
#include "core/error.hpp"

#include <boost/json/object.hpp>

#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>

namespace carsync::runtime {

class ApiInstances {
 public:
  // Reads the file; a missing file is an empty catalog. An unreadable or malformed one is
  // errc::bad_config naming the file: carsyncd refuses to start rather than drop instances.
  static Result<ApiInstances> load(std::filesystem::path file);

  ApiInstances(ApiInstances&& other) noexcept;

  // Appends every stored instance whose id the configuration does not define; returns the
  // ids the file's own instances shadow (for a warning).
  std::set<std::string> merge_into(NodeConfig& config) const;

  bool contains(const std::string& id) const;
  // In memory only; save() makes the current contents durable. Callers change and save in
  // one order (one writer at a time), so the file always holds the latest contents.
  void put(const std::string& id, boost::json::object instance);
  bool erase(const std::string& id);
  // The contents to save, taken when a change is made (see save).
  boost::json::object snapshot() const;
  // Atomic and durable (blocking: run on a pool).
  Result<void> save(const boost::json::object& snapshot) const;

  const std::filesystem::path& file() const noexcept { return file_; }

 private:
  explicit ApiInstances(std::filesystem::path file) : file_(std::move(file)) {}
  std::filesystem::path file_;
  mutable std::mutex mu_;
  std::map<std::string, boost::json::object> instances_;
};

}  // namespace carsync::runtime
