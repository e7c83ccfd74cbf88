#include "runtime/api_instances.hpp"

#include "io/atomic_json.hpp"
#include "io/secure_fs.hpp"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

namespace carsync::runtime {

namespace json = boost::json;

Result<ApiInstances> ApiInstances::load(std::filesystem::path file) {
  ApiInstances out(file);
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return out;
  auto dir = io::open_root_dir(file.parent_path());
  if (!dir) return dir.error();
  auto body = io::read_json_at(dir->get(), file.filename().string());
  auto bad = [&](const std::string& why) {
    return make_error(errc::bad_config, file.string() + ": " + why + " (instances added through the control API)");
  };
  if (!body) return bad(body.error().message);
  const json::value* list = body->is_object() ? body->as_object().if_contains("instances") : nullptr;
  if (!list || !list->is_array()) return bad("expected {\"instances\": [...]}");
  for (const auto& v : list->as_array()) {
    const json::value* id = v.is_object() ? v.as_object().if_contains("id") : nullptr;
    if (!id || !id->is_string() || id->as_string().empty()) return bad("an entry without an \"id\"");
    out.instances_[std::string(id->as_string())] = v.as_object();
  }
  return out;
}

ApiInstances::ApiInstances(ApiInstances&& other) noexcept
    : file_(std::move(other.file_)), instances_(std::move(other.instances_)) {}

std::set<std::string> ApiInstances::merge_into(NodeConfig& config) const {
  std::set<std::string> defined, shadowed;
  for (const auto& i : config.instances) defined.insert(i.id);
  std::lock_guard l(mu_);
  for (const auto& [id, object] : instances_) {
    if (defined.contains(id)) {
      shadowed.insert(id);
      continue;
    }
    try {
      config.instances.push_back(parse_instance_config(json::serialize(object), config));
    } catch (const ConfigError& e) {
      // Validated when it was added; a newer carsync may read the object differently.
      spdlog::error("[{}] instance added through the control API no longer parses: {}: skipped", id, e.what());
    }
  }
  return shadowed;
}

bool ApiInstances::contains(const std::string& id) const {
  std::lock_guard l(mu_);
  return instances_.contains(id);
}

void ApiInstances::put(const std::string& id, json::object instance) {
  std::lock_guard l(mu_);
  instances_[id] = std::move(instance);
}

bool ApiInstances::erase(const std::string& id) {
  std::lock_guard l(mu_);
  return instances_.erase(id) > 0;
}

json::object ApiInstances::snapshot() const {
  std::lock_guard l(mu_);
  json::array list;
  for (const auto& entry : instances_) list.emplace_back(entry.second);
  return {{"instances", std::move(list)}};
}

Result<void> ApiInstances::save(const json::object& snapshot) const {
  return io::write_json_file(file_, snapshot);
}

}  // namespace carsync::runtime
