// SPDX-License-Identifier: Apache-2.0
#pragma once

// A small JSON reader for what plexus-bench writes (its --json results):
// objects, arrays, strings with escapes, numbers, true/false/null. Not a
// general-purpose parser: no streaming, depth limited, errors thrown.

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace plexus::bench {

struct json_value {
  enum class kind { null, boolean, number, string, array, object };
  kind type = kind::null;
  bool boolean = false;
  double number = 0;
  std::string text;                                        // kind::string
  std::vector<json_value> items;                           // kind::array
  std::vector<std::pair<std::string, json_value>> members; // kind::object, in order

  /// The member called `key` of an object, or nullptr (also for non-objects).
  [[nodiscard]] const json_value* find(std::string_view key) const noexcept;
};

/// Malformed input; what() names the byte offset.
struct json_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses one JSON document (surrounding whitespace allowed). Throws json_error.
[[nodiscard]] json_value parse_json(std::string_view text);

} // namespace plexus::bench
