#pragma once
// carsync's one error category and its typed outcomes: an error code of our own category
// plus the human text (for people, and for the spec's response.json / .invalid fields).
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <type_traits>

namespace carsync {

enum class errc {
  invalid_request = 1,   // request body or fields rejected (stage validation)
  unsafe_control_file,   // symlink / FIFO / directory where a control file belongs
  path_rejected,         // §6.1/§6.2 shape or mount rule
  not_found,             // a capture source does not exist
  symlink_rejected,      // a symlink met while capturing or applying
  not_regular,           // a special file met while capturing
  escapes_root,          // a path resolved outside its volume root
  io_failure,            // an OS call failed (errno in the text)
  store_failure,         // content or key-value store refused or failed
  no_cid,                // content store answered without a CID
  not_acknowledged,      // hset answered with a falsy acknowledgement
  runtime_stop_failed,   // container stop not confirmed
  runtime_unavailable,   // no container to act on
  timeout,               // a deadline passed
  corrupt_archive,       // unreadable or malformed archive / compression stream
  limit_exceeded,        // a configured size or ratio cap was hit
  invalid_record,        // a published record or manifest failed validation
  bad_config,            // configuration rejected (Error::field names the key)
  cancelled,             // shutdown or removal interrupted the operation
  unknown_instance,      // no instance with that id
  duplicate_instance,    // an instance with that id exists already
  wrong_role,            // the operation needs another SYNC.TYPE (publish: provider)
  not_running,           // the node is stopping or stopped
  busy,                  // the instance has a request pending or in progress
  data_dir_locked,       // another process owns data_dir
  system_volume_unavailable,  // the system volume could not be provisioned (§2.1)
};

const boost::system::error_category& carsync_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), carsync_category()};
}

// One failure: the machine-readable code, the exact text to report and, for configuration
// errors, the dotted path of the offending key ("instances[2].volumes", "SYNC.KEY").
struct Error {
  boost::system::error_code code;
  std::string message;
  std::string field = {};
};

inline Error make_error(errc e, std::string message, std::string field = {}) {
  return Error{.code = make_error_code(e), .message = std::move(message), .field = std::move(field)};
}

template <class T>
using Result = boost::system::result<T, Error>;

// Lets Result<T>::value() throw on a bug path (a value taken without checking).
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

}  // namespace carsync

template <>
struct boost::system::is_error_code_enum<carsync::errc> : std::true_type {};
