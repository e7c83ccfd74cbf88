#include "io/apply_journal.hpp"

#include "io/atomic_json.hpp"
#include "io/secure_fs.hpp"
#include "io/unique_fd.hpp"

#include <boost/json.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <limits>

namespace carsync::io {
namespace {

namespace json = boost::json;

std::filesystem::path dir_of(const std::filesystem::path& file) {
  return file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
}

constexpr std::int64_t journal_format = 1;
// A journal lists every path of a plan; the cap only stops a corrupt file from exhausting
// memory (a million entries stay well below it).
constexpr std::size_t max_journal_bytes = 512u << 20;

std::string_view phase_name(JournalPhase p) { return p == JournalPhase::committed ? "committed" : "prepared"; }

json::object path_json(std::size_t volume, const std::string& rel) {
  json::object o;
  o["volume"] = volume;
  o["rel"] = rel;
  return o;
}

json::value to_json(const ApplyJournal& j) {
  json::object o;
  o["format"] = journal_format;
  o["apply_id"] = j.apply_id;
  o["cid"] = j.cid;
  o["phase"] = phase_name(j.phase);
  o["durability"] = j.fsync_each ? "fsync_each" : "syncfs";
  json::array volumes;
  for (const auto& v : j.volumes) volumes.emplace_back(v);
  o["volumes"] = std::move(volumes);

  json::array files;
  for (const auto& f : j.files) {
    auto e = path_json(f.volume, f.rel);
    e["temp"] = f.temp;
    files.emplace_back(std::move(e));
  }
  o["files"] = std::move(files);

  json::array dirs;
  for (const auto& d : j.dirs) {
    auto e = path_json(d.volume, d.rel);
    e["mode"] = static_cast<std::int64_t>(d.mode);
    e["mtime_sec"] = d.mtime_sec;
    e["mtime_nsec"] = d.mtime_nsec;
    dirs.emplace_back(std::move(e));
  }
  o["dirs"] = std::move(dirs);

  for (const auto& [key, list] : {std::pair{"created_dirs", &j.created_dirs}, std::pair{"removals", &j.removals}}) {
    json::array a;
    for (const auto& p : *list) a.emplace_back(path_json(p.volume, p.rel));
    o[key] = std::move(a);
  }
  return o;
}

// Parsing: every accessor fails with one message naming the field, so a corrupt journal is
// reported precisely and never half-trusted.
class Reader {
 public:
  explicit Reader(const std::filesystem::path& file) : file_(file) {}

  Error bad(std::string_view what) const {
    return make_error(errc::io_failure, "corrupt apply journal " + file_.string() + ": " + std::string(what));
  }

  Result<const json::value*> field(const json::object& o, std::string_view key) const {
    const auto* v = o.if_contains(key);
    if (!v) return bad("missing '" + std::string(key) + "'");
    return v;
  }
  Result<std::string> string(const json::object& o, std::string_view key) const {
    auto v = field(o, key);
    if (!v) return v.error();
    if (!(*v)->is_string()) return bad("'" + std::string(key) + "' is not a string");
    return std::string((*v)->get_string());
  }
  Result<std::int64_t> integer(const json::object& o, std::string_view key) const {
    auto v = field(o, key);
    if (!v) return v.error();
    if (!(*v)->is_int64()) {
      constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
      if ((*v)->is_uint64() && (*v)->get_uint64() <= max) return static_cast<std::int64_t>((*v)->get_uint64());
      return bad("'" + std::string(key) + "' is not an integer");
    }
    return (*v)->get_int64();
  }
  Result<const json::array*> array(const json::object& o, std::string_view key) const {
    auto v = field(o, key);
    if (!v) return v.error();
    if (!(*v)->is_array()) return bad("'" + std::string(key) + "' is not an array");
    return &(*v)->get_array();
  }

  // {"volume", "rel"} with the volume index in range and a clean relative path.
  Result<JournalPath> path(const json::value& v, std::size_t volume_count) const {
    if (!v.is_object()) return bad("path entry is not an object");
    const auto& o = v.get_object();
    auto volume = integer(o, "volume");
    if (!volume) return volume.error();
    if (*volume < 0 || static_cast<std::uint64_t>(*volume) >= volume_count) return bad("volume index out of range");
    auto rel = string(o, "rel");
    if (!rel) return rel.error();
    if (!is_clean_rel(*rel)) return bad("unclean path '" + *rel + "'");
    return JournalPath{static_cast<std::size_t>(*volume), std::move(*rel)};
  }

 private:
  const std::filesystem::path& file_;
};

Result<ApplyJournal> from_json(const json::value& v, const std::filesystem::path& file) {
  const Reader r(file);
  if (!v.is_object()) return r.bad("not an object");
  const auto& o = v.get_object();
  ApplyJournal j;

  auto format = r.integer(o, "format");
  if (!format) return format.error();
  if (*format != journal_format) return r.bad("unsupported format " + std::to_string(*format));

  auto id = r.string(o, "apply_id");
  if (!id) return id.error();
  if (id->empty() || id->find_first_not_of("0123456789abcdef") != std::string::npos) return r.bad("bad apply_id");
  j.apply_id = std::move(*id);

  auto cid = r.string(o, "cid");
  if (!cid) return cid.error();
  j.cid = std::move(*cid);

  auto phase = r.string(o, "phase");
  if (!phase) return phase.error();
  if (*phase == "prepared") j.phase = JournalPhase::prepared;
  else if (*phase == "committed") j.phase = JournalPhase::committed;
  else return r.bad("unknown phase '" + *phase + "'");

  auto durability = r.string(o, "durability");
  if (!durability) return durability.error();
  j.fsync_each = *durability == "fsync_each";

  auto volumes = r.array(o, "volumes");
  if (!volumes) return volumes.error();
  for (const auto& e : **volumes) {
    if (!e.is_string() || e.get_string().empty() || e.get_string()[0] != '/') return r.bad("bad volume root");
    j.volumes.emplace_back(e.get_string());
  }
  const auto nvol = j.volumes.size();

  auto files = r.array(o, "files");
  if (!files) return files.error();
  // Only names this apply created may ever be deleted by recovery: a temp must carry the id.
  const std::string temp_mark = ".carsync-" + j.apply_id;
  for (const auto& e : **files) {
    auto p = r.path(e, nvol);
    if (!p) return p.error();
    auto temp = r.string(e.get_object(), "temp");
    if (!temp) return temp.error();
    if (p->rel.empty() || temp->find('/') != std::string::npos || temp->find(temp_mark) == std::string::npos ||
        !temp->ends_with(".tmp"))
      return r.bad("bad temp name '" + *temp + "'");
    j.files.push_back({p->volume, std::move(p->rel), std::move(*temp)});
  }

  auto dirs = r.array(o, "dirs");
  if (!dirs) return dirs.error();
  for (const auto& e : **dirs) {
    auto p = r.path(e, nvol);
    if (!p) return p.error();
    const auto& eo = e.get_object();
    auto mode = r.integer(eo, "mode");
    auto sec = r.integer(eo, "mtime_sec");
    auto nsec = r.integer(eo, "mtime_nsec");
    if (!mode || !sec || !nsec) return !mode ? mode.error() : !sec ? sec.error() : nsec.error();
    if (*mode < 0 || *mode > 07777 || *nsec < 0 || *nsec >= 1'000'000'000) return r.bad("bad directory metadata");
    j.dirs.push_back({p->volume, std::move(p->rel), static_cast<mode_t>(*mode), *sec, *nsec});
  }

  for (const auto& [key, list] : {std::pair{"created_dirs", &j.created_dirs}, std::pair{"removals", &j.removals}}) {
    auto a = r.array(o, key);
    if (!a) return a.error();
    for (const auto& e : **a) {
      auto p = r.path(e, nvol);
      if (!p) return p.error();
      // Neither a created directory nor a mirror removal can be the volume root.
      if (p->rel.empty()) return r.bad(std::string(key) + " names a volume root");
      list->push_back(std::move(*p));
    }
  }
  return j;
}

}  // namespace

bool is_clean_rel(std::string_view rel) noexcept {
  if (rel.empty()) return true;
  if (rel.find('\0') != std::string_view::npos) return false;  // would cut the path short in a syscall
  while (true) {
    const auto slash = rel.find('/');
    const auto part = rel.substr(0, slash);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string_view::npos) return true;
    rel.remove_prefix(slash + 1);
  }
}

Result<void> write_journal(const std::filesystem::path& file, const ApplyJournal& journal) {
  return write_json_file(file, to_json(journal));
}

Result<std::optional<ApplyJournal>> read_journal(const std::filesystem::path& file) {
  if (!journal_exists(file)) return std::optional<ApplyJournal>{};
  auto dir = open_root_dir(dir_of(file));
  if (!dir) return dir.error();
  auto v = read_json_at(dir->get(), file.filename().native(), max_journal_bytes);
  if (!v) {
    if (v.error().code == make_error_code(errc::not_found)) return std::optional<ApplyJournal>{};
    return make_error(errc::io_failure, "cannot read apply journal " + file.string() + ": " + v.error().message);
  }
  auto j = from_json(*v, file);
  if (!j) return j.error();
  return std::optional<ApplyJournal>(std::move(*j));
}

Result<void> remove_journal(const std::filesystem::path& file) {
  auto dir = open_root_dir(dir_of(file));
  if (!dir) {
    if (dir.error().code == make_error_code(errc::not_found)) return {};
    return dir.error();
  }
  if (::unlinkat(dir->get(), file.filename().c_str(), 0) != 0) {
    if (errno == ENOENT) return {};
    return os_error(errno, "remove apply journal " + file.string());
  }
  return fsync_dir(dir->get());
}

bool journal_exists(const std::filesystem::path& file) {
  struct stat st {};
  return ::lstat(file.c_str(), &st) == 0;
}

}  // namespace carsync::io
