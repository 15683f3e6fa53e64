// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace plexus::bench {

/// A small streaming JSON writer, indented two spaces. The caller nests
/// begin/end calls correctly and writes key() before each value in an
/// object (checked with assert).
class json_writer {
public:
  void begin_object();
  void end_object();
  void begin_array();
  void end_array();
  void key(std::string_view k);
  void string(std::string_view s);
  void number(double v); // non-finite values are written as null
  void integer(std::int64_t v);

  [[nodiscard]] const std::string& str() const noexcept { return out_; }

private:
  struct level {
    bool object;
    bool empty = true;
  };
  void before_value();
  void end(bool object, char close);
  void newline();

  std::string out_;
  std::vector<level> stack_;
  bool after_key_ = false;
};

} // namespace plexus::bench
