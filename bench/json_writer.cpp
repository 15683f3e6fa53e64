// SPDX-License-Identifier: Apache-2.0
#include "json_writer.hpp"

#include <array>
#include <cassert>
#include <charconv>
#include <cmath>

namespace plexus::bench {

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
std::size_t utf8_sequence(std::string_view s, std::size_t i) noexcept {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  auto b = byte(i);
  std::size_t n = 0;
  unsigned lo = 0x80, hi = 0xbf; // allowed range of the second byte
  if (b >= 0xc2 && b <= 0xdf) n = 2;
  else if (b >= 0xe0 && b <= 0xef) {
    n = 3;
    if (b == 0xe0) lo = 0xa0;   // no overlong forms
    if (b == 0xed) hi = 0x9f;   // no surrogates
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4;
    if (b == 0xf0) lo = 0x90;
    if (b == 0xf4) hi = 0x8f;   // nothing above U+10FFFF
  } else return 0;
  if (s.size() - i < n) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
  return n;
}

void append_escape(std::string& out, unsigned char c) {
  switch (c) {
    case '"': out += "\\\""; return;
    case '\\': out += "\\\\"; return;
    case '\b': out += "\\b"; return;
    case '\f': out += "\\f"; return;
    case '\n': out += "\\n"; return;
    case '\r': out += "\\r"; return;
    case '\t': out += "\\t"; return;
    default: break;
  }
  static constexpr char hex[] = "0123456789abcdef";
  out += "\\u00";
  out += hex[c >> 4];
  out += hex[c & 0x0f];
}

} // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == '"' || c == '\\') {
      append_escape(out, c);
      ++i;
    } else if (c < 0x80) {
      out += s[i];
      ++i;
    } else if (auto n = utf8_sequence(s, i); n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out += '"';
}

void json_writer::newline() {
  out_ += '\n';
  out_.append(2 * stack_.size(), ' ');
}

void json_writer::before_value() {
  if (stack_.empty()) {
    assert(out_.empty() && "one top-level value only");
    return;
  }
  auto& top = stack_.back();
  if (top.object) {
    assert(after_key_ && "a value in an object needs a key first");
    after_key_ = false;
    return;
  }
  if (!top.empty) out_ += ',';
  top.empty = false;
  newline();
}

void json_writer::end([[maybe_unused]] bool object, char close) {
  assert(!stack_.empty() && stack_.back().object == object && !after_key_);
  bool was_empty = stack_.back().empty;
  stack_.pop_back();
  if (!was_empty) newline();
  out_ += close;
  if (stack_.empty()) out_ += '\n';
}

void json_writer::begin_object() {
  before_value();
  out_ += '{';
  stack_.push_back({true});
}

void json_writer::end_object() { end(true, '}'); }

void json_writer::begin_array() {
  before_value();
  out_ += '[';
  stack_.push_back({false});
}

void json_writer::end_array() { end(false, ']'); }

void json_writer::key(std::string_view k) {
  assert(!stack_.empty() && stack_.back().object && !after_key_);
  auto& top = stack_.back();
  if (!top.empty) out_ += ',';
  top.empty = false;
  newline();
  append_json_string(out_, k);
  out_ += ": ";
  after_key_ = true;
}

void json_writer::string(std::string_view s) {
  before_value();
  append_json_string(out_, s);
}

void json_writer::number(double v) {
  before_value();
  if (!std::isfinite(v)) {
    out_ += "null";
    return;
  }
  std::array<char, 32> buf{};
  [[maybe_unused]] auto [last, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  assert(ec == std::errc{});
  out_.append(buf.data(), last);
}

void json_writer::integer(std::int64_t v) {
  before_value();
  out_ += std::to_string(v);
}

} // namespace plexus::bench
