#pragma once
// The checks the configuration file applies to an instance, for an InstanceConfig built by a
// program (Node::add_instance / update_instance): the same rules, the same field names.
#include "carsync/config.hpp"
#include "carsync/error.hpp"

#include <optional>
#include <string_view>

namespace carsync::core {

// nullopt when usable; else errc::bad_config with the message and Error::field naming the
// key (an InstanceConfig that already carries a parse error reports that error).
std::optional<Error> validate_instance(const InstanceConfig& ic);

}  // namespace carsync::core
