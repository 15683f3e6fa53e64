// SPDX-License-Identifier: Apache-2.0
// At-least-once: ACK, NACK (requeue, delay, dead-letter), ack timeouts,
// redelivery to another member, and dead letters on $DLQ.<topic>.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <tuple>

#include "state.hpp"

namespace plexus::broker {

namespace {
// Takes the unacked delivery (sid, seq) out of `c`, if it is there.
bool take_inflight(connection& c, std::uint32_t sid, std::uint64_t seq, inflight& out) {
  auto it = c.subs.find(sid);
  return it != c.subs.end() && it->second->unacked.take(seq, out);
}
} // namespace

void core::state::on_ack(connection& c, const wire::header& h) {
  // ACK settles seq .. seq+count-1 (count 0 or 1: just seq). The walk is
  // over what is unacked in that range, never over the range itself, so a
  // huge count costs no more than the deliveries it names.
  const std::uint64_t n = h.count > 1 ? h.count : 1;
  const std::uint64_t last = h.seq + std::min(n - 1, ~std::uint64_t{0} - h.seq);
  auto it = c.subs.find(h.sid);
  if (it == c.subs.end()) {
    send_err(c, status::unknown_subscription, "ACK for an unknown subscription", &h);
    return;
  }
  const auto ack_wait = it->second->ack_wait;
  auto found = it->second->unacked.take_range(h.seq, last, [&](inflight&& f) {
    // Sent at its deadline less the subscription's ack_wait.
    auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(now - (f.deadline - ack_wait));
    auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, took.count()));
    ack_latency.record(ns);
    if (!c.ack_latency) c.ack_latency = std::make_unique<observe::latency_histogram>();
    c.ack_latency->record(ns);
    settle(*f.msg, status::ok);
  });
  if (found && it->second->grp) mark_dirty(*it->second->grp);
  stats.acks += found;
  if (found < n) ++stats.late_acks; // one per envelope: a huge count cannot inflate it
}

void core::state::on_nack(connection& c, const wire::header& h) {
  inflight f;
  if (!take_inflight(c, h.sid, h.seq, f)) {
    if (!c.subs.contains(h.sid)) send_err(c, status::unknown_subscription, "NACK for an unknown subscription", &h);
    else ++stats.late_acks;
    return;
  }
  ++stats.nacks;
  auto& s = *c.subs.at(h.sid);
  std::string why = h.text.empty() ? std::string{"nack"} : std::string{h.text};
  switch (h.action) {
    case wire::nack_action::dead_letter:
      dead_letter(f.msg, f.delivery, why);
      settle(*f.msg, status::dead_lettered);
      return;
    case wire::nack_action::delay:
      if (f.delivery < s.max_deliver && h.delay_ms > 0) {
        // The obligation moves to the timer; redelivered when it fires.
        delayed_nacks.emplace(now + milliseconds{h.delay_ms},
                              delayed{f.msg, c.id, s.sid, s.grp ? s.grp->key : std::string{},
                                      f.delivery});
        return;
      }
      [[fallthrough]];
    case wire::nack_action::requeue:
      retry(s, std::move(f), why);
      return;
  }
}

void core::state::retry(subscription& s, inflight f, std::string_view why) {
  if (f.delivery >= s.max_deliver) {
    dead_letter(f.msg, f.delivery, why);
    settle(*f.msg, status::dead_lettered);
    return;
  }
  ++stats.redeliveries;
  // The new delivery takes its obligation before the old one is settled,
  // so a publisher's CONFIRM cannot slip out in between.
  if (s.grp) {
    deliver_to_group(*s.grp, {f.msg, f.delivery}, &s, true);
    settle(*f.msg, status::ok);
  } else {
    bool sent = deliver(s, f.msg, f.delivery + 1);
    settle(*f.msg, sent ? status::ok : status::overloaded);
  }
}

void core::state::ack_timeouts() {
  // Collect first: redelivery may add unacked entries.
  std::vector<std::tuple<connection*, std::uint32_t, std::uint64_t>> due;
  for (auto& [id, c] : conns) {
    if (c->closing || c->doomed) continue;
    for (auto& [sid, sub] : c->subs)
      sub->unacked.scan([&, cp = c.get(), sid = sid](std::uint64_t seq, const inflight& f) {
        if (f.deadline > now) return false; // ordered by seq, hence by deadline
        due.emplace_back(cp, sid, seq);
        return true;
      });
  }
  for (auto& [c, sid, seq] : due) {
    inflight f;
    if (c->doomed || !take_inflight(*c, sid, seq, f)) continue;
    ++stats.ack_timeouts;
    retry(*c->subs.at(sid), std::move(f), "ack timeout");
  }
}

void core::state::delayed_redeliveries() {
  while (!delayed_nacks.empty() && delayed_nacks.begin()->first <= now) {
    auto d = std::move(delayed_nacks.begin()->second);
    delayed_nacks.erase(delayed_nacks.begin());
    ++stats.redeliveries;
    if (!d.group_key.empty()) {
      if (auto g = groups.find(d.group_key); g != groups.end()) {
        deliver_to_group(*g->second, {d.msg, d.delivery}, nullptr, true);
        settle(*d.msg, status::ok);
      } else {
        settle(*d.msg, status::no_interest);
      }
      continue;
    }
    auto* c = find(d.conn);
    auto s = c ? c->subs.find(d.sid) : decltype(c->subs.find(d.sid)){};
    bool sent = c && s != c->subs.end() && deliver(*s->second, d.msg, d.delivery + 1);
    settle(*d.msg, sent ? status::ok : status::no_interest);
  }
}

void core::state::dead_letter(const message_ptr& m, std::uint32_t delivery,
                              std::string_view why) {
  ++stats.dead_letters;
  std::string topic = "$DLQ.";
  topic += m->topic;
  if (validate_topic(topic, cfg.limits.topic) != topic_errc::ok) {
    ++stats.dead_letters_dropped; // "$DLQ." made it too long: counted, not sent
    return;
  }
  // The original headers, when they leave room, plus why it died.
  std::vector<std::pair<std::string_view, std::string_view>> items;
  if (m->headers.size() + 4 <= cfg.limits.max_headers) items = m->headers.items();
  auto reason = why.substr(0, cfg.limits.max_header_value_bytes);
  auto count = std::to_string(delivery);
  auto when = std::to_string(now.count());
  items.emplace_back("plexus-dlq-reason", reason);
  items.emplace_back("plexus-dlq-deliveries", count);
  items.emplace_back("plexus-dlq-topic", m->topic);
  items.emplace_back("plexus-dlq-time", when);
  std::string packed;
  auto headers = wire::pack_string_map(items, packed);
  wire::header h;
  h.kind = wire::op::pub;
  h.topic = topic;
  h.msg_id = m->msg_id;
  h.traceparent = m->traceparent;
  auto dlq = message::copy_of(h, m->payload, {}, {}, headers.raw(), headers.size());
  route_message(dlq);
  if (dlq->outcome == status::no_interest) ++stats.dead_letters_dropped;
}

} // namespace plexus::broker
