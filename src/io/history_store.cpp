#include "io/history_store.hpp"

#include "io/atomic_json.hpp"
#include "io/secure_fs.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>

namespace carsync::io {
namespace {

std::size_t index_of(core::HistoryDir d) { return d == core::HistoryDir::sent ? 0 : 1; }

bool is_entry_name(const std::string& name) {
  return name.size() > 5 && name.front() != '.' && name.ends_with(".json");
}

// Every parseable entry of one directory, oldest -> newest. A missing directory is empty.
std::vector<core::HistoryEntry> load_entries(const std::filesystem::path& dir) {
  std::vector<core::HistoryEntry> out;
  auto dir_fd = open_root_dir(dir);
  if (!dir_fd) {
    if (dir_fd.error().code != make_error_code(errc::not_found))
      spdlog::warn("history: cannot open {}: {}", dir.string(), dir_fd.error().message);
    return out;
  }
  std::error_code ec;
  for (const auto& item : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = item.path().filename().string();
    if (!is_entry_name(name)) continue;
    struct stat st {};
    if (::fstatat(dir_fd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      continue;
    auto body = read_json_at(dir_fd->get(), name);
    if (!body || !body->is_object()) {
      spdlog::warn("history: skipping unreadable entry {}/{}: {}", dir.string(), name,
                   body ? std::string("not a JSON object") : body.error().message);
      continue;
    }
    out.push_back({name, std::move(body->as_object()),
                   std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec});
  }
  if (ec) spdlog::warn("history: cannot list {}: {}", dir.string(), ec.message());
  core::sort_by_write_order(out);
  return out;
}

}  // namespace

HistoryStore::HistoryStore(std::filesystem::path root) : root_(std::move(root)) {}

std::filesystem::path HistoryStore::dir_path(core::HistoryDir dir) const {
  return root_ / core::to_string(dir);
}

Result<std::string> HistoryStore::append(core::HistoryDir dir, boost::json::object entry,
                                         std::int64_t wall_ns) {
  const auto* version = entry.if_contains("version");
  boost::system::error_code ec;
  const auto v = version && !version->is_double() ? version->to_number<std::int64_t>(ec) : 0;
  if (!version || version->is_double() || ec)
    return make_error(errc::invalid_record, "history entry has no integer version");
  const auto* cid = entry.if_contains("cid");
  const std::string name =
      core::history_file_name(v, cid && cid->is_string() ? std::string_view(cid->as_string()) : "");

  std::lock_guard lock(mu_);
  auto& next = next_seq_[index_of(dir)];
  // Continue the numbering of earlier runs: the directory is the only durable counter.
  if (next == 0) next = core::max_sequence(load_entries(dir_path(dir))) + 1;

  entry["history_written_at_ns"] = wall_ns;
  entry["sequence"] = next;
  if (!entry.contains("deletion")) entry["deletion"] = core::null_deletion();
  // The same snapshot published twice in one second replaces its entry (the name is the
  // reference's); the delta objects the first named must still be retired.
  if (auto dir_fd = open_root_dir(dir_path(dir)); dir_fd)
    if (auto old = read_json_at(dir_fd->get(), name); old && old->is_object()) core::carry_replaced_delta(old->as_object(), entry);

  if (auto r = write_json_file(dir_path(dir) / name, entry); !r) return r.error();
  ++next;
  return name;
}

std::vector<core::HistoryEntry> HistoryStore::entries(core::HistoryDir dir) const {
  std::lock_guard lock(mu_);
  return load_entries(dir_path(dir));
}

std::optional<core::HistoryEntry> HistoryStore::latest(core::HistoryDir dir) const {
  auto all = entries(dir);
  if (all.empty()) return std::nullopt;
  return std::move(all.back());
}

Result<void> HistoryStore::record_deletion(core::HistoryDir dir, std::int64_t version,
                                           std::string_view cid, std::optional<double> deleted_at,
                                           bool succeeded, std::optional<std::string> error) {
  const std::string name = core::history_file_name(version, cid);
  const auto path = dir_path(dir) / name;

  std::lock_guard lock(mu_);
  auto dir_fd = open_root_dir(dir_path(dir));
  auto body = dir_fd ? read_json_at(dir_fd->get(), name) : Result<boost::json::value>(dir_fd.error());
  if (!body) {
    if (body.error().code == make_error_code(errc::not_found)) {
      spdlog::warn("history: history file missing: {}; deletion result not recorded", path.string());
      return {};
    }
    return body.error();
  }
  if (!body->is_object())
    return make_error(errc::invalid_record, "history entry " + path.string() + " is not a JSON object");

  // Only the deletion sub-record changes; history_written_at_ns and sequence keep the order.
  body->as_object()["deletion"] = core::deletion_result(deleted_at, succeeded, std::move(error));
  return write_json_at(dir_fd->get(), name, *body);
}

Result<void> HistoryStore::record_delta_deletion(core::HistoryDir dir, const std::string& file_name,
                                                 std::string_view part, std::optional<double> deleted_at,
                                                 std::optional<std::string> error) {
  std::lock_guard lock(mu_);
  auto dir_fd = open_root_dir(dir_path(dir));
  if (!dir_fd) return dir_fd.error();
  auto body = read_json_at(dir_fd->get(), file_name);
  if (!body) return body.error();
  auto* delta = body->is_object() ? body->as_object().if_contains("delta") : nullptr;
  boost::json::value* object = nullptr;
  if (delta && delta->is_object()) {
    if (part.starts_with("replaced/")) {
      auto* replaced = delta->as_object().if_contains("replaced");
      std::size_t n = 0;
      const auto digits = part.substr(9);
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      if (replaced && replaced->is_array() && ec == std::errc{} && end == digits.data() + digits.size() &&
          n < replaced->as_array().size())
        object = &replaced->as_array()[n];
    } else {
      object = delta->as_object().if_contains(part);
    }
  }
  if (!object || !object->is_object())
    return make_error(errc::invalid_record, "history entry " + file_name + " has no delta " + std::string(part));
  auto& o = object->as_object();
  if (deleted_at) {
    o["deleted_at"] = *deleted_at;
    o.erase("deletion_error");
  } else {
    o["deletion_error"] = error ? boost::json::value(*error) : boost::json::value(nullptr);
  }
  return write_json_at(dir_fd->get(), file_name, *body);
}

Result<std::size_t> HistoryStore::prune(core::HistoryDir dir, std::size_t keep) {
  std::lock_guard lock(mu_);
  const auto all = load_entries(dir_path(dir));
  const auto doomed = core::prunable(all, keep);
  if (doomed.empty()) return std::size_t{0};
  auto dir_fd = open_root_dir(dir_path(dir));
  if (!dir_fd) return dir_fd.error();
  for (const auto i : doomed)
    if (::unlinkat(dir_fd->get(), all[i].file_name.c_str(), 0) != 0 && errno != ENOENT)
      return os_error(errno, "remove history entry " + all[i].file_name);
  // The sequence survives: it continues from the newest entry, which is never pruned.
  if (auto r = fsync_dir(dir_fd->get()); !r) return r.error();
  return doomed.size();
}

}  // namespace carsync::io
