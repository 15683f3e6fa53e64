// SPDX-License-Identifier: Apache-2.0
// Liveness: what keeps a session alive (PINGs to connections not heard
// from, probes of holders of unacked deliveries), what ends it (silence
// past `liveness` heartbeats, with a BYE that says so), and telling a
// slow consumer what it missed (ERR 112). PROTOCOL.md, "What keeps a
// session alive".
#include <algorithm>
#include <string>

#include "state.hpp"

namespace plexus::broker {

void core::state::heartbeats() {
  auto dead_after = cfg.heartbeat * cfg.liveness;
  std::vector<connection*> dead;
  for (auto& [id, c] : conns) {
    if (c->closing) {
      if (now - c->last_heard >= dead_after) dead.push_back(c.get()); // BYE undeliverable
      continue;
    }
    if (now - c->last_heard >= dead_after) {
      ++stats.heartbeat_timeouts;
      dead.push_back(c.get());
      continue;
    }
    if (!c->hello) continue;
    // A PING asks for an answer: to a connection not heard from for a
    // heartbeat, however much goes to it (a client that only receives
    // stays alive by answering), and as a probe to a holder of unacked
    // deliveries that nothing else goes to.
    bool silent = now - c->last_heard >= cfg.heartbeat && now - c->last_ping >= cfg.heartbeat;
    bool idle = c->out.empty() && now - c->last_sent >= cfg.heartbeat;
    bool probe = c->out.empty() && cfg.holder_probe.count() > 0
                 && now - c->last_sent >= cfg.holder_probe && holds_unacked(*c);
    if (silent || idle || probe) {
      output o;
      o.kind = wire::op::ping;
      if (enqueue(*c, std::move(o), false)) c->last_ping = now;
    }
    if (c->unreported_drops > 0 && now - c->last_drop_notice >= cfg.heartbeat) report_drops(*c);
  }
  for (auto* c : dead) {
    if (c->closing) forget(*c);
    else close(*c, "heartbeat timeout: nothing heard for " + std::to_string(dead_after.count()) + " ms");
  }
}

void core::state::report_drops(connection& c) {
  // One ERR 112 for every drop since the last, at most one a heartbeat:
  // the consumer learns that it missed messages and how many.
  auto t = std::make_shared<control_text>();
  t->count = static_cast<std::uint32_t>(std::min<std::uint64_t>(c.unreported_drops, 0xffffffffu));
  t->text = "slow consumer: " + std::to_string(c.unreported_drops)
            + " message(s) dropped, your queue was full";
  output o;
  o.kind = wire::op::err;
  o.code = static_cast<std::uint32_t>(status::slow_consumer);
  o.aux = std::move(t);
  c.last_drop_notice = now;
  if (enqueue(c, std::move(o), false)) c.unreported_drops = 0;
}

bool core::state::holds_unacked(const connection& c) {
  return std::any_of(c.subs.begin(), c.subs.end(),
                     [](const auto& kv) { return !kv.second->unacked.empty(); });
}

} // namespace plexus::broker
