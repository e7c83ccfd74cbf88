// Names of the public status enums (carsync/status.hpp), for people and JSON.
#include "carsync/status.hpp"

namespace carsync {

std::string_view to_string(Phase p) noexcept {
  switch (p) {
    case Phase::starting: return "starting";
    case Phase::idle: return "idle";
    case Phase::disabled: return "disabled";
    case Phase::gated: return "gated";
    case Phase::stopping: return "stopping";
    case Phase::archiving: return "archiving";
    case Phase::uploading: return "uploading";
    case Phase::publishing: return "publishing";
    case Phase::downloading: return "downloading";
    case Phase::scanning: return "scanning";
    case Phase::applying: return "applying";
    case Phase::restarting: return "restarting";
    case Phase::finishing: return "finishing";
    case Phase::halted: return "halted";
    case Phase::removing: return "removing";
  }
  return "unknown";
}

bool moves_bytes(Phase p) noexcept {
  switch (p) {
    case Phase::archiving:
    case Phase::uploading:
    case Phase::downloading:
    case Phase::scanning:
    case Phase::applying: return true;
    default: return false;
  }
}

std::string_view to_string(Stage s) noexcept {
  switch (s) {
    case Stage::none: return "none";
    case Stage::config: return "config";
    case Stage::system_volume: return "system_volume";
    case Stage::validation: return "validation";
    case Stage::runtime_stop: return "runtime_stop";
    case Stage::archive_build: return "archive_build";
    case Stage::r1fs_upload: return "r1fs_upload";
    case Stage::chainstore_publish: return "chainstore_publish";
    case Stage::chainstore_fetch: return "chainstore_fetch";
    case Stage::r1fs_download: return "r1fs_download";
    case Stage::extract: return "extract";
    case Stage::commit: return "commit";
    case Stage::signature: return "signature";
    case Stage::recovery: return "recovery";
    case Stage::cancelled: return "cancelled";
  }
  return "unknown";
}

}  // namespace carsync
