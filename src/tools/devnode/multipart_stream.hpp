#pragma once
// add_file's multipart/form-data body, read as it streams in: the `file` part's bytes go to a
// sink the moment they are known not to be part of a delimiter, so devnode writes an upload
// once (no spool). Sans-I/O: feed() takes the body in pieces split anywhere, even inside a
// delimiter. Same reading as find_file_part (request_parse.hpp), plus the closing delimiter
// "--BOUNDARY--" is required: a body that ends without it is malformed.
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace carsync::net {

class MultipartStream {
 public:
  enum class Status {
    ok,           // so far so good (after finish(): a complete body)
    malformed,    // not multipart/form-data with this boundary
    too_large,    // a part other than `file` (kept in memory) or a part's headers over their cap
    sink_failed,  // the file sink returned false (e.g. a write error)
  };
  struct Limits {
    std::size_t max_header_bytes = 16 * 1024;    // one part's header block
    std::size_t max_field_bytes = 1024 * 1024;   // one part other than `file`, held in fields()
  };
  using Sink = std::function<bool(std::string_view)>;

  // `boundary`: the Content-Type's boundary parameter (empty: every body is malformed).
  MultipartStream(std::string boundary, Limits limits, Sink file_sink);

  // The next piece of the body. After a status other than ok, the rest is ignored and that
  // status stays.
  Status feed(std::string_view bytes);
  // The end of the body: malformed unless the closing delimiter was read.
  Status finish();
  Status status() const noexcept { return status_; }

  // The first part named "file": seen (its bytes went to the sink), and its filename
  // ("file" when none). Complete only once finish() returned ok.
  bool has_file() const noexcept { return has_file_; }
  const std::string& filename() const noexcept { return filename_; }
  // The other parts' contents by name (e.g. "body": the SDK's JSON options).
  const std::map<std::string, std::string>& fields() const noexcept { return fields_; }

 private:
  enum class State { preamble, after_delimiter, headers, content, done };
  enum class Target { file, field, discard };
  // Consumes what it can of `in`; returns how many bytes (the rest waits for more input).
  std::size_t step(std::string_view in);
  bool emit(std::string_view bytes);
  void start_part(std::string_view headers);

  std::string first_delimiter_;  // "--" boundary (the body's start or after a preamble)
  std::string delimiter_;        // CRLF "--" boundary (every later one)
  Limits limits_;
  Sink sink_;
  std::string pending_;  // bytes not consumed yet: a possible delimiter start, or a header block
  State state_ = State::preamble;
  Target target_ = Target::discard;
  std::string* field_ = nullptr;
  Status status_ = Status::ok;
  bool has_file_ = false;
  std::string filename_;
  std::map<std::string, std::string> fields_;
};

}  // namespace carsync::net
