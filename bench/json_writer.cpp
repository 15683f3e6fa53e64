// SPDX-License-Identifier: Apache-2.0
#include "json_writer.hpp"

#include "plexus/json.hpp"

#include <array>
#include <cassert>
#include <charconv>
#include <cmath>

namespace plexus::bench {

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
