// SPDX-License-Identifier: Apache-2.0
#pragma once

// The sinks' decisions without I/O: record encoding (file sink), URL
// parsing, what an HTTP answer means and how long to wait before the next
// attempt (webhook sink). Inline, tested by test/unit/sinks_test.cpp.

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "plexus/actors/sinks.hpp"

namespace plexus::actors::detail {

inline constexpr std::size_t max_sink_name = 40;

inline void append_base64(std::string_view in, std::string& out) {
  static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    auto v = (std::uint32_t{static_cast<unsigned char>(in[i])} << 16) |
             (std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8) | static_cast<unsigned char>(in[i + 2]);
    for (int s : {18, 12, 6, 0}) out += table[(v >> s) & 63];
  }
  if (auto rest = in.size() - i; rest > 0) {
    std::uint32_t v = std::uint32_t{static_cast<unsigned char>(in[i])} << 16;
    if (rest == 2) v |= std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += rest == 2 ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
}

/// A JSON string (quotes included); bytes >= 0x80 pass as they are.
inline void append_json_string(std::string_view in, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : in) {
    auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += ch;
    }
  }
  out += '"';
}

/// Appends one message's record to `out`; nullopt, or why it cannot be
/// written in this format (the message is then dead-lettered).
[[nodiscard]] inline std::optional<std::string> append_record(record_format f, std::string_view topic,
                                                              std::string_view msg_id, std::string_view payload,
                                                              std::string& out) {
  switch (f) {
    case record_format::line:
      if (payload.find('\n') != std::string_view::npos)
        return std::string{"a payload holding a newline cannot be a line record"};
      out += payload;
      out += '\n';
      return std::nullopt;
    case record_format::length_prefixed: {
      if (payload.size() > 0xffffffffu) return std::string{"a payload over 4 GiB"};
      auto n = static_cast<std::uint32_t>(payload.size());
      for (int s : {24, 16, 8, 0}) out += static_cast<char>((n >> s) & 0xff);
      out += payload;
      return std::nullopt;
    }
    case record_format::json_line:
      out += "{\"topic\":";
      append_json_string(topic, out);
      out += ",\"msg_id\":";
      append_json_string(msg_id, out);
      out += ",\"payload\":\"";
      append_base64(payload, out);
      out += "\"}\n";
      return std::nullopt;
  }
  return std::string{"unknown record format"};
}

struct url_parts {
  bool https = false;
  std::string host;
  int port = 0;
  std::string path; // "/" when the URL has none; the query kept
};

/// `http://host[:port][/path]` or https; nullopt for anything else.
[[nodiscard]] inline std::optional<url_parts> parse_url(std::string_view url) {
  url_parts u;
  if (url.starts_with("http://")) {
    url.remove_prefix(7);
    u.port = 80;
  } else if (url.starts_with("https://")) {
    url.remove_prefix(8);
    u.https = true;
    u.port = 443;
  } else {
    return std::nullopt;
  }
  auto slash = url.find_first_of("/?#");
  auto authority = url.substr(0, slash);
  u.path = slash == std::string_view::npos ? "/" : std::string{url.substr(slash)};
  if (u.path.find('#') != std::string::npos) u.path.erase(u.path.find('#'));
  if (u.path.empty() || u.path.front() != '/') u.path.insert(0, "/");
  if (authority.find('@') != std::string_view::npos) return std::nullopt; // no user:password@
  auto colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos) {
    auto digits = authority.substr(colon + 1);
    int port = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || port < 1 || port > 65535)
      return std::nullopt;
    u.port = port;
    authority = authority.substr(0, colon);
  }
  if (authority.size() > 2 && authority.front() == '[' && authority.back() == ']')
    authority = authority.substr(1, authority.size() - 2); // [::1]
  if (authority.empty() ||
      authority.find_first_of(" \t\r\n/[]") != std::string_view::npos)
    return std::nullopt;
  u.host = std::string{authority};
  return u;
}

/// What an attempt's outcome means for its message.
enum class webhook_verdict : std::uint8_t {
  delivered, // 2xx: ACK
  retry,     // no answer, 408, 425, 429, 5xx: try again after a backoff
  refused,   // any other answer: no retry helps, dead-letter now
};

/// `status` 0: no HTTP answer (connect error, timeout).
[[nodiscard]] constexpr webhook_verdict classify_answer(int status) noexcept {
  if (status >= 200 && status < 300) return webhook_verdict::delivered;
  if (status == 0 || status == 408 || status == 425 || status == 429 || status >= 500)
    return webhook_verdict::retry;
  return webhook_verdict::refused;
}

/// The wait after failed attempt `attempt` (1 = the first): initial x
/// 2^(attempt-1), at most max, then scaled into [d/2, d] by `unit` in [0, 1).
[[nodiscard]] inline std::chrono::milliseconds backoff_after(std::uint32_t attempt,
                                                             std::chrono::milliseconds initial,
                                                             std::chrono::milliseconds max, double unit) {
  auto d = initial.count();
  for (std::uint32_t i = 1; i < attempt && d < max.count(); ++i) d *= 2;
  d = std::min(d, max.count());
  unit = std::clamp(unit, 0.0, 1.0);
  return std::chrono::milliseconds{d / 2 + static_cast<std::int64_t>(static_cast<double>(d - d / 2) * unit)};
}

/// The reason a failed attempt gives: `HTTP 503: <body start>`, or the
/// transport error. At most about 200 bytes of the body, control bytes as
/// spaces.
[[nodiscard]] inline std::string answer_text(int status, std::string_view body, std::string_view transport_error) {
  if (status == 0) return "no answer: " + std::string{transport_error};
  std::string s = "HTTP " + std::to_string(status);
  if (body.empty()) return s;
  s += ": ";
  constexpr std::size_t keep = 200;
  for (char ch : body.substr(0, keep)) s += static_cast<unsigned char>(ch) < 0x20 ? ' ' : ch;
  if (body.size() > keep) s += "...";
  return s;
}

} // namespace plexus::actors::detail
