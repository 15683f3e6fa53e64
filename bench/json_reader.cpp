// SPDX-License-Identifier: Apache-2.0
#include "json_reader.hpp"

#include <charconv>
#include <cstdint>

namespace plexus::bench {

const json_value* json_value::find(std::string_view key) const noexcept {
  if (type != kind::object) return nullptr;
  for (const auto& [k, v] : members)
    if (k == key) return &v;
  return nullptr;
}

namespace {

constexpr int max_depth = 64;

class parser {
public:
  explicit parser(std::string_view text) : s_(text) {}

  json_value document() {
    auto v = value(0);
    skip_space();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

private:
  [[noreturn]] void fail(const std::string& why) const {
    throw json_error("invalid JSON at byte " + std::to_string(i_) + ": " + why);
  }

  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }

  char peek() {
    skip_space();
    if (i_ == s_.size()) fail("unexpected end");
    return s_[i_];
  }

  void expect(char c) {
    if (peek() != c) fail(std::string{"expected '"} + c + "'");
    ++i_;
  }

  void literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) fail("unknown literal");
    i_ += word.size();
  }

  json_value value(int depth) {
    if (depth > max_depth) fail("nested too deep");
    json_value v;
    switch (peek()) {
      case '{': object(v, depth); break;
      case '[': array(v, depth); break;
      case '"': v.type = json_value::kind::string; v.text = string(); break;
      case 't': literal("true"); v.type = json_value::kind::boolean; v.boolean = true; break;
      case 'f': literal("false"); v.type = json_value::kind::boolean; break;
      case 'n': literal("null"); break;
      default: v.type = json_value::kind::number; v.number = number(); break;
    }
    return v;
  }

  void object(json_value& v, int depth) {
    v.type = json_value::kind::object;
    expect('{');
    if (peek() == '}') {
      ++i_;
      return;
    }
    for (;;) {
      if (peek() != '"') fail("expected a key");
      auto k = string();
      expect(':');
      v.members.emplace_back(std::move(k), value(depth + 1));
      if (peek() == '}') {
        ++i_;
        return;
      }
      expect(',');
    }
  }

  void array(json_value& v, int depth) {
    v.type = json_value::kind::array;
    expect('[');
    if (peek() == ']') {
      ++i_;
      return;
    }
    for (;;) {
      v.items.push_back(value(depth + 1));
      if (peek() == ']') {
        ++i_;
        return;
      }
      expect(',');
    }
  }

  double number() {
    double d = 0;
    auto [end, ec] = std::from_chars(s_.data() + i_, s_.data() + s_.size(), d);
    if (ec != std::errc{} || end == s_.data() + i_) fail("expected a value");
    i_ = static_cast<std::size_t>(end - s_.data());
    return d;
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("short \\u escape");
    unsigned u = 0;
    auto [end, ec] = std::from_chars(s_.data() + i_, s_.data() + i_ + 4, u, 16);
    if (ec != std::errc{} || end != s_.data() + i_ + 4) fail("bad \\u escape");
    i_ += 4;
    return u;
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ == s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control byte in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ == s_.size()) fail("unterminated escape");
      switch (char e = s_[i_++]) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.substr(i_, 2) == "\\u") {
            i_ += 2;
            auto low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("unknown escape");
      }
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

} // namespace

json_value parse_json(std::string_view text) { return parser{text}.document(); }

} // namespace plexus::bench
