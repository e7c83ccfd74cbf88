#include "cmd/cli_sse.hpp"

namespace carsync::cmd {

std::vector<SseEvent> SseParser::feed(std::string_view bytes) {
  std::vector<SseEvent> out;
  partial_.append(bytes);
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = partial_.find_first_of("\r\n", start);
    if (end == std::string::npos) break;
    // "\r\n" is one line end; a lone '\r' at the buffer's end may still get its '\n'.
    if (partial_[end] == '\r' && end + 1 == partial_.size()) break;
    line(std::string_view(partial_).substr(start, end - start), out);
    start = end + 1;
    if (partial_[end] == '\r' && partial_[start] == '\n') ++start;
  }
  partial_.erase(0, start);
  return out;
}

void SseParser::line(std::string_view l, std::vector<SseEvent>& out) {
  if (l.empty()) {  // dispatch
    if (has_data_) out.push_back(std::move(current_));
    current_ = SseEvent{};
    has_data_ = false;
    return;
  }
  if (l.front() == ':') return;  // a comment: the server's keep-alive
  const std::size_t colon = l.find(':');
  std::string_view field = l.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : l.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "event") {
    current_.event = value;
  } else if (field == "data") {
    if (has_data_) current_.data += '\n';
    current_.data += value;
    has_data_ = true;
  } else if (field == "id") {
    current_.id = value;
  }
}

}  // namespace carsync::cmd
