// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway's sans-IO core: see gateway_core.hpp.
#include "gateway_core.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <set>

#include "plexus/json.hpp"
#include "plexus/topic.hpp"

namespace plexus::actors::detail {

namespace {

using std::chrono::milliseconds;

constexpr std::array<std::string_view, 5> methods{"GET", "POST", "PUT", "PATCH", "DELETE"};
constexpr std::string_view events_prefix = "/events/", rpc_prefix = "/rpc/";

std::string ms_text(milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// Why `topic` cannot be published on by a caller over HTTP, or nothing.
std::optional<std::pair<int, std::string>> topic_problem(std::string_view topic) {
  if (auto e = validate_topic(topic); e != topic_errc::ok)
    return std::pair{400, "topic \"" + std::string{topic} + "\": " + to_string(e)};
  if (reserved_namespace(topic) != reserved::none)
    return std::pair{403,
                     "topic \"" + std::string{topic} + "\": a reserved namespace ($SYS., $DLQ., _INBOX.)"};
  return std::nullopt;
}

bool under(std::string_view path, std::string_view prefix) {
  return path.starts_with(prefix) || path == prefix.substr(0, prefix.size() - 1);
}

std::string status_name(std::uint32_t code) {
  if (const auto* s = find_status(code)) return std::string{s->name};
  return "status_" + std::to_string(code);
}

} // namespace

std::vector<std::string> check_options(const http_options& o) {
  std::vector<std::string> bad;
  if (o.listen.empty()) bad.emplace_back("listen: empty (an address: 127.0.0.1, 0.0.0.0, ::1)");
  if (o.port < 0 || o.port > 65535) bad.push_back("port " + std::to_string(o.port) + ": 0-65535");
  if (o.max_body == 0) bad.emplace_back("max_body: 0 (at least 1 byte)");
  if (o.max_concurrent == 0) bad.emplace_back("max_concurrent: 0 (at least 1)");
  if (o.max_connections == 0) bad.emplace_back("max_connections: 0 (at least 1)");
  if (o.threads == 0 || o.threads > 64) bad.push_back("threads: " + std::to_string(o.threads) + " (1-64)");
  if (o.max_timeout <= milliseconds{0}) bad.push_back("max_timeout: " + ms_text(o.max_timeout) + " (> 0)");
  if (o.default_timeout <= milliseconds{0} || o.default_timeout > o.max_timeout)
    bad.push_back("default_timeout: " + ms_text(o.default_timeout) + " (> 0 and <= max_timeout)");
  if (o.keep_alive_timeout <= milliseconds{0})
    bad.push_back("keep_alive_timeout: " + ms_text(o.keep_alive_timeout) + " (> 0)");
  if (o.drain_timeout < milliseconds{0})
    bad.push_back("drain_timeout: " + ms_text(o.drain_timeout) + " (>= 0)");
  if (!o.events && !o.rpc && o.routes.empty())
    bad.emplace_back("nothing to serve: events, rpc and routes all off");
  std::set<std::pair<std::string, std::string>> seen;
  for (std::size_t i = 0; i < o.routes.size(); ++i) {
    const auto& r = o.routes[i];
    std::string problems;
    auto add = [&](const std::string& why) { problems += (problems.empty() ? "" : ", ") + why; };
    if (std::find(methods.begin(), methods.end(), r.method) == methods.end())
      add("method \"" + r.method + "\" (GET, POST, PUT, PATCH or DELETE)");
    if (!r.path.starts_with('/') || r.path.find_first_of(" ?#\t\r\n") != std::string::npos)
      add("path: starts with '/', no space, '?' or '#'");
    else if ((o.events && under(r.path, events_prefix)) || (o.rpc && under(r.path, rpc_prefix)))
      add("path: under /events/ or /rpc/, which serve every topic (turn them off to route there)");
    if (!seen.emplace(r.method, r.path).second) add("a second route for " + r.method + " " + r.path);
    if (auto p = topic_problem(r.topic)) add(p->second);
    if (r.timeout < milliseconds{0} || r.timeout > o.max_timeout)
      add("timeout: " + ms_text(r.timeout) + " (0 for the default, up to max_timeout)");
    if (!problems.empty()) bad.push_back("routes[" + std::to_string(i) + "] \"" + r.path + "\": " + problems);
  }
  return bad;
}

route_match match_route(const http_options& o, std::string_view method, std::string_view path) {
  std::string allow;
  for (const auto& r : o.routes) {
    if (r.path != path) continue;
    if (r.method == method) return {route_target{r.topic, r.request, r.timeout}, {}};
    allow += (allow.empty() ? "" : ", ") + r.method;
  }
  auto prefixed = [&](std::string_view prefix, bool request) -> route_match {
    if (method != "POST") allow = "POST";
    if (!allow.empty()) return {};
    auto topic = path.substr(prefix.size());
    if (auto p = topic_problem(topic))
      return {std::nullopt, error_answer(p->first, p->first == 400 ? "bad_topic" : "forbidden", p->second)};
    return {route_target{std::string{topic}, request, milliseconds{0}}, {}};
  };
  route_match m;
  if (allow.empty() && o.events && path.starts_with(events_prefix) && path.size() > events_prefix.size())
    m = prefixed(events_prefix, false);
  else if (allow.empty() && o.rpc && path.starts_with(rpc_prefix) && path.size() > rpc_prefix.size())
    m = prefixed(rpc_prefix, true);
  if (m.target || m.refusal.status != 200) return m;
  if (!allow.empty()) {
    m.refusal = error_answer(405, "method_not_allowed",
                             std::string{method} + " " + std::string{path} + ": allowed " + allow);
    m.refusal.headers.emplace_back("Allow", allow);
    return m;
  }
  m.refusal = error_answer(404, "not_found", "no route for " + std::string{method} + " " + std::string{path});
  return m;
}

timeout_choice choose_timeout(const std::string* header, milliseconds route_timeout, const http_options& o) {
  timeout_choice c;
  if (header) {
    const auto& h = *header;
    bool digits = !h.empty() && h.size() <= 12 &&
                  std::all_of(h.begin(), h.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (!digits || std::stoll(h) == 0) {
      c.error = "X-Request-Timeout \"" + header_safe(h, 64) + "\": whole milliseconds, more than 0";
      return c;
    }
    c.value = milliseconds{std::stoll(h)};
    c.from_header = true;
  } else {
    c.value = route_timeout > milliseconds{0} ? route_timeout : o.default_timeout;
  }
  c.value = std::min(c.value, o.max_timeout);
  return c;
}

std::uint64_t deadline_ns(std::uint64_t now_ns, milliseconds timeout) noexcept {
  return now_ns + static_cast<std::uint64_t>(timeout.count()) * 1'000'000u;
}

bool valid_traceparent(std::string_view tp) noexcept {
  auto hex = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(),
                       [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); });
  };
  auto zeros = [](std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; };
  if (tp.size() < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return false;
  auto version = tp.substr(0, 2), trace = tp.substr(3, 32), parent = tp.substr(36, 16),
       flags = tp.substr(53, 2);
  if (!hex(version) || version == "ff" || !hex(trace) || zeros(trace) || !hex(parent) || zeros(parent) ||
      !hex(flags))
    return false;
  if (version == "00") return tp.size() == 55;
  return tp.size() == 55 || tp[55] == '-';
}

std::string make_traceparent(std::uint64_t trace_hi, std::uint64_t trace_lo, std::uint64_t span) {
  if (trace_hi == 0 && trace_lo == 0) trace_lo = 1;
  if (span == 0) span = 1;
  char buf[56];
  std::snprintf(buf, sizeof buf, "00-%016llx%016llx-%016llx-01", static_cast<unsigned long long>(trace_hi),
                static_cast<unsigned long long>(trace_lo), static_cast<unsigned long long>(span));
  return buf;
}

std::string hex_id(std::uint64_t hi, std::uint64_t lo) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(hi),
                static_cast<unsigned long long>(lo));
  return buf;
}

bool valid_msg_id(std::string_view id) noexcept {
  return !id.empty() && id.size() <= 64 &&
         std::all_of(id.begin(), id.end(), [](char ch) { return ch >= 0x21 && ch <= 0x7e; });
}

std::string header_safe(std::string_view text, std::size_t max) {
  std::string out{text};
  for (auto& ch : out) {
    auto u = static_cast<unsigned char>(ch);
    if (u < 0x20 || u == 0x7f) ch = ' ';
  }
  if (out.size() > max) {
    auto n = max;
    while (n > 0 && (static_cast<unsigned char>(out[n]) & 0xC0) == 0x80) --n; // not inside a character
    out.resize(n);
  }
  return out;
}

std::string error_json(std::string_view error, std::string_view cause, std::string_view from) {
  std::string out = "{\"error\":";
  append_json_string(out, error);
  if (!from.empty()) {
    out += ",\"from\":";
    append_json_string(out, from);
  }
  out += ",\"cause\":";
  append_json_string(out, cause);
  out += "}";
  return out;
}

http_answer error_answer(int status, std::string_view error, std::string_view cause, std::string_view from) {
  http_answer a;
  a.status = status;
  a.body = error_json(error, cause, from);
  if (status == 429 || status == 503)
    a.headers.emplace_back("Retry-After", std::to_string(retry_after_seconds));
  return a;
}

http_answer answer_reply(const reply& r, std::string_view topic, milliseconds timeout) {
  std::string t{topic};
  switch (r.code) {
    case 0: {
      http_answer a;
      a.body = r.payload;
      a.content_type = "application/octet-stream";
      return a;
    }
    case status_failed: break;
    case status_timeout:
      return error_answer(504, "timeout", "no reply from " + t + " within " + ms_text(timeout));
    case code_of(status::expired):
      return error_answer(504, "expired", "past its deadline before " + t + " had it");
    case code_of(status::no_responders): return error_answer(503, "no_responders", "nobody serves " + t);
    case code_of(status::overloaded):
    case status_outbox_full: return error_answer(429, "overloaded", "overloaded on the way to " + t);
    case code_of(status::forbidden):
    case code_of(status::permission_denied):
      return error_answer(403, status_name(r.code), r.text.empty() ? t : r.text);
    case static_cast<std::uint32_t>(wire::errc::payload_too_large):
      return error_answer(413, "payload_too_large", r.text);
    case status_disconnected: return error_answer(503, "disconnected", "the gateway's connection closed");
    case status_circuit_open: // the client's breaker for the topic: no request was sent
      return error_answer(503, "circuit_open", "the circuit breaker for " + t + " is open");
    default:
      return error_answer(502, status_name(r.code),
                          std::string{status_text(r.code)} + (r.text.empty() ? "" : ": " + r.text));
  }
  // The function failed and said how (a span status name).
  int code = 502;
  if (r.failure == "timeout") code = 504;
  else if (r.failure == "no_responders" || r.failure == "circuit_open") code = 503;
  else if (r.failure == "rejected") code = 429;
  else if (r.failure == "dead_lettered") code = 422;
  auto failure = r.failure.empty() ? std::string{"error"} : r.failure;
  auto a = error_answer(code, failure, r.text, r.from);
  a.headers.emplace_back("X-Plexus-Failure", header_safe(failure));
  a.headers.emplace_back("X-Plexus-From", header_safe(r.from));
  a.headers.emplace_back("X-Plexus-Cause", header_safe(r.text));
  return a;
}

http_answer answer_confirm(std::uint32_t code, std::string_view msg_id, std::string_view topic,
                           milliseconds timeout) {
  std::string t{topic};
  http_answer a;
  switch (code) {
    case 0:
      a.status = 202;
      a.body = "{\"msg_id\":";
      append_json_string(a.body, msg_id);
      a.body += "}";
      break;
    case code_of(status::no_interest):
      a = error_answer(503, "no_subscriber", "nobody subscribes to " + t + ": the event was dropped");
      break;
    case code_of(status::dead_lettered):
      a = error_answer(422, "dead_lettered", "a consumer of " + t + " refused it (on $DLQ." + t + ")");
      break;
    case code_of(status::overloaded):
    case status_outbox_full: a = error_answer(429, "overloaded", "overloaded on the way to " + t); break;
    case status_timeout:
      a = error_answer(504, "timeout",
                       "not confirmed within " + ms_text(timeout) +
                         ": it may still be delivered (publish again with the same X-Msg-Id)");
      break;
    case code_of(status::expired):
      a = error_answer(504, "expired", "past its deadline before a consumer had it");
      break;
    case code_of(status::forbidden):
    case code_of(status::permission_denied):
      a = error_answer(403, status_name(code), "may not publish on " + t);
      break;
    case static_cast<std::uint32_t>(wire::errc::payload_too_large):
      a = error_answer(413, "payload_too_large", "over the broker's max_payload");
      break;
    default: {
      const auto* s = find_status(code);
      a = error_answer(s && s->retryable ? 503 : 502, status_name(code), status_text(code));
    }
  }
  a.headers.emplace_back("X-Msg-Id", std::string{msg_id});
  return a;
}

http_answer answer_status(int status, std::size_t max_body) {
  switch (status) {
    case 413:
      return error_answer(413, "payload_too_large",
                          "the body is over " + std::to_string(max_body) + " bytes");
    case 400: return error_answer(400, "bad_request", "a request that does not parse as HTTP/1.1");
    default:
      return error_answer(status, "http_" + std::to_string(status), "HTTP status " + std::to_string(status));
  }
}

} // namespace plexus::actors::detail
