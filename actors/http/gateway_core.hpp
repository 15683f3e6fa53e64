// SPDX-License-Identifier: Apache-2.0
#pragma once

// The HTTP gateway's logic without sockets or threads: options checked,
// routes matched, outcomes (reply and CONFIRM codes, a function's failure)
// mapped to HTTP answers, request headers read (X-Request-Timeout,
// traceparent, X-Msg-Id), error bodies and header values written.
// gateway.cpp is the glue around it (cpp-httplib, the client).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plexus/actors/http.hpp"
#include "plexus/client.hpp"

namespace plexus::actors::detail {

/// Retry-After on 429 and 503, in seconds.
inline constexpr int retry_after_seconds = 1;
/// Longest X-Plexus-Cause value; a longer cause is cut (the body has it all).
inline constexpr std::size_t max_cause_header = 512;

/// What the gateway answers.
struct http_answer {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers; // besides Content-Type
};

/// Where a request goes.
struct route_target {
  std::string topic;
  bool request = true;                  // false: a confirmed publish
  std::chrono::milliseconds timeout{0}; // the route's; 0: the default
};

/// A route looked up: a target, or the refusal (404, 405 with Allow, 400
/// for a malformed topic, 403 for a reserved one).
struct route_match {
  std::optional<route_target> target;
  http_answer refusal;
};

/// Each bad option as "name: why" (empty: all fine).
[[nodiscard]] std::vector<std::string> check_options(const http_options& o);

/// Configured routes first (exact path), then /events/<topic>, /rpc/<topic>.
[[nodiscard]] route_match match_route(const http_options& o, std::string_view method, std::string_view path);

/// How long to wait for an answer, and whether the caller said so.
struct timeout_choice {
  std::chrono::milliseconds value{0};
  bool from_header = false;
  std::string error; // non-empty: a malformed header (400)
};

/// X-Request-Timeout (`header`, null when absent: whole milliseconds, > 0),
/// else the route's timeout, else default_timeout; capped at max_timeout.
[[nodiscard]] timeout_choice choose_timeout(const std::string* header,
                                            std::chrono::milliseconds route_timeout, const http_options& o);

/// `now_ns` (Unix epoch ns) + `timeout`: a message's deadline_ns.
[[nodiscard]] std::uint64_t deadline_ns(std::uint64_t now_ns, std::chrono::milliseconds timeout) noexcept;

/// A W3C traceparent: version 2 hex (not ff), trace id 32 lower hex not
/// all zero, parent id 16 lower hex not all zero, flags 2 hex; version 00
/// has exactly these 55 characters, later ones may add "-..." after.
[[nodiscard]] bool valid_traceparent(std::string_view tp) noexcept;
/// `00-<trace id>-<span id>-01` from three random numbers (a zero trace
/// or span id becomes 1: all zeros is invalid).
[[nodiscard]] std::string make_traceparent(std::uint64_t trace_hi, std::uint64_t trace_lo,
                                           std::uint64_t span);
/// 32 lower-case hex digits: a generated msg id.
[[nodiscard]] std::string hex_id(std::uint64_t hi, std::uint64_t lo);
/// A msg id a caller may choose (X-Msg-Id): 1-64 bytes of 0x21..0x7e.
[[nodiscard]] bool valid_msg_id(std::string_view id) noexcept;

/// `text` fit for a header value: CR, LF and other control bytes become
/// spaces, and it is cut to `max` bytes (at a UTF-8 character boundary).
[[nodiscard]] std::string header_safe(std::string_view text, std::size_t max = max_cause_header);
/// {"error": ..., "cause": ..., "from": ...} ("from" only when given).
[[nodiscard]] std::string error_json(std::string_view error, std::string_view cause,
                                     std::string_view from = {});
/// An error answer with that body (429 and 503 with Retry-After).
[[nodiscard]] http_answer error_answer(int status, std::string_view error, std::string_view cause,
                                       std::string_view from = {});

/// A request's outcome on `topic` (waited for up to `timeout`) as an answer.
[[nodiscard]] http_answer answer_reply(const reply& r, std::string_view topic,
                                       std::chrono::milliseconds timeout);
/// A confirmed publish's outcome (CONFIRM, or the client's own code).
[[nodiscard]] http_answer answer_confirm(std::uint32_t code, std::string_view msg_id, std::string_view topic,
                                         std::chrono::milliseconds timeout);
/// The answer for a status httplib set itself (413 over max_body, 400 for
/// a request it could not parse), or for anything else without a body.
[[nodiscard]] http_answer answer_status(int status, std::size_t max_body);

} // namespace plexus::actors::detail
