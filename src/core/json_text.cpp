#include "core/json_text.hpp"

#include "core/canonical_json.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/error.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <vector>

namespace carsync::core {
namespace {

namespace json = boost::json;

// Deep enough for any real document, shallow enough that our recursive writers are safe.
constexpr std::size_t max_parse_depth = 512;

// One decoded code point, or an error reason in Python's codec wording.
struct Decoded {
  char32_t cp = 0;
  std::size_t length = 0;  // bytes consumed; 0 on error
  const char* reason = nullptr;
};

bool is_continuation(unsigned char b) noexcept { return (b & 0xC0) == 0x80; }

// Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF.
Decoded decode_one(std::string_view s, std::size_t i) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {b0, 1, nullptr};

  std::size_t len = 0;
  char32_t cp = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // UTF-16 surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return {0, 0, "invalid start byte"};
  }

  for (std::size_t k = 1; k < len; ++k) {
    if (i + k >= s.size()) return {0, 0, "unexpected end of data"};
    const auto b = static_cast<unsigned char>(s[i + k]);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : is_continuation(b);
    if (!ok) return {0, 0, "invalid continuation byte"};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, len, nullptr};
}

void append_u16(std::string& out, unsigned unit) {
  std::array<char, 7> buf{};
  std::snprintf(buf.data(), buf.size(), "\\u%04x", unit);
  out += buf.data();
}

// Python's ensure_ascii escaping: printable ASCII stays, everything else is \uXXXX.
void write_string(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F) {
      if (c == '"' || c == '\\') out += '\\';
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    switch (c) {
      case '\n': out += "\\n"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      case '\t': out += "\\t"; ++i; continue;
      case '\b': out += "\\b"; ++i; continue;
      case '\f': out += "\\f"; ++i; continue;
      default: break;
    }
    Decoded d = decode_one(s, i);
    if (d.length == 0) {
      // Parsed documents are valid UTF-8; a bad byte can only come from a programming
      // error, and U+FFFD keeps the output valid instead of spreading the damage.
      d = {0xFFFD, 1, nullptr};
    }
    if (d.cp >= 0x10000) {
      const char32_t v = d.cp - 0x10000;
      append_u16(out, 0xD800 + (v >> 10));
      append_u16(out, 0xDC00 + (v & 0x3FF));
    } else {
      append_u16(out, d.cp);
    }
    i += d.length;
  }
  out += '"';
}

// Python's float repr: shortest round-trip digits, positional for exponents in
// [-4, 16), scientific otherwise, and always recognisably a float.
void write_double(std::string& out, double d) {
  if (!std::isfinite(d)) {
    // Python would write NaN/Infinity, which no strict JSON reader (ours included) accepts.
    out += "null";
    return;
  }
  std::array<char, 64> buf{};
  const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), d, std::chars_format::scientific);
  std::string_view sci(buf.data(), static_cast<std::size_t>(res.ptr - buf.data()));

  std::string_view sign;
  if (sci.front() == '-') sign = "-", sci.remove_prefix(1);
  const auto e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos))
    if (c != '.') digits += c;
  int exp = 0;
  std::from_chars(sci.data() + e_pos + 1 + (sci[e_pos + 1] == '+' ? 1 : 0), sci.data() + sci.size(), exp);

  out += sign;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0.";
      out.append(static_cast<std::size_t>(-exp - 1), '0');
      out += digits;
    } else if (static_cast<std::size_t>(exp) + 1 >= digits.size()) {
      out += digits;
      out.append(static_cast<std::size_t>(exp) + 1 - digits.size(), '0');
      out += ".0";
    } else {
      out += std::string_view(digits).substr(0, static_cast<std::size_t>(exp) + 1);
      out += '.';
      out += std::string_view(digits).substr(static_cast<std::size_t>(exp) + 1);
    }
    return;
  }
  out += digits.front();
  if (digits.size() > 1) {
    out += '.';
    out += std::string_view(digits).substr(1);
  }
  std::array<char, 8> ebuf{};
  std::snprintf(ebuf.data(), ebuf.size(), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  out += ebuf.data();
}

std::vector<const json::key_value_pair*> sorted_members(const json::object& o) {
  std::vector<const json::key_value_pair*> members;
  members.reserve(o.size());
  for (const auto& kv : o) members.push_back(&kv);
  // Byte order of UTF-8 equals code point order, which is what Python sorts by.
  std::sort(members.begin(), members.end(),
            [](const auto* a, const auto* b) { return a->key() < b->key(); });
  return members;
}

struct Style {
  bool pretty;  // 2-space indent and ": " vs compact "," ":"
  std::size_t limit = std::numeric_limits<std::size_t>::max();  // give up beyond this size
};

void write_value(std::string& out, const json::value& v, Style style, std::size_t depth);

void newline(std::string& out, Style style, std::size_t depth) {
  if (!style.pretty) return;
  out += '\n';
  out.append(depth * 2, ' ');
}

void write_value(std::string& out, const json::value& v, Style style, std::size_t depth) {
  switch (v.kind()) {
    case json::kind::null: out += "null"; return;
    case json::kind::bool_: out += v.get_bool() ? "true" : "false"; return;
    case json::kind::int64: out += std::to_string(v.get_int64()); return;
    case json::kind::uint64: out += std::to_string(v.get_uint64()); return;
    case json::kind::double_: write_double(out, v.get_double()); return;
    case json::kind::string: write_string(out, v.get_string()); return;
    case json::kind::array: {
      const auto& a = v.get_array();
      if (a.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (out.size() > style.limit) return;  // the caller sees the size: nothing more to learn
        if (i) out += ',';
        newline(out, style, depth + 1);
        write_value(out, a[i], style, depth + 1);
      }
      newline(out, style, depth);
      out += ']';
      return;
    }
    case json::kind::object: {
      const auto& o = v.get_object();
      if (o.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (const auto* kv : sorted_members(o)) {
        if (out.size() > style.limit) return;
        if (!first) out += ',';
        first = false;
        newline(out, style, depth + 1);
        write_string(out, kv->key());
        out += style.pretty ? ": " : ":";
        write_value(out, kv->value(), style, depth + 1);
      }
      newline(out, style, depth);
      out += '}';
      return;
    }
  }
}

}  // namespace

std::string to_reference_json(const boost::json::value& v) {
  std::string out;
  write_value(out, v, Style{true}, 0);
  return out;
}

std::optional<std::string> to_reference_json_within(const boost::json::value& v, std::size_t limit) {
  std::string out;
  write_value(out, v, Style{true, limit}, 0);
  if (out.size() > limit) return std::nullopt;
  return out;
}

std::string to_canonical_json(const boost::json::value& v) {
  std::string out;
  write_value(out, v, Style{false}, 0);
  return out;
}

Result<void> check_utf8(std::string_view bytes) {
  for (std::size_t i = 0; i < bytes.size();) {
    const Decoded d = decode_one(bytes, i);
    if (d.length == 0) {
      std::array<char, 128> buf{};
      std::snprintf(buf.data(), buf.size(), "'utf-8' codec can't decode byte 0x%02x in position %zu: %s",
                    static_cast<unsigned char>(bytes[i]), i, d.reason);
      return make_error(errc::invalid_request, buf.data());
    }
    i += d.length;
  }
  return {};
}

namespace {

// Builds the value like json::parser, but converts each double from its own text with
// std::from_chars (correctly rounded): Boost.JSON 1.81's parser rounds ~10% of 17-digit
// spellings to a neighbouring double, and a record whose double changes between provider
// and consumer no longer verifies (its canonical text changes).
class PreciseValueBuilder {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  json::value result;

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code&) {
    open_.push_back(Frame{json::object(), {}});
    return true;
  }
  bool on_object_end(std::size_t, boost::system::error_code&) { return close(); }
  bool on_array_begin(boost::system::error_code&) {
    open_.push_back(Frame{json::array(), {}});
    return true;
  }
  bool on_array_end(std::size_t, boost::system::error_code&) { return close(); }
  bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) {
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, boost::system::error_code&) {
    text_.append(s.data(), s.size());
    open_.back().key = std::move(text_);
    text_.clear();
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, boost::system::error_code&) {
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_string(json::string_view s, std::size_t, boost::system::error_code&) {
    text_.append(s.data(), s.size());
    put(json::string(text_));
    text_.clear();
    return true;
  }
  bool on_number_part(json::string_view s, boost::system::error_code&) {
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t i, json::string_view, boost::system::error_code&) { return number(i); }
  bool on_uint64(std::uint64_t u, json::string_view, boost::system::error_code&) { return number(u); }
  bool on_double(double d, json::string_view s, boost::system::error_code&) {
    text_.append(s.data(), s.size());
    double exact = 0;
    const auto res = std::from_chars(text_.data(), text_.data() + text_.size(), exact);
    // Out of range (1e999, 1e-999): the parser's infinity or zero is the answer.
    return number(res.ec == std::errc() && res.ptr == text_.data() + text_.size() ? exact : d);
  }
  bool on_bool(bool b, boost::system::error_code&) { return put(b); }
  bool on_null(boost::system::error_code&) { return put(nullptr); }
  bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(json::string_view, boost::system::error_code&) { return true; }

 private:
  struct Frame {
    json::value container;
    std::string key;  // object: the key of the value being read
  };

  template <class N>
  bool number(N n) {
    text_.clear();
    return put(n);
  }
  bool put(json::value v) {
    if (open_.empty()) {
      result = std::move(v);
    } else if (auto* a = open_.back().container.if_array()) {
      a->push_back(std::move(v));
    } else {
      // A repeated key keeps the last value, as json::parser does (check_unique_keys
      // refuses repeats where they matter).
      open_.back().container.get_object()[open_.back().key] = std::move(v);
    }
    return true;
  }
  bool close() {
    json::value done = std::move(open_.back().container);
    open_.pop_back();
    return put(std::move(done));
  }

  std::vector<Frame> open_;
  std::string text_;  // the key, string or number being read
};

}  // namespace

Result<boost::json::value> parse_json(std::string_view text) {
  json::parse_options opts;
  opts.max_depth = max_parse_depth;
  json::basic_parser<PreciseValueBuilder> p(opts);
  boost::system::error_code ec;
  const std::size_t consumed = p.write_some(false, text.data(), text.size(), ec);
  if (!ec && consumed < text.size()) ec = json::error::extra_data;
  if (ec) return make_error(errc::invalid_request, ec.message() + " at offset " + std::to_string(consumed));
  return std::move(p.handler().result);
}

namespace {

// The string a NaN token becomes before the strict parse: NUL-led, so no likely document
// holds it, and the walk after the parse counts them to make sure none did.
constexpr char nan_marker_text[] = "\0carsync:NaN";
constexpr std::string_view nan_marker{nan_marker_text, sizeof nan_marker_text - 1};

bool continues_token(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Turns the NaN markers back into NaN doubles; returns how many it found.
std::size_t restore_nans(json::value& v) {
  std::size_t found = 0;
  if (auto* s = v.if_string(); s && std::string_view(*s) == nan_marker) {
    v = std::numeric_limits<double>::quiet_NaN();
    return 1;
  }
  if (auto* a = v.if_array())
    for (auto& item : *a) found += restore_nans(item);
  if (auto* o = v.if_object())
    for (auto& kv : *o) found += restore_nans(kv.value());
  return found;
}

}  // namespace

Result<boost::json::value> parse_json_python(std::string_view text) {
  // Outside strings, the three tokens are rewritten: an overflowing literal parses as the
  // infinity of its sign; NaN has no literal, so it travels as a marker string.
  std::string rewritten;
  std::size_t nans = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      rewritten += c;
      if (c == '\\' && i + 1 < text.size()) rewritten += text[++i];
      else if (c == '"') in_string = false;
      continue;
    }
    const auto token = [&](std::string_view word) {
      return text.substr(i, word.size()) == word &&
             (i + word.size() == text.size() || !continues_token(text[i + word.size()]));
    };
    if (c == '"') {
      in_string = true;
    } else if (token("NaN")) {
      rewritten += "\"\\u0000carsync:NaN\"";
      ++nans;
      i += 2;
      continue;
    } else if (token("Infinity")) {
      rewritten += "1e999999";
      i += 7;
      continue;
    } else if (token("-Infinity")) {
      rewritten += "-1e999999";
      i += 8;
      continue;
    }
    rewritten += c;
  }
  auto parsed = parse_json(rewritten);
  if (!parsed) return parsed;
  // Two readers of one record must see the same fields: the parser keeps the last of two
  // equal keys silently, a signature check or another implementation could take the first.
  if (auto unique = check_unique_keys(rewritten); !unique) return unique.error();
  if (nans == 0) return parsed;
  if (restore_nans(*parsed) != nans)
    return make_error(errc::invalid_request, "document holds a string that reads as carsync's NaN marker");
  return parsed;
}

std::string first_code_points(std::string_view utf8, std::size_t n) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < utf8.size(); ++i) {
    if (is_continuation(static_cast<unsigned char>(utf8[i]))) continue;
    if (seen == n) return std::string(utf8.substr(0, i));
    ++seen;
  }
  return std::string(utf8);
}

bool truthy(const boost::json::value& v) noexcept {
  switch (v.kind()) {
    case json::kind::null: return false;
    case json::kind::bool_: return v.get_bool();
    case json::kind::int64: return v.get_int64() != 0;
    case json::kind::uint64: return v.get_uint64() != 0;
    case json::kind::double_: return v.get_double() != 0.0;
    case json::kind::string: return !v.get_string().empty();
    case json::kind::array: return !v.get_array().empty();
    case json::kind::object: return !v.get_object().empty();
  }
  return false;
}

}  // namespace carsync::core
