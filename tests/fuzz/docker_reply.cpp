// A reply body from the Docker Engine (net/docker_reply): version, inspect, create, and the
// error reason every failed call quotes.
#include "net/docker_reply.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace carsync;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  (void)net::engine_reason(500, body);
  (void)net::version_reply_api(body);
  (void)net::inspect_reply_running(body);
  (void)net::create_reply_id(body);
  (void)net::parse_api_version(body);
  return 0;
}
