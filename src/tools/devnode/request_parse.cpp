#include "tools/devnode/request_parse.hpp"

#include <boost/url/parse.hpp>

#include <strings.h>

namespace carsync::net {

RequestTarget parse_request_target(std::string_view target) {
  RequestTarget out;
  auto parsed = boost::urls::parse_origin_form(target);
  if (!parsed) return out;
  out.route = std::string(parsed->path());
  if (out.route.starts_with('/')) out.route.erase(0, 1);
  boost::urls::encoding_opts opt;
  opt.space_as_plus = true;
  for (auto param : parsed->params(opt)) out.query.emplace(param.key, param.value);
  return out;
}

std::string header_param(std::string_view header, std::string_view name) {
  std::string key = std::string(name) + "=";
  for (std::size_t pos = 0; (pos = header.find(key, pos)) != std::string_view::npos; pos += key.size()) {
    if (pos > 0 && header[pos - 1] != ' ' && header[pos - 1] != ';' && header[pos - 1] != '\t') continue;
    std::string_view rest = header.substr(pos + key.size());
    if (!rest.empty() && rest[0] == '"') {
      auto end = rest.find('"', 1);
      return std::string(rest.substr(1, end == std::string_view::npos ? std::string_view::npos : end - 1));
    }
    return std::string(rest.substr(0, rest.find(';')));
  }
  return {};
}

std::optional<MultipartFile> find_file_part(std::string_view data, std::string_view content_type) {
  std::string boundary = header_param(content_type, "boundary");
  if (boundary.empty()) return std::nullopt;
  const std::string delimiter = "--" + boundary;
  const std::string next_delimiter = "\r\n" + delimiter;
  auto pos = data.find(delimiter);
  if (pos == std::string_view::npos) return std::nullopt;
  pos += delimiter.size();
  while (pos + 2 <= data.size() && data.substr(pos, 2) != "--") {
    if (data.substr(pos, 2) != "\r\n") return std::nullopt;
    auto headers_end = data.find("\r\n\r\n", pos);
    if (headers_end == std::string_view::npos) return std::nullopt;
    // "\r\n\r\n" right after the delimiter: an empty header block (not pos + 2 - 2 bytes back).
    const std::string_view headers =
        headers_end == pos ? std::string_view{} : data.substr(pos + 2, headers_end - pos - 2);
    auto content_start = headers_end + 4;
    auto content_end = data.find(next_delimiter, content_start);
    if (content_end == std::string_view::npos) return std::nullopt;

    std::string disposition;
    for (std::size_t line = 0; line < headers.size();) {
      auto eol = headers.find("\r\n", line);
      std::string_view h = headers.substr(line, eol == std::string_view::npos ? std::string_view::npos : eol - line);
      if (h.size() > 20 && strncasecmp(h.data(), "content-disposition:", 20) == 0) disposition = std::string(h.substr(20));
      if (eol == std::string_view::npos) break;
      line = eol + 2;
    }
    if (header_param(disposition, "name") == "file") {
      auto name = header_param(disposition, "filename");
      return MultipartFile{name.empty() ? "file" : name, data.substr(content_start, content_end - content_start)};
    }
    pos = content_end + next_delimiter.size();
  }
  return std::nullopt;
}

}  // namespace carsync::net
