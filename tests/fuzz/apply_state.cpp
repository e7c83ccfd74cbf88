// The consumer's state files as read back after a restart: state/current_apply.json (halt
// and dedupe decisions) and history entries (ordering and retirement), any of which a crash
// or an operator may have left in any shape.
#include "core/apply_state.hpp"
#include "core/history.hpp"

#include <boost/json/parse.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

using namespace carsync;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  boost::system::error_code ec;
  auto v = boost::json::parse(std::string_view(reinterpret_cast<const char*>(data), size), ec);
  if (ec) return 0;

  // current_apply.json
  (void)core::is_halted(&v);
  (void)core::identity_of(v);
  const auto* obj = v.if_object();
  (void)core::dedupe_cid(&v, obj);
  (void)core::dedupe_cid(nullptr, obj);
  if (obj) (void)core::clear_halt(*obj, 1700000000.5);

  // History entries: an array of bodies, or one body, each also as the latest received.
  std::vector<core::HistoryEntry> entries;
  std::int64_t mtime = 1;
  auto add = [&](const boost::json::value& body) {
    if (const auto* o = body.if_object()) entries.push_back({"e.json", *o, mtime++});
  };
  if (const auto* arr = v.if_array())
    for (const auto& e : *arr) add(e);
  else
    add(v);
  for (const auto& e : entries) (void)core::dedupe_cid(&v, &e.body);
  core::sort_by_write_order(entries);
  (void)core::max_sequence(entries);
  (void)core::retirement_target(entries);
  return 0;
}
