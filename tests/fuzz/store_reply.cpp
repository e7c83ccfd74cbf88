// A reply body from an R1FS or CStore node (net/store_reply): the JSON envelope, then each
// call's reading of its result, as the R1FS and CStore clients do.
#include "net/store_reply.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace carsync;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string what = "fuzz";
  auto result = net::envelope_result_of(std::string_view(reinterpret_cast<const char*>(data), size), what);
  if (!result) return 0;
  (void)net::add_file_cid(*result, what);
  (void)net::delete_file_outcome(*result, what);
  (void)net::hset_outcome(*result, what);
  (void)net::hsync_outcome(*result, what);
  (void)net::hgetall_outcome(std::move(*result), what);
  return 0;
}
