#include "cmd/log_format.hpp"

#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace carsync::cmd {
namespace {

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// The value after `key` at a word boundary ("cid=" in "x cid=abc," but not in "oldcid=").
// `value_char` says which characters the value is made of.
template <class Pred>
std::string_view value_after(std::string_view text, std::string_view key, Pred value_char) {
  for (std::size_t at = text.find(key); at != std::string_view::npos; at = text.find(key, at + 1)) {
    if (at > 0 && is_word_char(text[at - 1])) continue;
    std::size_t end = at + key.size();
    while (end < text.size() && value_char(text[end])) ++end;
    if (end > at + key.size()) return text.substr(at + key.size(), end - at - key.size());
  }
  return {};
}

bool is_stage_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }
// CIDs are base-encoded digests (base58/base32/hex): letters and digits, never punctuation,
// so "cid=abc," or "(cid=abc)" stop at the punctuation.
bool is_cid_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// Length of the valid UTF-8 sequence at s[i] (strict: no overlongs, no surrogates, nothing
// beyond U+10FFFF), 0 when there is none.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // beyond U+10FFFF
    return 4;
  }
  return 0;
}

void append_field(std::string& out, std::string_view key, std::string_view value) {
  out += ",\"";
  out += key;
  out += "\":";
  append_json_string(out, value);
}

}  // namespace

LogFields parse_log_message(std::string_view payload) {
  LogFields f;
  f.message = payload;
  if (payload.size() > 3 && payload.front() == '[') {
    const auto close = payload.find("] ");
    // An id never holds spaces or brackets: "[a b] x" or "[[x] y" is text, not a prefix.
    if (close != std::string_view::npos && close > 1) {
      const auto id = payload.substr(1, close - 1);
      if (id.find_first_of(" []") == std::string_view::npos) {
        f.instance = id;
        f.message = payload.substr(close + 2);
      }
    }
  }
  f.cid = value_after(f.message, "cid=", is_cid_char);
  f.stage = value_after(f.message, "stage=", is_stage_char);
  if (f.stage.empty()) f.stage = value_after(f.message, "stage ", is_stage_char);
  return f;
}

std::string utc_timestamp(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(t);
  const auto secs = floor<seconds>(ms);
  const std::time_t tt = system_clock::to_time_t(secs);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[40];
  const int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                              tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>((ms - secs).count()));
  return std::string(buf, static_cast<std::size_t>(n));
}

int syslog_priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical: return 2;  // SD_CRIT
    case spdlog::level::err: return 3;       // SD_ERR
    case spdlog::level::warn: return 4;      // SD_WARNING
    case spdlog::level::info: return 6;      // SD_INFO
    default: return 7;                       // SD_DEBUG: debug, trace
  }
}

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20 || c == 0x7F) {
      switch (c) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
      }
      ++i;
    } else if (const auto n = utf8_sequence(text, i); n > 0) {
      out.append(text.substr(i, n));
      i += n;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out += '"';
}

std::string format_log_line(LogFormat format, bool journal, std::chrono::system_clock::time_point t,
                            spdlog::level::level_enum level, std::string_view payload) {
  std::string line;
  line.reserve(payload.size() + 64);
  if (journal) {
    line += '<';
    line += static_cast<char>('0' + syslog_priority(level));
    line += '>';
  }
  const auto level_name = spdlog::level::to_string_view(level);
  if (format == LogFormat::json) {
    const auto f = parse_log_message(payload);
    line += "{\"ts\":\"";
    line += utc_timestamp(t);
    line += "\",\"level\":\"";
    line.append(level_name.data(), level_name.size());
    line += '"';
    if (!f.instance.empty()) append_field(line, "instance", f.instance);
    append_field(line, "message", f.message);
    if (!f.stage.empty()) append_field(line, "stage", f.stage);
    if (!f.cid.empty()) append_field(line, "cid", f.cid);
    line += "}\n";
    return line;
  }
  if (!journal) {
    line += utc_timestamp(t);
    line += ' ';
  }
  line.append(level_name.data(), level_name.size());
  // The message column lines up across levels (as spdlog's %-5l would).
  for (std::size_t n = level_name.size(); n < 5; ++n) line += ' ';
  line += ' ';
  // One event, one line: an embedded newline (a multi-line error text) is shown escaped.
  for (const char c : payload) {
    if (c == '\n') line += "\\n";
    else if (c == '\r') line += "\\r";
    else line += c;
  }
  line += '\n';
  return line;
}

bool is_journal_stream(const char* journal_stream, dev_t dev, ino_t ino) {
  if (journal_stream == nullptr || *journal_stream == '\0') return false;
  char* end = nullptr;
  const unsigned long long d = std::strtoull(journal_stream, &end, 10);
  if (end == journal_stream || *end != ':') return false;
  const char* ino_text = end + 1;
  const unsigned long long i = std::strtoull(ino_text, &end, 10);
  if (end == ino_text || *end != '\0') return false;
  return static_cast<dev_t>(d) == dev && static_cast<ino_t>(i) == ino;
}

}  // namespace carsync::cmd
