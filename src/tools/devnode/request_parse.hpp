#pragma once
// devnode's reading of a request from a client (tests, SDKs, other hosts): the route and
// query of the request target, and the `file` part of an add_file multipart body. Pure
// functions over the bytes received, apart from the server's I/O so that they can be fuzzed.
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace carsync::net {

// "/hget?hkey=a&key=b" -> route "hget", query {hkey: a, key: b} ('+' is a space). A target
// that is not origin-form leaves both empty (the route then matches nothing: 404).
struct RequestTarget {
  std::string route;
  std::map<std::string, std::string> query;
};
RequestTarget parse_request_target(std::string_view target);

// A parameter of a Content-Disposition or Content-Type header, unquoted ("" when absent).
std::string header_param(std::string_view header, std::string_view name);

// The `file` part of a multipart/form-data body whose Content-Type is `content_type`:
// its filename ("file" when none) and its bytes (a view into `body`). nullopt when there is
// no such part or the body is malformed. Parts may come in any order (§8).
struct MultipartFile {
  std::string filename;
  std::string_view content;
};
std::optional<MultipartFile> find_file_part(std::string_view body, std::string_view content_type);

}  // namespace carsync::net
