// SPDX-License-Identifier: Apache-2.0
// Connections, subscriptions, heartbeats, timers and the output queues.
#include <algorithm>
#include <cassert>
#include <cstdio>

#include "state.hpp"

namespace plexus::broker {


namespace {
constexpr std::size_t frame_overhead = 64; // header estimate for queue accounting
std::size_t cost(const output& o) { return o.payload().size() + frame_overhead; }
} // namespace

core::state::state(config c, const core& self)
  : owner(&self), cfg(std::move(c)), dedup(cfg.dedup_window, cfg.dedup_entries, cfg.dedup_bytes) {
  // A restart must look different to peers (they drop what it held).
  incarnation = static_cast<std::uint64_t>(
    std::chrono::system_clock::now().time_since_epoch().count()) | 1;
  auto f = std::make_shared<forward_info>();
  f->origin = cfg.id;
  plain_fwd = std::move(f);
  auth = cfg.auth.has_value();
  if (cfg.pause_percent > 100) cfg.pause_percent = 100;
  if (cfg.resume_percent >= cfg.pause_percent) cfg.resume_percent = cfg.pause_percent / 2;
  auto share = [](std::size_t limit, std::uint32_t percent) {
    return limit / 100 * percent + limit % 100 * percent / 100; // no overflow
  };
  pause_msgs = std::max<std::size_t>(share(cfg.group_queue_msgs, cfg.pause_percent), 1);
  pause_bytes = std::max<std::size_t>(share(cfg.group_queue_bytes, cfg.pause_percent), 1);
  resume_msgs = share(cfg.group_queue_msgs, cfg.resume_percent);
  resume_bytes = share(cfg.group_queue_bytes, cfg.resume_percent);
  rebuild_welcome();
  setup_durables();
}

core::core(config cfg) : s_(std::make_unique<state>(std::move(cfg), *this)) {}
core::~core() = default;

const counters& core::stats() const noexcept { return s_->stats; }
const std::map<std::string, std::uint64_t>& core::denied_by_user() const noexcept {
  return s_->denied_by_user;
}
const observe::latency_histogram& core::ack_latency() const noexcept { return s_->ack_latency; }
const config& core::settings() const noexcept { return s_->cfg; }

// ---------------------------------------------------------------- inputs

connection* core::state::heard_from(conn_id from, time_point t) {
  now = t;
  auto* c = find(from);
  if (!c) c = &open(from);
  if (c->closing) return nullptr;
  c->last_heard = t;
  return c;
}

void core::receive(conn_id from, const wire::entry& e, time_point now) {
  auto& s = *s_;
  auto* c = s.heard_from(from, now);
  if (!c) return;
  const auto& h = e.h;
  if (s.auth && c->role == conn_role::client && h.kind == wire::op::peer_hello
      && c->user != peer_user_id) {
    // A user's connection is no broker, whatever secret it knows.
    s.deny(*c, "PEER_HELLO: only a broker's key may link (user '" + c->user + "')", &h);
  } else if (c->role != conn_role::client || h.kind == wire::op::peer_hello) {
    s.on_peer_op(*c, e);
  } else if (s.auth && !c->perms && h.kind != wire::op::hello && h.kind != wire::op::ping
             && h.kind != wire::op::pong && h.kind != wire::op::bye && h.kind != wire::op::err) {
    // Not admitted as a user the policy knows: a session, liveness, goodbye.
    s.deny(*c,
           c->user.empty() ? std::string{"connection not identified: only HELLO, PING and BYE"}
                           : "user '" + c->user + "' is not in the broker's policy: only HELLO, PING and BYE",
           &h);
  } else if (h.kind != wire::op::hello && !c->hello) {
    ++c->bad_frames;
    ++s.stats.bad_frames;
    s.send_err(*c, status::protocol_violation, "HELLO must come first", &h);
  } else {
    switch (h.kind) {
      case wire::op::hello: s.on_hello(*c, h); break;
      case wire::op::sub: s.on_sub(*c, h); break;
      case wire::op::unsub: s.on_unsub(*c, h); break;
      case wire::op::pub: s.on_pub(*c, e); break;
      case wire::op::ack: s.on_ack(*c, h); break;
      case wire::op::nack: s.on_nack(*c, h); break;
      case wire::op::credit: s.on_credit(*c, h); break;
      case wire::op::ping: {
        output o;
        o.kind = wire::op::pong;
        s.enqueue(*c, std::move(o), false);
        break;
      }
      case wire::op::pong: break; // liveness only
      case wire::op::err: break;  // the client's complaint; nothing to answer
      case wire::op::bye: s.request_close(*c, {}); break;
      default:
        ++c->bad_frames;
        ++s.stats.bad_frames;
        s.send_err(*c, status::protocol_violation,
                   std::string{"clients may not send "} + wire::to_string(h.kind), &h);
        break;
    }
  }
  s.finish_closes();
}

void core::reject(conn_id from, const wire::decode_error& err, time_point now) {
  auto& s = *s_;
  auto* c = s.heard_from(from, now);
  if (!c) return;
  ++c->bad_frames;
  ++s.stats.bad_frames;
  s.send_err(*c, static_cast<std::uint32_t>(err.code), wire::to_string(err), nullptr);
  if (c->bad_frames + c->denied > s.cfg.error_budget) s.request_close(*c, "error budget exceeded");
  s.finish_closes();
}

void core::identify(conn_id id, std::string_view user, time_point now) {
  auto& s = *s_;
  s.now = now;
  auto* c = s.find(id);
  if (!c) c = &s.open(id);
  if (c->closing || c->hello) return; // a session's identity is fixed by its HELLO
  c->user = std::string{user};
  c->perms = nullptr;
  if (s.cfg.auth) {
    const auto& users = s.cfg.auth->users;
    if (auto it = users.find(c->user); it != users.end()) c->perms = &it->second;
  }
}

void core::disconnected(conn_id id, time_point now) {
  auto& s = *s_;
  s.now = now;
  if (auto* c = s.find(id)) {
    c->out.clear(); // nobody to say BYE to
    s.close(*c, {});
  }
  s.finish_closes();
}

void core::tick(time_point now) {
  auto& s = *s_;
  s.now = now;
  s.ack_timeouts();
  s.delayed_redeliveries();
  s.heartbeats();
  s.dedup.expire(now);
  s.age_out_durables();
  if (now >= s.next_stats) {
    if (s.next_stats != time_point{}) s.publish_stats();
    s.next_stats = now + s.cfg.stats_interval;
  }
  s.finish_closes();
}

void core::dial(conn_id id, time_point now) {
  auto& s = *s_;
  s.now = now;
  if (s.find(id)) return; // a shell bug: connection ids are never reused
  s.dial(s.open(id));
}

std::vector<conn_id> core::take_self_links() {
  auto r = std::move(s_->self_links);
  s_->self_links.clear();
  return r;
}

void core::shutdown(time_point now) {
  auto& s = *s_;
  s.now = now;
  for (auto& [id, c] : s.conns) s.request_close(*c, "broker shutting down");
  s.finish_closes();
}

time_point core::next_tick() const noexcept {
  // Timers are checked at 50 ms resolution: fine against ack waits and
  // heartbeats of a second and more.
  return s_->now + milliseconds{50};
}

// ---------------------------------------------------------------- outputs

std::vector<conn_id> core::ready_connections() {
  // Capacity changes of this flush's inputs go to peers once, coalesced.
  s_->advertise_dirty();
  auto r = std::move(s_->ready);
  s_->ready.clear();
  for (auto id : r)
    if (auto* c = s_->find(id)) c->ready = false;
  return r;
}

std::span<const output> core::queued(conn_id id) {
  auto* c = s_->find(id);
  if (!c) return {};
  auto& q = c->out;
  return {q.items.data() + q.head, q.size()};
}

void core::consume(conn_id id, std::size_t n) {
  auto* c = s_->find(id);
  if (!c) return;
  auto& q = c->out;
  n = std::min(n, q.size());
  for (std::size_t i = 0; i < n; ++i) {
    auto& o = q.items[q.head + i];
    auto bytes = cost(o);
    q.bytes -= bytes;
    if (wire::carries_payload(o.kind)) {
      --q.data_msgs;
      q.data_bytes -= bytes;
    } else {
      --q.control_msgs;
      q.control_bytes -= bytes;
    }
    if (o.kind == wire::op::msg) ++c->msgs_out;
    o = output{}; // release the message now, not at compaction
  }
  q.head += n;
  if (q.empty()) {
    q.clear();
    if (c->closing) {
      s_->forget(*c);
      return;
    }
  } else {
    if (q.head > 1024 && q.head * 2 > q.items.size()) {
      q.items.erase(q.items.begin(), q.items.begin() + static_cast<std::ptrdiff_t>(q.head));
      q.head = 0;
    }
    if (!c->ready) {
      c->ready = true;
      s_->ready.push_back(id);
    }
  }
}

bool core::has_output() const noexcept { return !s_->ready.empty(); }

bool core::takes_msg_runs(conn_id c) const noexcept {
  auto it = s_->conns.find(c);
  return it != s_->conns.end() && it->second->msg_runs;
}

std::vector<conn_id> core::take_closed() {
  auto r = std::move(s_->closed);
  s_->closed.clear();
  return r;
}

std::vector<conn_id> core::take_gone() {
  auto r = std::move(s_->gone);
  s_->gone.clear();
  return r;
}

bool core::state::enqueue(connection& c, output o, bool droppable) {
  if (c.closing || c.doomed) return false;
  auto& q = c.out;
  auto bytes = cost(o);
  // Messages and control frames (PONG, CONFIRM, ERR, ...) have a budget
  // each: a queue full of messages still lets control through, so a slow
  // consumer under `drop` keeps its session and hears what it missed.
  bool data = wire::carries_payload(o.kind);
  auto& msgs = data ? q.data_msgs : q.control_msgs;
  auto& held = data ? q.data_bytes : q.control_bytes;
  if (msgs >= cfg.max_pending_msgs || held + bytes > cfg.max_pending_bytes) {
    if (data && droppable && cfg.slow_consumer == slow_consumer_policy::drop) {
      ++stats.slow_consumer_drops;
      ++c.drops;
      ++c.unreported_drops;
      if (c.role == conn_role::client && now - c.last_drop_notice >= cfg.heartbeat)
        report_drops(c);
      return false;
    }
    ++stats.slow_consumer_disconnects;
    request_close(c, data ? "slow consumer: its queue is full"
                          : "slow consumer: it does not read its control frames");
    return false;
  }
  o.to = c.id;
  q.items.push_back(std::move(o));
  ++msgs;
  held += bytes;
  q.bytes += bytes;
  c.last_sent = now;
  if (!c.ready) {
    c.ready = true;
    ready.push_back(c.id);
  }
  return true;
}

void core::state::send_err(connection& c, status code, std::string_view text,
                           const wire::header* about) {
  send_err(c, static_cast<std::uint32_t>(code), std::string{text}, about);
}

void core::state::send_err(connection& c, std::uint32_t code, std::string text,
                           const wire::header* about) {
  // The ERR names what it is about (sid, msg id, reply-to) so the client
  // can match it; those strings are copied out of the client's frame.
  auto t = std::make_shared<control_text>();
  t->text = std::move(text);
  output o;
  o.kind = wire::op::err;
  o.code = code;
  if (about) {
    t->msg_id = about->msg_id;
    t->reply_to = about->reply_to;
    o.sid = about->sid;
  }
  o.aux = std::move(t);
  enqueue(c, std::move(o), false);
}

// ---------------------------------------------------------------- connections

connection* core::state::find(conn_id id) {
  if (last_found && last_found->id == id) return last_found;
  auto it = conns.find(id);
  if (it == conns.end()) return nullptr;
  last_found = it->second.get();
  return last_found;
}

connection& core::state::open(conn_id id) {
  auto c = std::make_unique<connection>();
  c->id = id;
  c->last_heard = c->last_sent = now;
  ++stats.connections_opened;
  return *conns.emplace(id, std::move(c)).first->second;
}

void core::state::request_close(connection& c, std::string_view reason) {
  if (c.closing || c.doomed) return;
  c.doomed = true;
  c.close_reason = std::string{reason};
  doomed.push_back(c.id);
}

void core::state::finish_closes() {
  // Closing redelivers, which may doom more connections: loop until quiet.
  while (!doomed.empty()) {
    auto ids = std::move(doomed);
    doomed.clear();
    for (auto id : ids)
      if (auto* c = find(id)) close(*c, c->close_reason);
  }
}

void core::state::close(connection& c, std::string_view reason) {
  if (c.closing) return;
  // Detach every subscription first, so redelivery picks other members.
  std::vector<std::uint32_t> sids;
  for (auto& [sid, sub] : c.subs) sids.push_back(sid);
  for (auto sid : sids) remove_subscription(c, *c.subs.at(sid));
  unlink(c);
  release_node(c);
  forget_pauses(c);
  c.closing = true;
  // Whatever was queued for it is dropped; only the BYE goes out.
  c.out.clear();
  ++stats.connections_closed;
  closed.push_back(c.id);
  if (reason.empty() || !c.hello) {
    forget(c);
    return;
  }
  auto t = std::make_shared<control_text>();
  t->text = std::string{reason};
  output o;
  o.to = c.id;
  o.kind = wire::op::bye;
  o.aux = std::move(t);
  auto bytes = cost(o);
  c.out.items.push_back(std::move(o));
  ++c.out.control_msgs; // outside the budget: the BYE always goes
  c.out.control_bytes += bytes;
  c.out.bytes += bytes;
  if (!c.ready) {
    c.ready = true;
    ready.push_back(c.id);
  }
}

bool core::state::admit_session(connection& c, const wire::header& h) {
  std::string why;
  if (sessions >= cfg.max_connections) {
    why = "too many connections: the broker's max_connections is " + std::to_string(cfg.max_connections);
  } else if (auth && c.perms && cfg.max_connections_per_user != 0
             && sessions_by_user[c.user] >= cfg.max_connections_per_user) {
    why = "too many connections for user '" + c.user + "': max_connections_per_user is "
          + std::to_string(cfg.max_connections_per_user);
  }
  if (!why.empty()) {
    // Answered, not closed: closing now would drop the ERR unsent (a
    // connection before HELLO gets no BYE). It stays without a session,
    // able only to say HELLO again, until it goes or its heartbeats stop.
    ++stats.connections_refused;
    send_err(c, status::overloaded, why, &h);
    return false;
  }
  ++sessions;
  if (auth && c.perms) ++sessions_by_user[c.user];
  return true;
}

void core::state::forget(connection& c) {
  assert(c.subs.empty());
  if (c.hello && c.role == conn_role::client) {
    --sessions;
    if (auth && c.perms)
      if (auto it = sessions_by_user.find(c.user); it != sessions_by_user.end() && --it->second == 0)
        sessions_by_user.erase(it);
  }
  if (last_found == &c) last_found = nullptr;
  gone.push_back(c.id);
  conns.erase(c.id); // `c` is gone after this line
}

void core::state::on_hello(connection& c, const wire::header& h) {
  // With auth a node id is one user's: replies to it (_INBOX.<node>.) are
  // its to read. Checked before anything changes: a refused HELLO leaves
  // the session as it was.
  if (auth && c.perms) {
    if (validate_topic(h.node, cfg.limits.topic) != topic_errc::ok
        || h.node.find('.') != std::string_view::npos) {
      deny(c, "HELLO: a node id must be one topic token, not '" + std::string{h.node} + "'", &h);
      return;
    }
    if (auto it = node_owners.find(std::string{h.node});
        it != node_owners.end() && it->second.user != c.user) {
      deny(c, "HELLO: node id '" + std::string{h.node} + "' is held by another user", &h);
      return;
    }
  }
  if (!c.hello && !admit_session(c, h)) return;
  if (c.hello) { // a second HELLO starts a new session on this connection
    std::vector<std::uint32_t> sids;
    for (auto& [sid, sub] : c.subs) sids.push_back(sid);
    for (auto sid : sids) remove_subscription(c, *c.subs.at(sid));
    forget_pauses(c); // the new session starts unpaused, on both sides
  }
  c.hello = true;
  c.flow_control = (h.flags & wire::flag_flow_control) != 0;
  c.msg_runs = (h.flags & wire::flag_msg_runs) != 0;
  release_node(c);
  c.node = std::string{h.node};
  if (auth && c.perms) {
    auto& held = node_owners[c.node];
    held.user = c.user;
    ++held.conns;
    c.owns_node = true;
  }
  // The scope of its msg ids: a client that names a lineage (a random
  // number it keeps across reconnects) is one publisher wherever it
  // connects, so a re-send after a failover is recognised; one that does
  // not is one publisher per connection. Never two clients in one scope
  // by accident: ids numbered alike by two publishers are two messages.
  // (The prefixes keep the two forms apart: a node is one token, no space.)
  if (h.seq != 0) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h.seq));
    c.scope = "L " + c.node + " " + hex;
  } else {
    c.scope = "C " + cfg.id + " " + std::to_string(c.id);
  }
  output o;
  o.kind = wire::op::welcome;
  o.aux = welcome;
  enqueue(c, std::move(o), false);
}

void core::state::on_sub(connection& c, const wire::header& h) {
  if (auth && !permit_sub(c, h)) return;
  if (c.subs.contains(h.sid)) {
    send_err(c, status::duplicate_sid, "subscription id already in use", &h);
    return;
  }
  if (c.subs.size() >= cfg.max_subscriptions) {
    send_err(c, status::too_many_subscriptions, "subscription limit reached", &h);
    return;
  }
  if (auto home = durable_homes.find(h.queue); home != durable_homes.end()) {
    send_err(c, status::forbidden,
             "durable queue '" + home->first + "' is kept by broker '" + home->second->home
               + "': its members subscribe there",
             &h);
    return;
  }
  auto sub = std::make_unique<subscription>();
  sub->conn = c.id;
  sub->sid = h.sid;
  sub->pattern = std::string{h.topic};
  sub->ack = h.ack;
  sub->ack_wait = h.ack_wait_ms ? milliseconds{h.ack_wait_ms} : cfg.ack_wait;
  sub->max_deliver = h.max_deliver ? h.max_deliver : cfg.max_deliver;
  sub->credit = h.credit;
  sub->owner = &c;
  auto* s = sub.get();
  c.subs.emplace(h.sid, std::move(sub));
  if (h.queue.empty()) {
    trie.insert(s->pattern, s);
    if (++local_patterns[s->pattern] == 1) advertise_pattern(s->pattern, true);
    return;
  }
  auto* d = durable_named(h.queue);
  auto& g = d ? *d->grp : group_of(s->pattern, h.queue);
  s->grp = &g;
  g.members.push_back(s);
  advertise_group(g);
  drain_group(g);
}

group& core::state::group_of(std::string_view pattern, std::string_view queue) {
  auto key = std::string{pattern} + '\0' + std::string{queue};
  auto& g = groups[key];
  if (!g) {
    g = std::make_unique<group>();
    g->kind = route_kind::group;
    g->key = key;
    g->pattern = std::string{pattern};
    g->name = std::string{queue};
    auto f = std::make_shared<forward_info>();
    f->origin = cfg.id;
    f->queue = g->name;
    g->fwd = std::move(f);
    trie.insert(g->pattern, g.get());
  }
  return *g;
}

void core::state::on_unsub(connection& c, const wire::header& h) {
  auto it = c.subs.find(h.sid);
  if (it == c.subs.end()) {
    send_err(c, status::unknown_subscription, "no such subscription", &h);
    return;
  }
  remove_subscription(c, *it->second);
}

void core::state::remove_subscription(connection& c, subscription& s) {
  auto sid = s.sid;
  auto* g = s.grp;
  if (g) {
    std::erase(g->members, &s);
    if (g->next >= g->members.size()) g->next = 0;
  } else {
    trie.erase(s.pattern, &s);
    if (auto it = local_patterns.find(s.pattern); it != local_patterns.end() && --it->second == 0) {
      local_patterns.erase(it);
      advertise_pattern(s.pattern, false);
    }
  }
  // Its unacked deliveries go back to the group (or are settled).
  if (!s.unacked.empty()) {
    auto pending = s.unacked.take_all();
    for (auto& [seq, f] : pending) {
      // A durable keeps it for the next member, whenever one comes.
      if (g && (g->dur || !g->members.empty() || !g->remote.empty())
          && f.delivery < s.max_deliver) {
        ++stats.redeliveries;
        deliver_to_group(*g, {f.msg, f.delivery}, nullptr, true);
        settle(*f.msg, status::ok);
      } else if (g && f.delivery >= s.max_deliver) {
        dead_letter(f.msg, f.delivery, "consumer lost");
        settle(*f.msg, status::dead_lettered);
      } else {
        settle(*f.msg, status::no_interest);
      }
    }
  }
  c.subs.erase(sid); // `s` is gone after this line
  if (g) {
    advertise_group(*g);
    maybe_erase_group(*g);
  }
}

void core::state::on_credit(connection& c, const wire::header& h) {
  auto it = c.subs.find(h.sid);
  if (it == c.subs.end()) {
    send_err(c, status::unknown_subscription, "credit for an unknown subscription", &h);
    return;
  }
  auto& s = *it->second;
  if (h.flags & wire::flag_credit_set) s.credit = h.credit; // 0: a member leaving
  else
    s.credit = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(std::uint64_t{s.credit} + h.credit, 0xffffffffu));
  if (s.grp) {
    mark_dirty(*s.grp);
    drain_group(*s.grp);
  }
}

// ---------------------------------------------------------------- authentication

void core::state::deny(connection& c, std::string text, const wire::header* about) {
  ++stats.permission_denied;
  ++denied_by_user[c.user];
  ++c.denied;
  send_err(c, code_of(status::permission_denied), std::move(text), about);
  // Denials spend the error budget that bad frames do: a burst ends it.
  if (c.bad_frames + c.denied > cfg.error_budget) request_close(c, "error budget exceeded");
}

bool core::state::permit_sub(connection& c, const wire::header& h) {
  const auto& p = *c.perms; // receive() lets only known users this far
  if (!h.queue.empty() && !may_join(p, h.queue)) {
    deny(c, "user '" + c.user + "' may not join queue group '" + std::string{h.queue} + "'", &h);
    return false;
  }
  if (!may_subscribe(p, h.topic, c.owns_node ? std::string_view{c.node} : std::string_view{})) {
    deny(c, "user '" + c.user + "' may not subscribe to '" + std::string{h.topic} + "'", &h);
    return false;
  }
  return true;
}

void core::state::release_node(connection& c) {
  if (!c.owns_node) return;
  c.owns_node = false;
  if (auto it = node_owners.find(c.node); it != node_owners.end() && --it->second.conns == 0)
    node_owners.erase(it);
}

std::size_t open_replies::open(std::string_view subject, time_point expires, std::size_t max) {
  auto [it, fresh] = by_subject.try_emplace(std::string{subject});
  if (!fresh) { // the same request again (a redelivery): still one answer
    it->second.expires = std::max(it->second.expires, expires);
    return 0;
  }
  // Answered ones leave stale entries in `order`: drop them now and then.
  if (order.size() > 2 * by_subject.size() + 1024) {
    std::erase_if(order, [&](const auto& o) {
      auto f = by_subject.find(o.second);
      return f == by_subject.end() || f->second.gen != o.first;
    });
  }
  it->second = {expires, next_gen};
  order.emplace_back(next_gen++, std::string{subject});
  std::size_t dropped = 0;
  while (by_subject.size() > max && order.size() > 1) {
    auto f = by_subject.find(order.front().second);
    if (f != by_subject.end() && f->second.gen == order.front().first) {
      by_subject.erase(f);
      ++dropped;
    }
    order.pop_front();
  }
  return dropped;
}

bool open_replies::take(std::string_view subject, time_point now) {
  auto f = by_subject.find(std::string{subject});
  if (f == by_subject.end()) return false;
  bool live = f->second.expires > now;
  by_subject.erase(f);
  return live;
}

// ---------------------------------------------------------------- introspection

gauges core::current() const {
  gauges g;
  auto& s = *s_;
  g.connections = s.conns.size();
  g.groups = s.groups.size();
  g.dedup_entries = s.dedup.size();
  g.dedup_bytes = s.dedup.bytes();
  for (auto& [id, p] : s.peers) {
    if (!p->links.empty()) ++g.peers;
    g.peer_routes += p->interests.size() + p->groups.size();
    g.forwards_unsettled += p->unsettled.size();
  }
  for (auto& [id, c] : s.conns) {
    g.subscriptions += c->subs.size();
    g.pending_msgs += c->out.size();
    g.pending_bytes += c->out.bytes;
    for (auto& [sid, sub] : c->subs) g.unacked += sub->unacked.size();
  }
  for (auto& [k, grp] : s.groups) g.group_queued += grp->waiting.size();
  return g;
}

std::vector<connection_stats> core::connections() const {
  std::vector<connection_stats> out;
  for (auto& [id, c] : s_->conns) {
    connection_stats cs;
    cs.id = id;
    cs.node = c->node;
    cs.user = c->user;
    cs.permission_denied = c->denied;
    cs.msgs_in = c->msgs_in;
    cs.msgs_out = c->msgs_out;
    cs.bad_frames = c->bad_frames;
    cs.subscriptions = c->subs.size();
    cs.pending_msgs = c->out.size();
    cs.pending_bytes = c->out.bytes;
    cs.drops = c->drops;
    cs.flow_control = c->flow_control;
    cs.paused = c->paused_on.size();
    cs.pauses = c->pauses;
    for (auto& [sid, sub] : c->subs) cs.unacked += sub->unacked.size();
    cs.ack_latency = c->ack_latency.get();
    out.push_back(std::move(cs));
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.id < b.id; });
  return out;
}

std::vector<peer_stats> core::peers() const {
  std::vector<peer_stats> out;
  for (auto& [id, p] : s_->peers) {
    peer_stats ps;
    ps.id = id;
    ps.links = p->links.size();
    ps.interests = p->interests.size();
    ps.groups = p->groups.size();
    ps.unsettled = p->unsettled.size();
    ps.fwd_out = p->fwd_out;
    ps.fwd_in = p->fwd_in;
    out.push_back(std::move(ps));
  }
  return out; // std::map: by id
}

} // namespace plexus::broker
