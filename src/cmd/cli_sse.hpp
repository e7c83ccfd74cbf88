#pragma once
// Server-Sent Events framing (the text/event-stream format of GET /v1/events): bytes in,
// whole events out. Pure: the caller feeds whatever chunks the socket delivered.
#include <string>
#include <string_view>
#include <vector>

namespace carsync::cmd {

struct SseEvent {
  std::string event = "message";  // the "event:" field, else the spec's default
  std::string id;
  std::string data;               // "data:" lines joined by '\n'
};

class SseParser {
 public:
  // Appends `bytes` and returns every event they completed (a blank line ends one).
  // Comment lines (": keep-alive") and unknown fields are skipped.
  std::vector<SseEvent> feed(std::string_view bytes);

 private:
  void line(std::string_view l, std::vector<SseEvent>& out);

  std::string partial_;  // an unfinished line
  SseEvent current_;
  bool has_data_ = false;
};

}  // namespace carsync::cmd
