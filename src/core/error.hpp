#pragma once
// Expected outcomes of carsync operations: an error_code of our own category plus the
// human text the spec requires verbatim in response.json / .invalid / logs.
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
  bad_config,            // configuration rejected
  cancelled,             // shutdown interrupted the operation
};

const boost::system::error_category& carsync_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), carsync_category()};
}

// One failure: the machine-readable code and the exact text to report.
struct Error {
  boost::system::error_code code;
  std::string message;
};

inline Error make_error(errc e, std::string message) { return {make_error_code(e), std::move(message)}; }

// Failure of an OS call, with the call's context: "<what>: <strerror>".
Error os_error(int err, std::string_view what);

template <class T>
using Result = boost::system::result<T, Error>;

// Lets Result<T>::value() throw on a bug path (a value taken without checking).
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

}  // namespace carsync

template <>
struct boost::system::is_error_code_enum<carsync::errc> : std::true_type {};
