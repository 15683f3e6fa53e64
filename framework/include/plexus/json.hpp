// SPDX-License-Identifier: Apache-2.0
#pragma once

// JSON for the places that write it (Zipkin export, the bench's results)
// and read it (the bench's results, a broker's $SYS stats, the HTTP
// gateway's JSON bodies): one escaping, one UTF-8 check, one reader.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace plexus {

/// Appends `text` to `out` as a JSON string, quotes included: RFC 8259's
/// escapes (other control characters and DEL as \u00XX), and U+FFFD for
/// each byte that does not belong to well-formed UTF-8.
void append_json_string(std::string& out, std::string_view text);

/// One JSON document as a tree. RFC 8259's grammar, nesting bounded
/// (max_json_depth), so untrusted input is safe: whatever is malformed
/// throws json_error. Not a streaming parser; a number beyond a double's
/// range is an error.
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

/// Arrays and objects nested deeper than this are refused.
inline constexpr int max_json_depth = 64;

/// Malformed input; what() is "invalid JSON at byte <offset>: <why>".
struct json_error : std::runtime_error {
  json_error(std::size_t at, const std::string& why)
    : std::runtime_error("invalid JSON at byte " + std::to_string(at) + ": " + why), offset(at), reason(why) {}
  std::size_t offset;
  std::string reason;
};

/// Parses one JSON document (surrounding whitespace allowed). A \u escape
/// of a lone surrogate reads as U+FFFD. Throws json_error.
[[nodiscard]] json_value parse_json(std::string_view text);

} // namespace plexus
