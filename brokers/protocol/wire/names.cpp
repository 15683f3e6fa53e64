// SPDX-License-Identifier: Apache-2.0
// Names of ops, fields and errors; the std::error_category of wire errors.
#include <array>

#include "plexus/wire.hpp"

namespace plexus::wire {

const char* to_string(op o) noexcept {
  switch (o) {
    case op::hello: return "HELLO";
    case op::welcome: return "WELCOME";
    case op::sub: return "SUB";
    case op::unsub: return "UNSUB";
    case op::pub: return "PUB";
    case op::msg: return "MSG";
    case op::ack: return "ACK";
    case op::nack: return "NACK";
    case op::credit: return "CREDIT";
    case op::confirm: return "CONFIRM";
    case op::ping: return "PING";
    case op::pong: return "PONG";
    case op::err: return "ERR";
    case op::bye: return "BYE";
    case op::pause: return "PAUSE";
    case op::resume: return "RESUME";
    case op::peer_hello: return "PEER_HELLO";
    case op::interest_add: return "INTEREST+";
    case op::interest_remove: return "INTEREST-";
    case op::fwd: return "FWD";
    case op::confirm_relay: return "CONFIRM_RELAY";
  }
  return "?";
}


const char* to_string(field f) noexcept {
  static constexpr std::array<const char*, field_count> names{
    "version", "op", "sid", "topic", "queue", "msg_id", "reply_to", "headers",
    "deadline", "traceparent", "flags", "seq", "delivery", "credit", "ack_mode",
    "ack_wait", "max_deliver", "action", "delay", "code", "text", "node",
    "heartbeat", "brokers", "max_payload", "count", "publisher", "auth", "user"};
  auto i = static_cast<std::size_t>(f);
  if (i < names.size()) return names[i];
  switch (f) {
    case field::key: return "map key";
    case field::unknown: return "unknown field";
    case field::payload: return "payload";
    case field::frame: return "frame";
    case field::batch: return "batch";
    default: return "-";
  }
}

const char* to_string(errc e) noexcept {
  switch (e) {
    case errc::ok: return "ok";
    case errc::truncated: return "truncated";
    case errc::malformed: return "malformed msgpack";
    case errc::trailing_bytes: return "trailing bytes after the header";
    case errc::not_a_map: return "header is not a map";
    case errc::wrong_type: return "wrong type";
    case errc::duplicate_field: return "duplicate field";
    case errc::missing_field: return "missing field";
    case errc::bad_version: return "unsupported protocol version";
    case errc::unknown_op: return "unknown op";
    case errc::value_out_of_range: return "value out of range";
    case errc::header_too_large: return "header too large";
    case errc::payload_too_large: return "payload too large";
    case errc::unexpected_payload: return "payload on an op that carries none";
    case errc::missing_payload: return "missing payload";
    case errc::string_too_long: return "string too long";
    case errc::too_many_headers: return "too many headers";
    case errc::map_too_large: return "map too large";
    case errc::array_too_large: return "array too large";
    case errc::too_deep: return "nested too deep";
    case errc::bad_topic: return "bad topic";
    case errc::bad_pattern: return "bad pattern";
    case errc::batch_too_large: return "batch too large";
    case errc::batch_too_many: return "too many entries in batch";
    case errc::bad_batch: return "bad batch";
    case errc::too_many_frames: return "too many frames";
  }
  return "unknown wire error";
}

namespace {
struct category final : std::error_category {
  const char* name() const noexcept override { return "plexus.wire"; }
  std::string message(int ev) const override { return to_string(static_cast<errc>(ev)); }
};
} // namespace

const std::error_category& wire_category() noexcept {
  static const category c;
  return c;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), wire_category()};
}

std::string to_string(const decode_error& e) {
  std::string s;
  if (e.in_batch) {
    s += "batch entry ";
    s += std::to_string(e.index);
    s += ": ";
  }
  if (e.where != field::none && e.where != field::batch) {
    s += to_string(e.where);
    s += ": ";
  }
  s += to_string(e.code);
  if (e.topic != topic_errc::ok) {
    s += " (";
    s += to_string(e.topic);
    s += ")";
  }
  return s;
}

} // namespace plexus::wire

namespace plexus {

namespace {
// Texts are NUL-terminated literals: status_text hands out .data().
constexpr status_info statuses[] = {
  {status::ok, "ok", "ok", false},
  {status::no_responders, "no_responders", "no responders", true},
  {status::no_interest, "no_interest", "no interest (accepted, but nobody subscribes)", true},
  {status::dead_lettered, "dead_lettered", "dead-lettered", false},
  {status::overloaded, "overloaded", "overloaded (dropped)", true},
  {status::expired, "expired", "expired", false},
  {status::forbidden, "forbidden", "forbidden", false},
  {status::unknown_subscription, "unknown_subscription", "unknown subscription", false},
  {status::too_many_subscriptions, "too_many_subscriptions", "too many subscriptions", false},
  {status::protocol_violation, "protocol_violation", "protocol violation", false},
  {status::duplicate_sid, "duplicate_sid", "duplicate subscription id", false},
  {status::peer_lost, "peer_lost", "peer lost", true},
  {status::returned, "returned", "returned (the peer has no member left)", true},
  {status::slow_consumer, "slow_consumer", "slow consumer (the broker dropped messages)", false},
  {status::not_authorized, "not_authorized", "not authorized", false},
  {status::permission_denied, "permission_denied", "permission denied", false},
  {status::full, "full", "full (a durable queue is at its limit)", true},
  {status::unavailable, "unavailable", "unavailable (a durable queue's home broker is out of reach)",
   true},
  {status::timeout, "timeout", "timeout", true},
  {status::disconnected, "disconnected", "disconnected", true},
  {status::outbox_full, "outbox_full", "unconfirmed outbox full", true},
  {status::failed, "failed", "the responder failed", false},
  {status::session_lost, "session_lost", "session lost", true},
  {status::handler_stall, "handler_stall", "a handler blocked the I/O thread", false},
  {status::circuit_open, "circuit_open", "circuit open (the client did not send the request)", true},
};
} // namespace

std::span<const status_info> status_table() noexcept { return statuses; }

const status_info* find_status(std::uint32_t code) noexcept {
  for (const auto& s : statuses)
    if (static_cast<std::uint32_t>(s.code) == code) return &s;
  return nullptr;
}

const char* status_text(std::uint32_t code) noexcept {
  if (const auto* s = find_status(code)) return s->text.data();
  if (code > 0 && code < 100) return wire::to_string(static_cast<wire::errc>(code));
  return "unknown status";
}

} // namespace plexus
