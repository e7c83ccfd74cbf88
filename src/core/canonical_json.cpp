#include "core/canonical_json.hpp"

#include "core/json_text.hpp"

#include <boost/json/basic_parser_impl.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <set>
#include <vector>

namespace carsync::core {
namespace {

namespace json = boost::json;

// "$" for the root, else the dotted/indexed path ("metadata.n", "a[2].b").
std::string path_text(const std::string& path) { return path.empty() ? std::string("$") : path; }

std::string child_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

// UTF-16 code units of valid UTF-8 (RFC 8785 §3.2.3 sorts by them, not by code points:
// U+10000.. become surrogates 0xD800.., which sort below U+E000..U+FFFF).
std::u16string utf16_units(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    char32_t cp = 0;
    std::size_t len = 1;
    if (b0 < 0x80) cp = b0;
    else if (b0 < 0xE0) cp = b0 & 0x1F, len = 2;
    else if (b0 < 0xF0) cp = b0 & 0x0F, len = 3;
    else cp = b0 & 0x07, len = 4;
    for (std::size_t k = 1; k < len && i + k < s.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += len;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out.push_back(static_cast<char16_t>(0xD800 + (cp >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + (cp & 0x3FF)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
  }
  return out;
}

Result<void> write_string(std::string& out, std::string_view s, const std::string& path) {
  // Sorting and escaping are defined on Unicode text; a parsed document always is, a value
  // built in code might not be.
  if (auto ok = check_utf8(s); !ok)
    return make_error(errc::invalid_record, "string at " + path_text(path) + " is not valid UTF-8");
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      default: break;
    }
    if (c < 0x20) {
      std::array<char, 8> buf{};
      std::snprintf(buf.data(), buf.size(), "\\u%04x", c);
      out += buf.data();
    } else {
      out += ch;
    }
  }
  out += '"';
  return {};
}

// ECMAScript Number.prototype.toString (ECMA-262 Number::toString) of a finite double.
void write_double(std::string& out, double d) {
  if (d == 0) {  // +0 and -0 alike
    out += '0';
    return;
  }
  std::array<char, 64> buf{};
  // Without a precision, to_chars gives the shortest digits that round-trip, the closest
  // such when several do: the digits ECMAScript asks for.
  const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), d, std::chars_format::scientific);
  std::string_view sci(buf.data(), static_cast<std::size_t>(res.ptr - buf.data()));
  if (sci.front() == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  const auto e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos))
    if (c != '.') digits += c;
  int exp = 0;
  const char* e_begin = sci.data() + e_pos + 1;
  if (*e_begin == '+') ++e_begin;
  std::from_chars(e_begin, sci.data() + sci.size(), exp);

  const int k = static_cast<int>(digits.size());
  const int n = exp + 1;  // the decimal point sits after n digits
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<std::size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, static_cast<std::size_t>(n));
    out += '.';
    out.append(digits, static_cast<std::size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-n), '0');
    out += digits;
  } else {
    out += digits.front();
    if (k > 1) {
      out += '.';
      out.append(digits, 1);
    }
    out += exp < 0 ? "e-" : "e+";
    out += std::to_string(exp < 0 ? -exp : exp);
  }
}

// An integer is written as the double it becomes (all RFC 8785 numbers are doubles), and
// only when that double's text spells the same integer: any |i| <= 2^53, and beyond only
// the integers a double prints back unchanged (106479179934990340, as canonical_json
// writes such a double: its text must parse back to the same text). 2^53 + 1 is refused.
Result<void> write_integer(std::string& out, const std::string& digits, double as_double, const std::string& path) {
  std::string text;
  write_double(text, as_double);
  if (text != digits)
    return make_error(errc::invalid_record, "number at " + path_text(path) + " (" + digits +
                                                ") is beyond 2^53 and does not survive a double (it would be " +
                                                text + ")");
  out += text;
  return {};
}

Result<void> write_value(std::string& out, const json::value& v, const std::string& path) {
  switch (v.kind()) {
    case json::kind::null: out += "null"; return {};
    case json::kind::bool_: out += v.get_bool() ? "true" : "false"; return {};
    case json::kind::int64: {
      const std::int64_t i = v.get_int64();
      if (auto r = write_integer(out, std::to_string(i), static_cast<double>(i), path); !r) return r;
      return {};
    }
    case json::kind::uint64: {
      const std::uint64_t u = v.get_uint64();
      if (auto r = write_integer(out, std::to_string(u), static_cast<double>(u), path); !r) return r;
      return {};
    }
    case json::kind::double_: {
      const double d = v.get_double();
      if (!std::isfinite(d))
        return make_error(errc::invalid_record, "number at " + path_text(path) + " is NaN or infinite");
      write_double(out, d);
      return {};
    }
    case json::kind::string: return write_string(out, v.get_string(), path);
    case json::kind::array: {
      const auto& a = v.get_array();
      out += '[';
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (i) out += ',';
        if (auto r = write_value(out, a[i], path + "[" + std::to_string(i) + "]"); !r) return r;
      }
      out += ']';
      return {};
    }
    case json::kind::object: {
      const auto& o = v.get_object();
      std::vector<std::pair<std::u16string, const json::key_value_pair*>> members;
      members.reserve(o.size());
      for (const auto& kv : o) {
        if (auto ok = check_utf8(kv.key()); !ok)
          return make_error(errc::invalid_record, "a key in " + path_text(path) + " is not valid UTF-8");
        members.emplace_back(utf16_units(kv.key()), &kv);
      }
      std::sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      bool first = true;
      for (const auto& m : members) {
        if (!first) out += ',';
        first = false;
        const auto key = m.second->key();
        const std::string sub = child_path(path, key);
        if (auto r = write_string(out, key, sub); !r) return r;
        out += ':';
        if (auto r = write_value(out, m.second->value(), sub); !r) return r;
      }
      out += '}';
      return {};
    }
  }
  return {};
}

// basic_parser handler that only watches keys: one set of seen keys per open object, and
// where each open container sits (for the message).
class UniqueKeyHandler {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  std::optional<std::string> duplicate;  // the message, once found

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code&) {
    value_starts();
    frames_.emplace_back().object = true;
    return true;
  }
  bool on_object_end(std::size_t, boost::system::error_code&) {
    frames_.pop_back();
    return true;
  }
  bool on_array_begin(boost::system::error_code&) {
    value_starts();
    frames_.emplace_back();
    return true;
  }
  bool on_array_end(std::size_t, boost::system::error_code&) {
    frames_.pop_back();
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, boost::system::error_code& ec) {
    key_.append(s.data(), s.size());
    Frame& f = frames_.back();
    if (!f.keys.insert(key_).second) {
      frames_.pop_back();  // the path is that of the object holding the key
      duplicate = "duplicate key \"" + key_ + "\" in " + path();
      ec = make_error_code(errc::invalid_record);
      return false;
    }
    f.current_key = std::move(key_);
    key_.clear();
    return true;
  }
  bool on_string_part(json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, boost::system::error_code&) { return scalar(); }
  bool on_number_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, boost::system::error_code&) { return scalar(); }
  bool on_uint64(std::uint64_t, json::string_view, boost::system::error_code&) { return scalar(); }
  bool on_double(double, json::string_view, boost::system::error_code&) { return scalar(); }
  bool on_bool(bool, boost::system::error_code&) { return scalar(); }
  bool on_null(boost::system::error_code&) { return scalar(); }
  bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(json::string_view, boost::system::error_code&) { return true; }

 private:
  struct Frame {
    bool object = false;
    std::set<std::string> keys;  // object: the keys seen so far
    std::string current_key;     // object: the key of the value being read
    std::size_t count = 0;       // array: values started so far
  };

  // A value starts inside the innermost container: an array counts it.
  void value_starts() {
    if (!frames_.empty() && !frames_.back().object) ++frames_.back().count;
  }
  bool scalar() {
    value_starts();
    return true;
  }
  std::string path() const {
    std::string p = "$";
    for (const Frame& f : frames_) {
      if (f.object) p += "." + f.current_key;
      else p += "[" + std::to_string(f.count - 1) + "]";
    }
    return p;
  }

  std::vector<Frame> frames_;
  std::string key_;
};

}  // namespace

Result<std::string> canonical_json(const boost::json::value& v) {
  std::string out;
  if (auto r = write_value(out, v, std::string()); !r) return r.error();
  return out;
}

Result<void> check_unique_keys(std::string_view json_text) {
  json::parse_options opts;
  opts.max_depth = 512;  // as deep as parse_json reads: a duplicate below is still found
  json::basic_parser<UniqueKeyHandler> p(opts);
  boost::system::error_code ec;
  p.write_some(false, json_text.data(), json_text.size(), ec);
  if (p.handler().duplicate) return make_error(errc::invalid_record, *p.handler().duplicate);
  return {};  // malformed text: the parser that reads it says why
}

}  // namespace carsync::core
