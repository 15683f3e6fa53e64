// SPDX-License-Identifier: Apache-2.0
// Publish: dedup, deadlines, fan-out to subscriptions, one member per queue
// group against credit, publisher confirms, request/reply.
#include <algorithm>
#include <cstring>

#include "state.hpp"

namespace plexus::broker {

namespace {
// Allocates the shared_ptr control block with the message in it and
// `extra` bytes after it, where the message's strings go: one allocation
// per message. `tail` learns where the extra bytes start.
template <class T>
struct with_tail {
  using value_type = T;
  std::size_t extra;
  char** tail;
  with_tail(std::size_t e, char** t) noexcept : extra(e), tail(t) {}
  template <class U>
  with_tail(const with_tail<U>& o) noexcept : extra(o.extra), tail(o.tail) {}
  T* allocate(std::size_t n) {
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    auto* p = static_cast<char*>(::operator new(n * sizeof(T) + extra));
    *tail = p + n * sizeof(T);
    return reinterpret_cast<T*>(p);
  }
  // Unsized: clang 14 has no sized deallocation unless asked (the fuzz build).
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(static_cast<void*>(p)); }
  template <class U>
  bool operator==(const with_tail<U>& o) const noexcept { return extra == o.extra; }
};
} // namespace

std::shared_ptr<message> message::copy_of(const wire::header& h, std::string_view payload,
                                          std::string_view publisher,
                                          std::string_view user,
                                          std::string_view extra_headers,
                                          std::uint32_t extra_count) {
  // Its strings are kept as its MSGs say them, encoded once for all its
  // deliveries; the views point into those bytes.
  wire::msg_fields fields{h.topic, h.msg_id, h.reply_to, h.traceparent,
                          extra_headers.empty() ? h.headers
                                                : wire::string_map_view{extra_headers, extra_count},
                          h.deadline_ns};
  char* tail = nullptr;
  auto m = std::allocate_shared<message>(
    with_tail<message>{wire::encoded_size(fields) + payload.size() + publisher.size() + user.size(),
                       &tail});
  m->encoded = wire::encode_msg_fields(fields, tail);
  m->topic = fields.topic;
  m->msg_id = fields.msg_id;
  m->reply_to = fields.reply_to;
  m->traceparent = fields.traceparent;
  m->headers = fields.headers;
  m->deadline_ns = h.deadline_ns;
  tail += m->encoded.bytes.size();
  if (!payload.empty()) std::memcpy(tail, payload.data(), payload.size());
  m->payload = {tail, payload.size()};
  tail += payload.size();
  if (!publisher.empty()) std::memcpy(tail, publisher.data(), publisher.size());
  m->publisher = {tail, publisher.size()};
  tail += publisher.size();
  if (!user.empty()) std::memcpy(tail, user.data(), user.size());
  m->user = {tail, user.size()};
  return m;
}

bool core::state::expired(const message& m) const {
  return m.deadline_ns != 0 && m.deadline_ns <= static_cast<std::uint64_t>(now.count());
}

void core::state::on_pub(connection& c, const wire::entry& e) {
  const auto& h = e.h;
  ++c.msgs_in;
  bool wants_confirm = (h.flags & wire::flag_confirm) != 0;
  auto answer = [&](status st) { // a CONFIRM for a message never stored
    if (!wants_confirm) return;
    wire::header id_only;
    id_only.msg_id = h.msg_id;
    auto m = message::copy_of(id_only, {});
    m->confirm = true;
    m->confirm_to = c.id;
    m->outcome = st;
    send_confirm(m);
  };
  if (h.topic.starts_with("$SYS.broker.")) { // the broker's own namespace
    ++stats.bad_frames;
    send_err(c, status::forbidden, "clients may not publish on $SYS.broker.", &h);
    return;
  }
  if (auth && !permit_pub(c, h)) return;
  if (is_queue_admin(h.topic)) {
    on_queue_admin(c, h);
    return;
  }
  if (h.deadline_ns != 0 && h.deadline_ns <= static_cast<std::uint64_t>(now.count())) {
    ++stats.expired;
    answer(status::expired);
    return;
  }
  // A shared id (wire::flag_shared_id) is the event's: its scope is the
  // topic, whoever publishes it.
  const bool shared = (h.flags & wire::flag_shared_id) != 0 && !h.msg_id.empty();
  if (shared) shared_scope.assign("S ").append(h.topic);
  std::string_view scope = shared ? std::string_view{shared_scope} : std::string_view{c.scope};
  if (!h.msg_id.empty()) {
    if (auto* d = dedup.find(dedup_key(scope, h.msg_id, key_scratch))) {
      ++stats.duplicates;
      auto original = d->msg.lock();
      if (original && !d->settled) {
        // Still in flight: its CONFIRM goes to whoever sent it last (a
        // publisher that failed over re-sends on a new connection); for a
        // shared id, to every publisher that sent it.
        if (wants_confirm && shared && original->confirm && original->confirm_to != c.id) {
          if (!original->also_confirm) original->also_confirm = std::make_unique<std::vector<conn_id>>();
          original->also_confirm->push_back(c.id);
        } else if (wants_confirm) {
          original->confirm = true;
          original->confirm_to = c.id;
        }
      } else {
        answer(d->outcome);
      }
      return;
    }
  }
  // Flow control: a confirmed publish to a group past its pause mark is
  // refused before anything of it is delivered, so the publisher's resend
  // is no duplicate anywhere (plain ones are taken: see deliver_to_group).
  if (wants_confirm && c.flow_control && flow_on()) {
    if (auto* g = paused_route(h.topic)) {
      ++stats.paused_refusals;
      pause(c, *g);
      answer(status::overloaded);
      return;
    }
  }
  // The publisher's scope is kept only with a msg id: it is the dedup key's.
  auto m = message::copy_of(h, e.payload, h.msg_id.empty() ? std::string_view{} : scope,
                            auth ? std::string_view{c.user} : std::string_view{});
  m->confirm = wants_confirm;
  m->confirm_to = c.id;
  if (!m->msg_id.empty())
    stats.dedup_evictions += dedup.insert(dedup_key(scope, m->msg_id, key_scratch), now, m);
  ++stats.msgs_in;
  stats.bytes_in += e.payload.size();
  publisher = c.flow_control && flow_on() ? &c : nullptr;
  auto routes = route_message(m);
  publisher = nullptr;
  if (!m->reply_to.empty() && m->outcome == status::no_interest) {
    ++stats.no_responders;
    send_err(c, status::no_responders, "no responders", &h);
  } else if (!m->reply_to.empty() && routes == 1 && m->outcome == status::overloaded) {
    // Its one way on is full: the requester hears so now, not at its timeout.
    send_err(c, status::overloaded, "overloaded: the queue group's queue is full", &h);
  }
}

std::size_t core::state::route_message(const message_ptr& m) {
  // Deliveries never change the trie while we walk the matches: a
  // connection that must close is only doomed here (see request_close).
  auto& routes = scratch;
  routes.clear();
  trie.match_cached(m->topic, routes);
  m->unsettled = 1; // held until routing is done
  ++route_gen;
  for (auto* r : routes) {
    switch (r->kind) {
      case route_kind::group:
        if (auto* g = static_cast<group*>(r); g->dur) capture(*g->dur, m);
        else deliver_to_group(*g, {m, 0}, nullptr, false);
        break;
      case route_kind::subscription: deliver(*static_cast<subscription*>(r), m, 1); break;
      case route_kind::interest: forward(*static_cast<interest*>(r)->owner, m); break;
    }
  }
  check_remote_durables(*m);
  if (routes.empty() && m->outcome != status::unavailable) ++stats.no_interest;
  settle(*m, routes.empty() ? status::no_interest : status::ok);
  return routes.size();
}

bool core::state::deliver(subscription& s, const message_ptr& m, std::uint32_t delivery) {
  // A plain subscriber the message does not reach makes its confirm say
  // why: code 0 promises that every subscriber it matched has it. (A
  // group's message that a member cannot take goes to another, or waits.)
  auto missed = [&](status why) {
    if (!s.grp) note_outcome(*m, why);
    return false;
  };
  auto* c = s.owner;
  if (c->closing || c->doomed) return missed(status::overloaded);
  if (expired(*m)) {
    ++stats.expired;
    return missed(status::expired);
  }
  output o;
  o.kind = wire::op::msg;
  o.sid = s.sid;
  o.delivery = delivery;
  bool acked = s.ack == wire::ack_mode::explicit_ack;
  if (acked) o.seq = c->next_seq++;
  o.msg = m;
  auto seq = o.seq;
  // A plain subscriber's message may be dropped for a slow consumer (its
  // confirm then says 103); a group's is bounded by credit, and a member
  // that asks for more than its queue holds is disconnected.
  bool droppable = !s.grp;
  if (!enqueue(*c, std::move(o), droppable)) return missed(status::overloaded);
  ++s.delivered;
  ++stats.msgs_out;
  stats.bytes_out += m->payload.size();
  if (s.grp && s.credit > 0) {
    --s.credit;
    mark_dirty(*s.grp);
  }
  if (acked) {
    s.unacked.push(seq, inflight{m, delivery, now + s.ack_wait});
    ++m->unsettled;
  }
  // A request: with auth its receiver may answer it once (allow_responses).
  if (auth && !m->reply_to.empty() && reserved_namespace(m->reply_to) == reserved::inbox) {
    auto until = m->deadline_ns != 0 ? time_point{static_cast<std::int64_t>(m->deadline_ns)}
                                     : now + cfg.reply_window;
    stats.open_replies_dropped += c->replies.open(m->reply_to, until, cfg.max_open_replies);
  }
  return true;
}

bool core::state::permit_pub(connection& c, const wire::header& h) {
  const auto& p = *c.perms; // receive() lets only known users this far
  // Where a request's answers go: the publisher's own inbox, or a subject
  // it may publish on itself (else it could aim responders at others).
  if (!h.reply_to.empty() && reserved_namespace(h.reply_to) == reserved::inbox) {
    constexpr std::string_view inbox = "_INBOX.";
    auto rest = h.reply_to.substr(inbox.size());
    auto own = c.owns_node && rest.size() > c.node.size() && rest.starts_with(c.node)
               && rest[c.node.size()] == '.';
    if (!own && !may_publish(p, h.reply_to)) {
      deny(c, "user '" + c.user + "' may not ask for replies on '" + std::string{h.reply_to} + "'",
           &h);
      return false;
    }
  }
  if (may_publish(p, h.topic)) return true;
  // An answer to a request it was delivered: once, before its deadline.
  if (reserved_namespace(h.topic) == reserved::inbox && may_respond(p, h.topic)
      && c.replies.take(h.topic, now))
    return true;
  deny(c, "user '" + c.user + "' may not publish on '" + std::string{h.topic} + "'", &h);
  return false;
}

namespace {
// The next member with credit, round robin from g.next; `avoid` (the member
// that just failed with this message) only when nobody else can take it.
subscription* pick_member(group& g, const subscription* avoid) {
  subscription* fallback = nullptr;
  auto n = g.members.size();
  for (std::size_t i = 0; i < n; ++i) {
    auto idx = (g.next + i) % n;
    auto* s = g.members[idx];
    if (s->credit == 0 || s->owner->doomed) continue;
    if (s == avoid) {
      fallback = s;
      continue;
    }
    g.next = (idx + 1) % n;
    return s;
  }
  return fallback;
}
} // namespace

void core::state::deliver_to_group(group& g, queued_msg q, const subscription* avoid,
                                   bool front) {
  ++q.msg->unsettled; // the group holds it until a member has it
  if (expired(*q.msg)) {
    ++stats.expired;
    settle(*q.msg, status::expired);
    return;
  }
  if (g.waiting.empty() || front) {
    // A failed delivery dooms its member's connection, so pick_member
    // moves on; the loop ends when nobody with credit is left.
    while (auto* s = pick_member(g, avoid)) {
      if (deliver(*s, q.msg, q.delivery + 1)) {
        settle(*q.msg, status::ok);
        return;
      }
      if (!s->owner->doomed) break;
    }
    // No local member with credit: a peer broker with capacity left.
    if (forward_to_group(g, q)) {
      settle(*q.msg, status::ok);
      return;
    }
  }
  auto bytes = q.msg->payload.size();
  // A new message from a publisher that does flow control (on_pub): one
  // that lands past the group's pause mark pauses it for this group.
  auto* from = !front && q.delivery == 0 ? publisher : nullptr;
  // A durable's queue is bounded by its limits, when a message is captured.
  if (!g.dur
      && (g.waiting.size() >= cfg.group_queue_msgs
          || g.waiting_bytes + bytes > cfg.group_queue_bytes)) {
    ++stats.group_queue_drops;
    if (from) { // it sent on after PAUSE (or that PAUSE is still on its way)
      ++stats.flow_overruns;
      pause(*from, g);
    }
    settle(*q.msg, status::overloaded);
    return;
  }
  g.waiting_bytes += bytes;
  if (front) g.waiting.push_front(std::move(q));
  else g.waiting.push_back(std::move(q));
  if (g.waiting.size() > stats.group_queue_peak) stats.group_queue_peak = g.waiting.size();
  if (from && !g.dur && past_pause_mark(g)) pause(*from, g);
}

// ---------------------------------------------------------------- flow control

bool core::state::past_pause_mark(const group& g) const noexcept {
  return g.waiting.size() >= pause_msgs || g.waiting_bytes >= pause_bytes;
}

group* core::state::paused_route(std::string_view topic) {
  auto& routes = scratch;
  routes.clear();
  trie.match_cached(topic, routes);
  for (auto* r : routes) {
    if (r->kind != route_kind::group) continue;
    auto* g = static_cast<group*>(r);
    if (!g->dur && past_pause_mark(*g)) return g;
  }
  return nullptr;
}

void core::state::pause(connection& c, group& g) {
  if (std::find(g.paused.begin(), g.paused.end(), &c) != g.paused.end()) return;
  if (!g.flow_aux) {
    auto t = std::make_shared<interest_text>();
    t->pattern = g.pattern;
    t->queue = g.name;
    g.flow_aux = std::move(t);
  }
  g.paused.push_back(&c);
  c.paused_on.push_back(&g);
  ++c.pauses;
  ++stats.pauses;
  output o;
  o.kind = wire::op::pause;
  o.aux = g.flow_aux;
  enqueue(c, std::move(o), false);
}

void core::state::resume_all(group& g) {
  for (auto* c : g.paused) {
    std::erase(c->paused_on, &g);
    ++stats.resumes;
    output o;
    o.kind = wire::op::resume;
    o.aux = g.flow_aux;
    enqueue(*c, std::move(o), false);
  }
  g.paused.clear();
}

void core::state::maybe_resume(group& g) {
  if (!g.paused.empty() && g.waiting.size() <= resume_msgs && g.waiting_bytes <= resume_bytes)
    resume_all(g);
}

void core::state::forget_pauses(connection& c) {
  for (auto* g : c.paused_on) std::erase(g->paused, &c);
  c.paused_on.clear();
}

void core::state::drain_group(group& g) {
  while (!g.waiting.empty()) {
    auto* s = pick_member(g, nullptr);
    if (!s) {
      if (!forward_to_group(g, g.waiting.front())) break;
      auto q = std::move(g.waiting.front());
      g.waiting.pop_front();
      g.waiting_bytes -= q.msg->payload.size();
      settle(*q.msg, status::ok);
      continue;
    }
    auto q = std::move(g.waiting.front());
    g.waiting.pop_front();
    g.waiting_bytes -= q.msg->payload.size();
    if (expired(*q.msg)) {
      ++stats.expired;
      settle(*q.msg, status::expired);
      continue;
    }
    if (!deliver(*s, q.msg, q.delivery + 1)) {
      g.waiting_bytes += q.msg->payload.size();
      g.waiting.push_front(std::move(q));
      break;
    }
    settle(*q.msg, status::ok);
  }
  maybe_resume(g);
}

void core::state::note_outcome(message& m, status outcome) {
  // The first failure wins over "ok"; no_interest only when nothing else.
  if (outcome != status::ok && (m.outcome == status::ok || m.outcome == status::no_interest))
    m.outcome = outcome;
}

void core::state::settle(message& m, status outcome) {
  note_outcome(m, outcome);
  if (m.unsettled == 0 || --m.unsettled > 0) return;
  if (m.durable) { // a durable's copy: no publisher waits on it
    release_durable(m);
    return;
  }
  if (!m.msg_id.empty()) {
    if (auto* d = dedup.find(dedup_key(m.publisher, m.msg_id, key_scratch));
        d && d->msg.lock().get() == &m) {
      dedup_window::settle(*d, m.outcome,
                           m.outcome == status::no_interest || m.outcome == status::overloaded
                             || m.outcome == status::expired || m.outcome == status::peer_lost
                             || m.outcome == status::full || m.outcome == status::unavailable);
    }
  }
  if (m.confirm) send_confirm(m.shared_from_this());
  if (m.relay) send_relay(m);
}

void core::state::send_confirm(const message_ptr& m) {
  if (m->also_confirm)
    for (auto id : *m->also_confirm) send_confirm_to(id, m);
  send_confirm_to(m->confirm_to, m);
}

void core::state::send_confirm_to(conn_id to, const message_ptr& m) {
  auto* c = find(to);
  if (!c || !c->hello) return;
  ++stats.confirms;
  output o;
  o.kind = wire::op::confirm;
  o.code = static_cast<std::uint32_t>(m->outcome);
  o.msg = m;
  enqueue(*c, std::move(o), false);
}

void core::state::publish_internal(std::string_view topic, std::string_view payload,
                                   std::string_view headers, std::uint32_t header_count) {
  wire::header h;
  h.kind = wire::op::pub;
  h.topic = topic;
  route_message(message::copy_of(h, payload, {}, {}, headers, header_count));
}

} // namespace plexus::broker
