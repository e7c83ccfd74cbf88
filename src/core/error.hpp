#pragma once
// carsync's error category and Result (public: carsync/error.hpp), plus OS-call failures.
#include "carsync/error.hpp"

#include <string_view>

namespace carsync {

// Failure of an OS call, with the call's context: "<what>: <strerror>".
Error os_error(int err, std::string_view what);

}  // namespace carsync
