#include "core/error.hpp"

#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>

#include <cstring>

namespace carsync {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "carsync"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::invalid_request: return "invalid request";
      case errc::unsafe_control_file: return "unsafe control file";
      case errc::path_rejected: return "path rejected";
      case errc::not_found: return "not found";
      case errc::symlink_rejected: return "symlink rejected";
      case errc::not_regular: return "not a regular file or directory";
      case errc::escapes_root: return "path escapes volume root";
      case errc::io_failure: return "I/O failure";
      case errc::store_failure: return "store failure";
      case errc::no_cid: return "content store returned no CID";
      case errc::not_acknowledged: return "write not acknowledged";
      case errc::runtime_stop_failed: return "container stop not confirmed";
      case errc::runtime_unavailable: return "container runtime unavailable";
      case errc::timeout: return "deadline exceeded";
      case errc::corrupt_archive: return "corrupt archive";
      case errc::limit_exceeded: return "limit exceeded";
      case errc::invalid_record: return "invalid sync record";
      case errc::bad_config: return "bad configuration";
      case errc::cancelled: return "cancelled";
      case errc::unknown_instance: return "unknown instance";
      case errc::duplicate_instance: return "duplicate instance";
      case errc::wrong_role: return "wrong role for this operation";
      case errc::not_running: return "node not running";
      case errc::busy: return "instance busy";
      case errc::data_dir_locked: return "data directory locked by another process";
      case errc::system_volume_unavailable: return "system volume unavailable";
    }
    return "unknown carsync error";
  }
};

}  // namespace

const boost::system::error_category& carsync_category() noexcept {
  static const category instance;
  return instance;
}

Error os_error(int err, std::string_view what) {
  std::string text(what);
  text += ": ";
  text += std::strerror(err);
  return Error{.code = boost::system::error_code(err, boost::system::system_category()), .message = std::move(text)};
}

void throw_exception_from_error(const Error& e, const boost::source_location& loc) {
  boost::throw_exception(boost::system::system_error(e.code, e.message), loc);
}

}  // namespace carsync
