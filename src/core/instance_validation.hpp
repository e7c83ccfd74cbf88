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

// The "signing" and "trust" blocks: signing only on a provider, trust only on a consumer
// (whatever SYNC.ENABLED says: a block that cannot apply is a mistake), at least one
// absolute key file, at least one trusted key and each a valid public key text. The message
// names the field without the instance prefix ("trust.keys[1]: public key check failed...").
std::optional<Error> validate_signing_and_trust(const InstanceConfig& ic);

}  // namespace carsync::core
