// The node configuration file and one instance object (the supervisor/control API input):
// a bad file must end in ConfigError, never anything else.
#include "carsync/config.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace carsync;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  NodeConfig defaults;
  try {
    defaults = parse_node_config(text);
  } catch (const ConfigError&) {
  }
  try {
    (void)parse_instance_config(text, defaults);
  } catch (const ConfigError&) {
  }
  return 0;
}
