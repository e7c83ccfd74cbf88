#include "tools/devnode/multipart_stream.hpp"

#include "tools/devnode/request_parse.hpp"

#include <strings.h>

#include <algorithm>
#include <cstring>

namespace carsync::net {

namespace {

// Where `needle` starts in `hay`, or npos. glibc's memmem is a two-way search: linear, and
// fast on the long runs of upload bytes that hold no delimiter.
std::size_t find(std::string_view hay, std::string_view needle) {
  const void* p = ::memmem(hay.data(), hay.size(), needle.data(), needle.size());
  return p ? static_cast<std::size_t>(static_cast<const char*>(p) - hay.data()) : std::string_view::npos;
}

// The longest tail of `in` that a delimiter may start with (shorter than the delimiter):
// those bytes must wait for the next piece before they can be called content.
std::size_t held_back(std::string_view in, std::string_view delimiter) {
  for (std::size_t k = std::min(in.size(), delimiter.size() - 1); k > 0; --k)
    if (in.substr(in.size() - k) == delimiter.substr(0, k)) return k;
  return 0;
}

}  // namespace

MultipartStream::MultipartStream(std::string boundary, Limits limits, Sink file_sink)
    : first_delimiter_("--" + boundary),
      delimiter_("\r\n--" + boundary),
      limits_(limits),
      sink_(std::move(file_sink)) {
  if (boundary.empty()) status_ = Status::malformed;
}

MultipartStream::Status MultipartStream::feed(std::string_view bytes) {
  if (status_ != Status::ok) return status_;
  if (pending_.empty()) {
    // The usual case: nothing held back, the piece is read in place (no copy).
    const auto used = step(bytes);
    if (status_ == Status::ok) pending_.assign(bytes.substr(used));
  } else {
    pending_.append(bytes);
    const auto used = step(pending_);
    pending_.erase(0, used);
  }
  return status_;
}

MultipartStream::Status MultipartStream::finish() {
  if (status_ == Status::ok && state_ != State::done) status_ = Status::malformed;
  return status_;
}

std::size_t MultipartStream::step(std::string_view in) {
  std::size_t used = 0;
  while (status_ == Status::ok && used < in.size()) {
    const std::string_view v = in.substr(used);
    switch (state_) {
      case State::preamble: {
        const auto p = find(v, first_delimiter_);
        if (p == std::string_view::npos) return used + v.size() - held_back(v, first_delimiter_);
        used += p + first_delimiter_.size();
        state_ = State::after_delimiter;
        break;
      }
      case State::after_delimiter:
        if (v.size() < 2) return used;
        if (v.starts_with("--")) {
          used += 2;
          state_ = State::done;
        } else if (v.starts_with("\r\n")) {
          state_ = State::headers;  // the CRLF stays: an empty header block is "\r\n\r\n"
        } else {
          status_ = Status::malformed;
        }
        break;
      case State::headers: {
        const auto end = v.find("\r\n\r\n");
        if (end == std::string_view::npos) {
          if (v.size() > limits_.max_header_bytes + 4) status_ = Status::too_large;
          return used;
        }
        const auto headers = end == 0 ? std::string_view{} : v.substr(2, end - 2);
        if (headers.size() > limits_.max_header_bytes) {
          status_ = Status::too_large;
          return used;
        }
        start_part(headers);
        used += end + 4;
        state_ = State::content;
        break;
      }
      case State::content: {
        const auto p = find(v, delimiter_);
        if (p == std::string_view::npos) {
          const auto n = v.size() - held_back(v, delimiter_);
          emit(v.substr(0, n));
          return used + n;
        }
        emit(v.substr(0, p));
        used += p + delimiter_.size();
        state_ = State::after_delimiter;
        break;
      }
      case State::done:  // the epilogue: ignored
        return in.size();
    }
  }
  return used;
}

bool MultipartStream::emit(std::string_view bytes) {
  if (bytes.empty() || status_ != Status::ok) return status_ == Status::ok;
  switch (target_) {
    case Target::file:
      if (!sink_(bytes)) status_ = Status::sink_failed;
      break;
    case Target::field:
      if (field_->size() + bytes.size() > limits_.max_field_bytes) status_ = Status::too_large;
      else field_->append(bytes);
      break;
    case Target::discard:
      break;
  }
  return status_ == Status::ok;
}

void MultipartStream::start_part(std::string_view headers) {
  std::string disposition;
  for (std::size_t line = 0; line < headers.size();) {
    const auto eol = headers.find("\r\n", line);
    const auto h = headers.substr(line, eol == std::string_view::npos ? std::string_view::npos : eol - line);
    if (h.size() > 20 && ::strncasecmp(h.data(), "content-disposition:", 20) == 0) disposition = std::string(h.substr(20));
    if (eol == std::string_view::npos) break;
    line = eol + 2;
  }
  const auto name = header_param(disposition, "name");
  if (name == "file") {
    // Only the first `file` part is the upload; a second one is read past.
    target_ = has_file_ ? Target::discard : Target::file;
    if (!has_file_) {
      has_file_ = true;
      filename_ = header_param(disposition, "filename");
      if (filename_.empty()) filename_ = "file";
    }
    return;
  }
  field_ = &fields_[name];
  field_->clear();
  target_ = Target::field;
}

}  // namespace carsync::net
