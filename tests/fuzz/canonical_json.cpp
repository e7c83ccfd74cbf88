// Record text from the store as a consumer verifies it: the duplicate-key check, the parse
// and RFC 8785 canonicalisation. Property: the canonical text of a value parses back to a
// value with the same canonical text (what a signature covers must not drift), and holds no
// repeated key.
#include "core/canonical_json.hpp"
#include "core/json_text.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace carsync;

namespace {

[[noreturn]] void fail(const char* what, const std::string& a, const std::string& b) {
  std::fprintf(stderr, "canonical_json property broken: %s\n  first:  %s\n  second: %s\n", what, a.c_str(), b.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)core::check_unique_keys(text);
  auto v = core::parse_json_python(text);
  if (!v) return 0;
  auto canonical = core::canonical_json(*v);
  if (!canonical) return 0;  // NaN, an inexact integer: refused, never signed
  if (!core::check_unique_keys(*canonical)) fail("repeated key in canonical text", *canonical, "");
  auto again = core::parse_json(*canonical);
  if (!again) fail("canonical text does not parse", *canonical, again.error().message);
  auto canonical_again = core::canonical_json(*again);
  if (!canonical_again) fail("canonical text's value cannot be canonicalised", *canonical, canonical_again.error().message);
  if (*canonical_again != *canonical) fail("canonical text changed", *canonical, *canonical_again);
  return 0;
}
