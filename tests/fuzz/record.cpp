// A record / manifest read from ChainStore (written by any provider, spec §8.3): validation
// against the consumer's mounts.
#include "core/record.hpp"

#include "fuzz_support.hpp"

#include <boost/json/parse.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace carsync;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto mounts = fuzz::sample_mounts("/var/lib/edge/inst");
  static const core::MountPolicy policy;
  boost::system::error_code ec;
  auto v = boost::json::parse(std::string_view(reinterpret_cast<const char*>(data), size), ec);
  if (ec) return 0;
  (void)core::validate_record(v, mounts, policy);
  (void)core::validate_manifest(v, mounts, policy);
  return 0;
}
