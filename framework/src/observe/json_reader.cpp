// SPDX-License-Identifier: Apache-2.0
// The JSON reader of plexus/json.hpp.
#include "plexus/json.hpp"

#include <charconv>

namespace plexus {

const json_value* json_value::find(std::string_view key) const noexcept {
  if (type != kind::object) return nullptr;
  for (const auto& [k, v] : members)
    if (k == key) return &v;
  return nullptr;
}

std::optional<std::uint64_t> json_value::as_uint64() const noexcept {
  if (type != kind::number) return std::nullopt;
  std::uint64_t n = 0;
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc{} || p != end) return std::nullopt; // "-1", "1.0", "1e3", past 2^64 - 1
  return n;
}

namespace {

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
    throw json_error(i_, why);
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
    if (depth >= max_json_depth) fail("nested too deep");
    json_value v;
    switch (peek()) {
      case '{': object(v, depth); break;
      case '[': array(v, depth); break;
      case '"': v.type = json_value::kind::string; v.text = string(); break;
      case 't': literal("true"); v.type = json_value::kind::boolean; v.boolean = true; break;
      case 'f': literal("false"); v.type = json_value::kind::boolean; break;
      case 'n': literal("null"); break;
      default: number(v); break;
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

  // RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, a subset of
  // what from_chars takes (which also takes "inf", "nan", ".5", "01").
  void number(json_value& v) {
    auto start = i_;
    auto digits = [&] {
      auto from = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      return i_ - from;
    };
    if (s_[i_] == '-') ++i_;
    auto int_at = i_;
    auto n = digits();
    if (n == 0) fail("expected a value");
    if (n > 1 && s_[int_at] == '0') fail("leading zero");
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (digits() == 0) fail("expected a digit");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (digits() == 0) fail("expected a digit");
    }
    auto [end, ec] = std::from_chars(s_.data() + start, s_.data() + i_, v.number);
    if (ec != std::errc{} || end != s_.data() + i_) fail("number out of range");
    v.type = json_value::kind::number;
    v.text = s_.substr(start, i_ - start);
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
            auto at = i_;
            i_ += 2;
            auto low = hex4();
            if (low >= 0xDC00 && low <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            else i_ = at; // a lone high surrogate; the next escape stands alone
          }
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; // a lone surrogate has no UTF-8
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

} // namespace plexus
