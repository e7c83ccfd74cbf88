// A record / manifest read from ChainStore (written by any provider, spec §8.3): validation
// against the consumer's mounts, and its delta field (written by any provider too): whatever
// record_delta accepts writes back to a field it reads the same.
#include "core/delta_record.hpp"
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
  auto delta = core::record_delta(v);
  if (delta && *delta) {
    const boost::json::value again = boost::json::object{{"delta", core::to_json(**delta)}};
    auto back = core::record_delta(again);
    if (!back || !*back || (*back)->serial != (*delta)->serial || !((*back)->index == (*delta)->index) ||
        (*back)->packs.size() != (*delta)->packs.size())
      __builtin_trap();
  }
  return 0;
}
