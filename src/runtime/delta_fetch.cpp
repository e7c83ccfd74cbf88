#include "runtime/delta_fetch.hpp"

#include "io/secure_fs.hpp"
#include "runtime/delta_publish.hpp"

#include <string>
#include <system_error>

namespace carsync::runtime {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view incoming_prefix = "incoming.";

Error mismatch(std::string text) { return Error{make_error_code(core::delta_errc::index_mismatch), std::move(text)}; }

}  // namespace

boost::json::object Transfer::to_json() const {
  boost::json::object o{{"mode", mode == core::FetchMode::delta ? "delta" : "full"},
                        {"fetched_bytes", fetched_bytes},
                        {"archive_bytes", archive_bytes}};
  if (!fallback.empty()) o["fallback"] = fallback;
  return o;
}

io::DeltaBase consumer_base(const InstanceContext& ctx) { return io::DeltaBase(delta_dir(ctx)); }

Result<DeltaPlanned> plan_delta(const InstanceContext& ctx, const core::RecordDelta& delta, const fs::path& index_file,
                                const io::Sha256Digest& archive_sha256, std::uint64_t archive_size) {
  auto index = io::read_index(index_file, io::ExpectedBytes{delta.index.size, delta.index.sha256});
  if (!index) return index.error();
  if (index->archive_sha256 != archive_sha256)
    return mismatch("delta index describes another archive (its archive SHA-256 differs from the record's)");
  if (index->archive_size != archive_size)
    return mismatch("delta index archive size " + std::to_string(index->archive_size) + " differs from the record's " +
                    std::to_string(archive_size));
  if (index->serial != delta.serial)
    return mismatch("delta index serial " + std::to_string(index->serial) + " differs from the record's " +
                    std::to_string(delta.serial));
  DeltaPlanned out;
  out.index = std::move(*index);
  out.base = consumer_base(ctx).load();
  out.plan = core::plan_fetch(out.base ? &out.base->index : nullptr, out.index, delta.packs);
  return out;
}

fs::path incoming_archive_path(const InstanceContext& ctx) {
  return delta_dir(ctx) / io::random_name(incoming_prefix, "");
}

void remove_stale_incoming(const InstanceContext& ctx) noexcept {
  std::error_code ec;
  for (fs::directory_iterator it(delta_dir(ctx), ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    std::error_code ignored;
    if (name != "base.archive" && name != "base.index") fs::remove_all(it->path(), ignored);
  }
}

}  // namespace carsync::runtime
