#include "core/instance_validation.hpp"

#include "core/signing_key.hpp"
#include "core/sync_config.hpp"

#include <cmath>
#include <string>

namespace carsync::core {

namespace {

Error bad(const InstanceConfig& ic, std::string field, std::string why) {
  return make_error(errc::bad_config, "instance \"" + ic.id + "\": " + field + " " + why, field);
}

Error field_error(std::string field, std::string why) {
  std::string message = field + " " + why;
  return make_error(errc::bad_config, std::move(message), std::move(field));
}

}  // namespace

std::optional<Error> validate_signing_and_trust(const InstanceConfig& ic) {
  if (ic.signing) {
    if (ic.sync.role == Role::consumer)
      return field_error("signing", "applies to providers only (SYNC.TYPE is \"consumer\"; a consumer lists keys in trust)");
    if (ic.signing->key_files.empty()) return field_error("signing.key_file", "must name at least one file");
    for (const auto& f : ic.signing->key_files)
      if (!f.is_absolute()) return field_error("signing.key_file", "must be an absolute path, got \"" + f.string() + "\"");
  }
  if (ic.trust) {
    if (ic.sync.role == Role::provider)
      return field_error("trust", "applies to consumers only (SYNC.TYPE is \"provider\"; a provider signs with signing.key_file)");
    if (ic.trust->keys.empty()) return field_error("trust.keys", "must list at least one public key (carsync keys show)");
    for (std::size_t i = 0; i < ic.trust->keys.size(); ++i)
      if (auto k = PublicKey::parse(ic.trust->keys[i]); !k)
        return field_error("trust.keys[" + std::to_string(i) + "]", "is not a valid public key: " + k.error().message);
  }
  return std::nullopt;
}

std::optional<Error> validate_instance(const InstanceConfig& ic) {
  if (!valid_instance_id(ic.id))
    return make_error(errc::bad_config,
                      "instance \"" + ic.id + "\": id must be 1-128 of [A-Za-z0-9._-], not starting with '.'", "id");
  if (ic.error) return make_error(errc::bad_config, *ic.error, ic.error_field);
  if (ic.container && ic.container->empty()) return bad(ic, "container", "must be a non-empty string or null");
  if (!ic.system_volume.is_absolute()) return bad(ic, "system_volume", "must be an absolute host path");
  if (ic.system_volume_image) {
    const auto& img = *ic.system_volume_image;
    if (!img.image_dir.is_absolute()) return bad(ic, "system_volume_image.dir", "must be an absolute path");
    if (img.size_bytes < (1u << 20) || img.size_bytes > (1ull << 30))
      return bad(ic, "system_volume_image.size_mib", "must be between 1 and 1024");
  }
  for (const auto& v : ic.volumes) {
    const std::string where = "volumes[\"" + v.host_root + "\"]";
    if (v.host_root.empty() || v.host_root.front() != '/') return bad(ic, where, "host root must be an absolute path");
    if (v.bind.empty()) return bad(ic, where + ".bind", "must be a non-empty string");
  }
  if (auto e = validate_signing_and_trust(ic)) return bad(ic, e->field, e->message.substr(e->field.size() + 1));
  const auto& s = ic.sync;
  if (!s.enabled) return std::nullopt;
  if (s.key.empty()) return bad(ic, "SYNC.KEY", "must be a non-empty string when SYNC.ENABLED");
  if (s.role != Role::provider && s.role != Role::consumer)
    return bad(ic, "SYNC.TYPE", "must be \"provider\" or \"consumer\" when SYNC.ENABLED");
  if (!std::isfinite(s.poll_interval) || s.poll_interval < 1) return bad(ic, "SYNC.POLL_INTERVAL", "must be >= 1");
  if (!std::isfinite(s.hsync_poll_interval) || s.hsync_poll_interval < 10)
    return bad(ic, "SYNC.HSYNC_POLL_INTERVAL", "must be >= 10");
  const bool zstd = s.archive_format == ArchiveFormat::tar_zst;
  if (s.compression_level < 1 || s.compression_level > (zstd ? 19 : 9))
    return bad(ic, "SYNC.COMPRESSION_LEVEL", zstd ? "must be 1-19 for tar.zst" : "must be 1-9 for tar.gz");
  if (s.initial_sync_timeout && (!std::isfinite(*s.initial_sync_timeout) || *s.initial_sync_timeout < 0))
    return bad(ic, "SYNC.INITIAL_SYNC_TIMEOUT", "must be a finite number >= 0");
  return std::nullopt;
}

}  // namespace carsync::core
