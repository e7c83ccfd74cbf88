#pragma once
// What the Docker client reads from the engine's reply bodies: pure functions over the bytes
// the engine sent, apart from the client's socket I/O so that they can be tested and fuzzed.
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace carsync::net {

// "1.41" -> {1, 41}; nullopt for anything else.
std::optional<std::pair<int, int>> parse_api_version(std::string_view v);
// The engine's reason for a failed call: its {"message": ...} body, else the raw text.
std::string engine_reason(unsigned status, std::string_view body);
// GET /version: the ApiVersion the engine speaks.
std::optional<std::pair<int, int>> version_reply_api(std::string_view body);
// GET /containers/X/json: State.Running.
std::optional<bool> inspect_reply_running(std::string_view body);
// POST /containers/create: the new container's Id.
std::optional<std::string> create_reply_id(std::string_view body);

}  // namespace carsync::net
