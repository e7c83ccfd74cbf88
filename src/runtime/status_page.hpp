#pragma once
// The status page (`GET /` of the control API): one self-contained HTML document, no external
// assets. It is rendered with the node's current state on the server so that it reads without
// JavaScript; its inline script then keeps it live from `/v1/events` (docs/control-api.md),
// reading the JSON of runtime/status_json.hpp.
#include "carsync/status.hpp"

#include <string>
#include <string_view>

namespace carsync::runtime {

// now_seconds: the wall clock (seconds since the epoch) that ages ("12 s ago") are counted from.
std::string render_status_page(const NodeStatus& node, double now_seconds);

// &, <, >, " and ' as character references: text and attribute values alike.
std::string html_escape(std::string_view text);

}  // namespace carsync::runtime
