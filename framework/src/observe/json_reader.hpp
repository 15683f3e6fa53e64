// SPDX-License-Identifier: Apache-2.0
#pragma once

// A small JSON reader for the JSON plexus writes and reads back: the
// bench's --json results, a broker's $SYS stats. One document into a tree;
// RFC 8259's grammar, nesting bounded (64), so untrusted input is safe:
// whatever is malformed throws json_error. Not a general-purpose parser:
// no streaming, and a number beyond a double's range is an error.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace plexus::observe {

struct json_value {
  enum class kind { null, boolean, number, string, array, object };
  kind type = kind::null;
  bool boolean = false;
  double number = 0;
  std::string text;                                        // kind::string, decoded; kind::number, as written
  std::vector<json_value> items;                           // kind::array
  std::vector<std::pair<std::string, json_value>> members; // kind::object, in order

  /// The member called `key` of an object, or nullptr (also for non-objects).
  [[nodiscard]] const json_value* find(std::string_view key) const noexcept;

  /// A number written as a non-negative integer that fits 64 bits, exactly
  /// (`number` keeps 53 bits); nothing for any other value.
  [[nodiscard]] std::optional<std::uint64_t> as_uint64() const noexcept;
};

/// Malformed input; what() names the byte offset.
struct json_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses one JSON document (surrounding whitespace allowed). A \u escape
/// of a lone surrogate reads as U+FFFD. Throws json_error.
[[nodiscard]] json_value parse_json(std::string_view text);

} // namespace plexus::observe
