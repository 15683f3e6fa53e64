// SPDX-License-Identifier: Apache-2.0
#pragma once

// A client connector's core (connector_core.hpp) with a fake clock and a
// model of its shell: the socket (open or not, with room or full), the
// subscriptions a new session restores, the confirm window's slots, and
// every frame written, decoded. The unit tests and the fuzzer drive it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "connector_core.hpp"

namespace plexus::test {

using connector_time = detail::connector_core::time_point;

/// A frame's envelope as the broker would read it (owned copies).
struct written {
  wire::op kind = wire::op::ping;
  std::uint32_t sid = 0, credit = 0, heartbeat_ms = 0;
  std::uint64_t seq = 0;
  std::string topic, msg_id, node, reply_to, payload;
  bool confirm = false;
};

/// An envelope as the outbox hands it over (counted for flush()).
inline detail::envelope make_envelope(const wire::header& h, std::string_view payload = {}) {
  auto e = detail::make_envelope(h, payload);
  e.counted = true;
  return e;
}

struct connector_rig {
  explicit connector_rig(detail::connector_config c = config()) : core(std::move(c)) {}

  static detail::connector_config config() {
    detail::connector_config c;
    c.node_id = "n1";
    c.lineage = 0xabc;
    c.endpoints = {"tcp://a:1", "tcp://b:2"};
    c.inbox_prefix = "_INBOX.n1.";
    c.heartbeat = std::chrono::milliseconds{250};
    c.liveness = 3;
    c.silence_timeout = std::chrono::milliseconds{3000};
    c.reconnect_min = std::chrono::milliseconds{100};
    c.reconnect_max = std::chrono::milliseconds{800};
    return c;
  }

  detail::connector_core core;
  connector_time now = connector_time{} + std::chrono::hours{1};

  // The shell's state.
  bool socket = false;   // a socket is open
  bool room = true;      // the socket takes frames
  std::vector<std::string> dialed;
  std::map<std::uint32_t, std::string> subs; // restored after each WELCOME
  std::size_t slots = 0;                     // of the confirm window, in use
  std::size_t began = 0;
  std::uint64_t max_payload = 0; // the last began's
  std::vector<std::pair<std::uint32_t, std::string>> reports;
  std::vector<std::string> paused; // patterns the broker paused, as the shell knows them
  std::uint64_t taken_counted = 0, finished = 0; // outbox envelopes in, written or dropped
  std::vector<written> out;                       // every envelope written, in order

  // ---------------------------------------------------------------- shell

  void carry_out() {
    auto& cmds = core.commands();
    for (std::size_t k = 0; k < cmds.size(); ++k) {
      std::visit([&](auto& c) { run(c); }, cmds[k]);
    }
    cmds.clear();
    finished += core.take_finished();
  }

  void run(detail::connector_cmd::dial& c) {
    socket = true;
    dialed.push_back(c.endpoint);
  }
  void run(detail::connector_cmd::hang_up&) { socket = false; }
  void run(detail::connector_cmd::began& c) {
    ++began;
    max_payload = c.max_payload;
    std::vector<detail::envelope> again;
    for (auto& [sid, pattern] : subs) again.push_back(sub_envelope(sid, pattern, false));
    core.restore(std::move(again));
  }
  void run(detail::connector_cmd::confirmed& c) {
    --slots;
    c.done(c.code);
  }
  void run(detail::connector_cmd::slot_freed&) { --slots; }
  void run(detail::connector_cmd::replied& c) { c.done(std::move(c.answer)); }
  void run(detail::connector_cmd::report& c) { reports.emplace_back(c.code, c.text); }
  void run(detail::connector_cmd::flow& c) { paused = c.paused; } // the shell's flow_gate

  /// Writes frames while the socket has room; returns how many.
  std::size_t write() {
    std::size_t n = 0;
    if (!socket || !room) return 0;
    while (auto f = core.next_frame()) {
      decode(*f);
      core.wrote(now);
      ++n;
    }
    finished += core.take_finished();
    return n;
  }

  void decode(const detail::connector_core::frame& f) {
    std::vector<wire::entry> entries;
    std::string_view first = f.first;
    if (!f.two_parts && wire::is_batch_frame(first)) {
      if (wire::decode_batch(first, limits, entries)) throw std::runtime_error("bad batch written");
    } else {
      std::string_view parts[2] = {f.first, f.second};
      entries.resize(1);
      if (wire::decode_message(std::span<const std::string_view>{parts, f.two_parts ? 2u : 1u},
                               limits, entries[0]))
        throw std::runtime_error("bad frame written");
    }
    for (auto& e : entries) {
      written w;
      w.kind = e.h.kind;
      w.sid = e.h.sid;
      w.credit = e.h.credit;
      w.heartbeat_ms = e.h.heartbeat_ms;
      w.seq = e.h.seq;
      w.topic = e.h.topic;
      w.msg_id = e.h.msg_id;
      w.node = e.h.node;
      w.reply_to = e.h.reply_to;
      w.payload = e.payload;
      w.confirm = (e.h.flags & wire::flag_confirm) != 0;
      out.push_back(std::move(w));
    }
  }

  // ---------------------------------------------------------------- inputs

  void start() {
    core.start(now);
    carry_out();
  }
  void advance(std::chrono::milliseconds dt) {
    now += dt;
    core.tick(now);
    carry_out();
  }
  void take(detail::envelope e) {
    taken_counted += e.counted;
    if (e.extras && e.extras->on_confirm) ++slots;
    std::vector<detail::envelope> v;
    v.push_back(std::move(e));
    core.take(v);
    carry_out();
  }
  /// An envelope from the broker.
  void hear(const wire::header& h) {
    core.heard(now);
    core.control(h, now);
    carry_out();
  }
  void welcome(std::string_view broker = "b1", std::vector<std::string> advertise = {},
               std::uint64_t payload_limit = 1024 * 1024) {
    wire::header h;
    h.kind = wire::op::welcome;
    h.node = broker;
    h.heartbeat_ms = 1000;
    h.max_payload = payload_limit;
    std::vector<std::string_view> items(advertise.begin(), advertise.end());
    advertised.clear();
    h.brokers = wire::pack_string_list(items, advertised);
    hear(h);
  }
  /// dial, HELLO out, WELCOME in.
  void connect(std::string_view broker = "b1") {
    if (!socket) start();
    write();
    welcome(broker);
  }

  // ---------------------------------------------------------------- envelopes

  static detail::envelope pub(std::string_view topic, std::string_view payload) {
    wire::header h;
    h.kind = wire::op::pub;
    h.topic = topic;
    return make_envelope(h, payload);
  }
  static detail::envelope confirmed(std::string_view topic, std::string_view msg_id,
                                    client::confirm_handler done) {
    wire::header h;
    h.kind = wire::op::pub;
    h.topic = topic;
    h.msg_id = msg_id;
    h.flags = wire::flag_confirm;
    auto e = make_envelope(h, "x");
    e.extras = std::make_unique<detail::envelope_extras>();
    e.extras->msg_id = msg_id;
    e.extras->on_confirm = std::move(done);
    return e;
  }
  detail::envelope request(std::uint64_t id, std::chrono::milliseconds timeout,
                           client::reply_handler done) const {
    wire::header h;
    h.kind = wire::op::pub;
    h.topic = "svc";
    auto inbox = "_INBOX.n1." + std::to_string(id);
    h.reply_to = inbox;
    auto e = make_envelope(h, "q");
    e.extras = std::make_unique<detail::envelope_extras>();
    e.extras->on_reply = std::move(done);
    e.extras->request_id = id;
    e.extras->request_deadline = now + timeout;
    return e;
  }
  static detail::envelope ack(std::uint64_t seq, std::uint16_t session) {
    wire::header h;
    h.kind = wire::op::ack;
    h.sid = 1;
    h.seq = seq;
    auto e = make_envelope(h);
    e.session = session;
    return e;
  }
  static detail::envelope sub_envelope(std::uint32_t sid, std::string_view pattern, bool counted = true) {
    wire::header h;
    h.kind = wire::op::sub;
    h.sid = sid;
    h.topic = pattern;
    auto e = make_envelope(h);
    e.counted = counted;
    return e;
  }

  // ---------------------------------------------------------------- reading

  std::vector<written> of(wire::op kind) const {
    std::vector<written> r;
    for (auto& w : out)
      if (w.kind == kind) r.push_back(w);
    return r;
  }

  wire::limits limits{};
  std::string advertised;
};

} // namespace plexus::test
