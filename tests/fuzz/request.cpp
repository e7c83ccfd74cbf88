// request.json as an application writes it (spec §7): parsing, shape rules and path
// resolution against the consumer's mounts, offline and online.
#include "core/request.hpp"

#include "fuzz_support.hpp"

#include <boost/json/serialize.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace carsync;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto mounts = fuzz::sample_mounts("/var/lib/edge/inst");
  static const core::MountPolicy policy;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (bool online : {false, true}) {
    core::RequestContext ctx{mounts, &policy, online};
    auto r = core::parse_request(bytes, ctx);
    if (r) {
      // What the provider publishes from an accepted request must serialise.
      (void)boost::json::serialize(r->normalised());
    } else {
      (void)boost::json::serialize(r.error().request);
      (void)boost::json::serialize(r.error().archive_paths);
    }
  }
  return 0;
}
