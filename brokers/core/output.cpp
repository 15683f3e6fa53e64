// SPDX-License-Identifier: Apache-2.0
// Outputs as they go on the wire: their headers, their batch entries, and
// MSG runs (PROTOCOL.md "MSG runs").
#include <limits>

#include "state.hpp"

namespace plexus::broker {

void carry_message(const message& m, wire::header& h) {
  h.topic = m.topic;
  h.msg_id = m.msg_id;
  h.reply_to = m.reply_to;
  h.headers = m.headers;
  h.deadline_ns = m.deadline_ns;
  h.traceparent = m.traceparent;
}

wire::header output::header() const {
  wire::header h;
  h.kind = kind;
  h.sid = sid;
  h.delivery = delivery;
  h.code = code;
  h.seq = seq;
  switch (kind) {
    case wire::op::msg: carry_message(*msg, h); break;
    case wire::op::confirm: h.msg_id = msg->msg_id; break;
    case wire::op::err:
    case wire::op::bye: {
      const auto& t = *static_cast<const control_text*>(aux.get());
      h.text = t.text;
      h.msg_id = t.msg_id;
      h.reply_to = t.reply_to;
      h.count = t.count;
      break;
    }
    case wire::op::welcome:
    case wire::op::peer_hello: {
      const welcome_info* w = nullptr;
      if (kind == wire::op::welcome) {
        w = static_cast<const welcome_info*>(aux.get());
      } else {
        const auto& hi = *static_cast<const hello_info*>(aux.get());
        w = hi.welcome.get();
        h.auth = hi.auth;
      }
      h.node = w->node;
      if (kind == wire::op::welcome) h.flags = w->flags;
      h.heartbeat_ms = w->heartbeat_ms;
      h.max_payload = w->max_payload;
      h.brokers = w->brokers;
      break;
    }
    case wire::op::fwd: {
      const auto& f = *static_cast<const forward_info*>(aux.get());
      carry_message(*msg, h);
      h.publisher = msg->publisher;
      h.user = msg->user;
      h.node = f.origin;
      h.queue = f.queue;
      h.flags = seq != 0 ? wire::flag_confirm : 0; // a relay is wanted
      break;
    }
    case wire::op::interest_add:
    case wire::op::interest_remove:
    case wire::op::pause:
    case wire::op::resume: {
      const auto& t = *static_cast<const interest_text*>(aux.get());
      h.topic = t.pattern;
      h.queue = t.queue;
      h.credit = t.credit;
      break;
    }
    case wire::op::confirm_relay:
      h.node = static_cast<const welcome_info*>(aux.get())->node;
      break;
    default: break;
  }
  return h;
}

std::string_view output::payload() const noexcept {
  return kind == wire::op::msg || kind == wire::op::fwd ? msg->payload : std::string_view{};
}

void output::encode_header(std::string& out) const {
  if (kind == wire::op::msg) wire::encode_msg_header(sid, msg->encoded, seq, delivery, out);
  else wire::encode_header(header(), out);
}

void output::add_to(wire::batch_writer& w) const {
  if (kind == wire::op::msg) w.add_msg(sid, msg->encoded, seq, delivery, msg->payload);
  else w.add(header(), payload());
}

std::size_t msg_run_length(std::span<const output> outs, std::size_t max,
                           std::size_t bytes) noexcept {
  if (outs.empty() || outs[0].kind != wire::op::msg) return outs.empty() ? 0 : 1;
  const auto& first = outs[0];
  const auto fields = first.msg->encoded.bytes;
  std::size_t n = 1;
  std::size_t used = first.msg->payload.size() + 5;
  while (n < outs.size() && n < max) {
    const auto& o = outs[n];
    const auto& before = outs[n - 1];
    if (o.kind != wire::op::msg || o.sid != first.sid || o.delivery != first.delivery
        || o.seq != (first.seq == 0 ? 0 : before.seq + 1)
        || (o.msg != first.msg && o.msg->encoded.bytes != fields))
      break;
    // bin header (at most 5 bytes) and body
    used += o.msg->payload.size() + 5;
    if (used > bytes) break;
    ++n;
  }
  return n;
}

void add_msg_run(wire::batch_writer& w, std::span<const output> run) {
  const auto& first = run.front();
  w.begin_msg_run(first.sid, first.msg->encoded, first.seq, first.delivery,
                  static_cast<std::uint32_t>(run.size()));
  for (const auto& o : run) w.add_run_payload(o.msg->payload);
}

std::size_t fill_batch(wire::batch_writer& w, std::span<const output> outs, std::size_t max,
                       std::size_t max_bytes, bool runs) {
  constexpr std::size_t header_room = 64; // a header's bytes, about
  std::size_t n = 0;
  while (n < outs.size() && n < max
         && (n == 0 || w.bytes() + outs[n].payload().size() + header_room <= max_bytes)) {
    const auto room = max_bytes > w.bytes() + header_room ? max_bytes - w.bytes() - header_room : 0;
    const auto run = runs ? msg_run_length(outs.subspan(n), max - n, room) : 1;
    if (run == 1) {
      outs[n++].add_to(w);
      continue;
    }
    add_msg_run(w, outs.subspan(n, run));
    n += run;
    constexpr auto any = std::numeric_limits<std::size_t>::max();
    if (n < outs.size() && msg_run_length(outs.subspan(n - 1), 2, any) == 2) break;
  }
  return n;
}

} // namespace plexus::broker
