#include "runtime/delta_publish.hpp"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <string>
#include <system_error>

namespace carsync::runtime {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

core::FrameCodec codec_of(ArchiveFormat f) noexcept {
  return f == ArchiveFormat::tar_zst ? core::FrameCodec::zstd : core::FrameCodec::gzip;
}

fs::path index_path(const InstanceContext& ctx, std::uint64_t serial) {
  return delta_dir(ctx) / ("index-" + std::to_string(serial));
}

}  // namespace

fs::path delta_dir(const InstanceContext& ctx) { return ctx.state_dir / "delta"; }

std::uint64_t delta_serial_of(const core::HistoryEntry& e) noexcept {
  const json::value* d = e.body.if_contains("delta");
  const json::value* s = d && d->is_object() ? d->get_object().if_contains("serial") : nullptr;
  if (s && s->is_uint64()) return s->get_uint64();
  if (s && s->is_int64() && s->get_int64() > 0) return static_cast<std::uint64_t>(s->get_int64());
  return 0;
}

Result<std::optional<PreparedDelta>> prepare_delta(const InstanceContext& ctx, const SealedArchive& archive) {
  const auto& sync = ctx.config.sync;
  if (!sync.delta || archive.frames.empty() || archive.plain_size < sync.delta_min_bytes)
    return std::optional<PreparedDelta>{};
  const auto entries = ctx.history.entries(core::HistoryDir::sent);  // oldest -> newest
  // Serials only grow: the next is past every one history knows. The base is the newest
  // entry with a delta (an adopted upload without one does not break the chain).
  std::uint64_t last = 0, base_serial = 0;
  for (const auto& e : entries) {
    const auto s = delta_serial_of(e);
    if (s > last) last = s;
    if (s) base_serial = s;
  }
  PreparedDelta out;
  out.serial = last + 1;
  const auto codec = codec_of(sync.archive_format);

  std::optional<core::DeltaIndex> previous;
  if (base_serial) {
    auto prev = io::read_index(index_path(ctx, base_serial), std::nullopt);
    if (prev && prev->serial == base_serial && prev->codec == codec) previous = std::move(*prev);
    else
      spdlog::info("[{}] provider: delta base {} unusable ({}): every frame of this version goes into its pack",
                   ctx.config.id, base_serial, prev ? "another codec" : prev.error().message);
  }
  const auto version = core::plan_version(archive.frames, previous ? &*previous : nullptr, out.serial, codec,
                                          archive.sha256);
  out.new_frames = version.pack.size();

  std::error_code ec;
  fs::create_directories(delta_dir(ctx), ec);
  if (ec) return os_error(ec.value(), "create " + delta_dir(ctx).string());
  const auto bytes = core::encode_index(version.index);
  // The kept copy: the next version's base. A failed attempt may have left one of this serial.
  const auto kept = index_path(ctx, out.serial);
  fs::remove(kept, ec);
  if (auto w = io::write_file_sealed(kept, bytes, true); !w) return w.error();
  const auto tag = std::to_string(out.serial) + "_" + std::to_string(::getpid());
  out.index_file = ctx.scratch_dir / ("delta_index_" + tag);
  fs::remove(out.index_file, ec);
  auto index = io::write_file_sealed(out.index_file, bytes, false);
  if (!index) return index.error();
  out.index = *index;

  // A pack holding most of the archive saves nothing over the archive: a consumer lacking
  // those frames fetches the archive instead, so none is uploaded.
  if (version.pack_size > 0 && version.pack_size * 2 <= archive.size) {
    out.pack_file = ctx.scratch_dir / ("delta_pack_" + tag);
    fs::remove(*out.pack_file, ec);
    auto pack = io::write_pack(archive.file, version.pack, *out.pack_file);
    if (!pack) {
      remove_prepared(out);
      return pack.error();
    }
    out.pack = *pack;
  }

  // The packs consumers may still need: those of the last K versions (this one included).
  const std::uint64_t k = sync.delta_versions;
  const std::uint64_t oldest = out.serial > k ? out.serial - k + 1 : 1;
  for (const auto& e : entries) {
    const auto s = delta_serial_of(e);
    if (s < oldest || s >= out.serial) continue;
    const json::value* pack = e.body.at("delta").get_object().if_contains("pack");
    if (!pack) continue;
    const json::value* deleted = pack->is_object() ? pack->get_object().if_contains("deleted_at") : nullptr;
    if (deleted && !deleted->is_null()) continue;
    auto obj = core::delta_object_from_json(*pack);
    if (!obj) continue;
    if (!out.earlier_packs.empty() && out.earlier_packs.back().serial >= s) continue;  // keep ascending
    out.earlier_packs.push_back(core::PackRef{.serial = s, .size = obj->size, .sha256 = obj->sha256,
                                              .cid = std::move(obj->cid)});
  }
  return std::optional<PreparedDelta>{std::move(out)};
}

DeltaFields delta_fields(const PreparedDelta& d, const std::string& index_cid, const std::optional<std::string>& pack_cid) {
  core::RecordDelta rec;
  rec.serial = d.serial;
  rec.index = core::DeltaObject{index_cid, d.index.size, d.index.sha256};
  rec.packs = d.earlier_packs;
  if (pack_cid) rec.packs.push_back(core::PackRef{.serial = d.serial, .size = d.pack.size, .sha256 = d.pack.sha256,
                                                  .cid = *pack_cid});
  json::array named;
  for (const auto& p : rec.packs) named.emplace_back(p.cid);
  json::object history{{"serial", d.serial}, {"index", core::to_json(rec.index)}, {"record_packs", std::move(named)}};
  if (pack_cid) history["pack"] = core::to_json(core::DeltaObject{*pack_cid, d.pack.size, d.pack.sha256});
  return DeltaFields{core::to_json(rec), std::move(history)};
}

void prune_provider_indexes(const InstanceContext& ctx, std::uint64_t serial) {
  const std::string keep = "index-" + std::to_string(serial);
  std::error_code ec;
  for (fs::directory_iterator it(delta_dir(ctx), ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    std::error_code ignored;
    if (name.starts_with("index-") && name != keep) fs::remove(it->path(), ignored);
  }
}

void remove_prepared(const PreparedDelta& d) noexcept {
  std::error_code ec;
  if (!d.index_file.empty()) fs::remove(d.index_file, ec);
  if (d.pack_file) fs::remove(*d.pack_file, ec);
}

}  // namespace carsync::runtime
