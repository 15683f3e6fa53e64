// SPDX-License-Identifier: Apache-2.0
// The peer mesh, inside the sans-IO core: brokers linked in a full mesh tell
// each other which patterns and queue groups their clients hold (INTEREST±)
// and forward messages one hop (FWD), so a message from a client reaches
// every subscriber in the cluster once and a queue group's message one
// member in the cluster. A forward that must be settled (a queue group's,
// or one a publisher wants confirmed) is kept until the peer answers with
// CONFIRM_RELAY; when the peer is lost first, it is routed again.
//
// Links: each broker dials every seed (the shell calls dial()), so two
// brokers usually share two links, one dialed by each. A broker sends on
// the link of its latest PEER_HELLO to that peer and takes interest only
// from the link of the peer's latest (see `peer` in state.hpp). Losing any
// link of a peer drops them all (both sides then dial again), and so does
// a PEER_HELLO with a new incarnation (it restarted): either way what the
// peer held is routed again. Simple states beat clever partial ones here.
#include <algorithm>
#include <cstring>

#include <sodium.h>

#include "../core/state.hpp"

namespace plexus::broker {

namespace {

output interest_output(wire::op kind, std::string_view pattern, std::string_view queue,
                       std::uint32_t credit) {
  auto t = std::make_shared<interest_text>();
  t->pattern = std::string{pattern};
  t->queue = std::string{queue};
  t->credit = credit;
  output o;
  o.kind = kind;
  o.aux = std::move(t);
  return o;
}

remote_member* member_of(group& g, const peer& p) {
  for (auto& r : g.remote)
    if (r.owner == &p) return &r;
  return nullptr;
}

} // namespace

// ---------------------------------------------------------------- links

void core::state::dial(connection& c) {
  c.role = conn_role::peer_out;
  c.hello = true; // heartbeats apply from now on
  dialing.push_back(&c);
  say_peer_hello(c);
}

std::string peer_hello_proof(std::string_view secret, std::string_view id,
                             std::uint64_t incarnation_no, std::uint32_t hello_no) {
  // A proof made for one hello (sender, incarnation, number) says nothing
  // about another. Numbers little-endian, as this code's hosts are.
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(secret.data()),
                              secret.size());
  auto add = [&](const void* p, std::size_t n) {
    crypto_auth_hmacsha256_update(&st, static_cast<const unsigned char*>(p), n);
  };
  static constexpr char context[] = "plexus PEER_HELLO v1";
  add(context, sizeof context);
  std::uint64_t len = id.size();
  add(&len, sizeof len);
  add(id.data(), id.size());
  add(&incarnation_no, sizeof incarnation_no);
  add(&hello_no, sizeof hello_no);
  crypto_auth_hmacsha256_final(&st, mac);
  return {reinterpret_cast<const char*>(mac), sizeof mac};
}

void core::state::say_peer_hello(connection& c) {
  output o;
  o.kind = wire::op::peer_hello;
  o.seq = incarnation;
  o.delivery = c.hello_no = ++hellos;
  auto hi = std::make_shared<hello_info>();
  hi->welcome = welcome;
  if (!cfg.cluster_secret.empty())
    hi->auth = peer_hello_proof(cfg.cluster_secret, cfg.id, incarnation, o.delivery);
  o.aux = std::move(hi);
  enqueue(c, std::move(o), false);
  send_interest(c); // the peer reads it after our hello, on the same link
}

void core::state::on_peer_op(connection& c, const wire::entry& e) {
  const auto& h = e.h;
  auto violation = [&](std::string text) {
    ++c.bad_frames;
    ++stats.bad_frames;
    send_err(c, status::protocol_violation, std::move(text), &h);
  };
  if (h.kind == wire::op::peer_hello) {
    on_peer_hello(c, h);
    return;
  }
  switch (h.kind) {
    case wire::op::ping: {
      output o;
      o.kind = wire::op::pong;
      enqueue(c, std::move(o), false);
      return;
    }
    case wire::op::pong: return;
    case wire::op::err: ++c.bad_frames; return; // the peer's complaint: counted per link
    case wire::op::bye: request_close(c, {}); return;
    default: break;
  }
  if (!c.link_of) {
    violation("PEER_HELLO must come first");
    return;
  }
  switch (h.kind) {
    case wire::op::interest_add: on_interest(c, h, true); break;
    case wire::op::interest_remove: on_interest(c, h, false); break;
    case wire::op::fwd: on_fwd(c, e); break;
    case wire::op::confirm_relay: on_relay(c, h); break;
    default: violation(std::string{"peers may not send "} + wire::to_string(h.kind)); break;
  }
}

void core::state::on_peer_hello(connection& c, const wire::header& h) {
  if (c.role == conn_role::client && c.hello) {
    ++c.bad_frames;
    ++stats.bad_frames;
    send_err(c, status::protocol_violation, "a client connection cannot become a peer link", &h);
    return;
  }
  // Only a broker that proves the cluster secret becomes a peer: anything
  // else could announce interest and answer forwards with "ok" for
  // messages nobody received. (Issue #18 adds CURVE on top.)
  auto proof = cfg.cluster_secret.empty()
                 ? std::string{}
                 : peer_hello_proof(cfg.cluster_secret, h.node, h.seq, h.delivery);
  if (proof.empty() || h.auth.size() != proof.size()
      || sodium_memcmp(h.auth.data(), proof.data(), proof.size()) != 0) {
    ++c.bad_frames;
    ++stats.bad_frames;
    ++stats.peers_refused;
    send_err(c, status::not_authorized,
             cfg.cluster_secret.empty()
               ? "this broker admits no peers (it has no cluster secret)"
               : "PEER_HELLO refused: no valid proof of the cluster secret",
             &h);
    // A connection that dialed us stays what it was, a client without
    // HELLO (more of this counts against its error budget); a link we
    // dialed reached something that is not our peer: dial again later.
    if (c.role != conn_role::client) request_close(c, "peer not authorized");
    return;
  }
  if (h.node == cfg.id) { // a seed that names this broker
    ++stats.self_links;
    self_links.push_back(c.id);
    request_close(c, "a broker does not peer with itself");
    return;
  }
  auto it = peers.find(h.node);
  if (it == peers.end()) {
    auto p = std::make_unique<peer>();
    p->id = std::string{h.node};
    it = peers.emplace(p->id, std::move(p)).first;
  }
  auto& p = *it->second;
  if (c.link_of && c.link_of != &p) {
    request_close(c, "a link serves one peer");
    return;
  }
  if (p.incarnation != h.seq && !p.links.empty()) {
    // It restarted: what the old one held is gone, and so are its links.
    ++stats.peer_links_lost;
    auto old = std::move(p.links);
    p.links.clear();
    for (auto* l : old) {
      l->link_of = nullptr;
      if (l != &c) request_close(*l, "peer restarted");
    }
    p.send_link = p.recv_link = nullptr;
    p.send_hello = p.recv_hello = 0;
    peer_lost(p);
  }
  p.incarnation = h.seq;
  auto endpoints = h.brokers.items();
  std::vector<std::string> list(endpoints.begin(), endpoints.end());
  if (list != p.endpoints) {
    p.endpoints = std::move(list);
    rebuild_welcome();
  }
  c.node = p.id;
  c.link_of = &p;
  std::erase(dialing, &c);
  if (std::find(p.links.begin(), p.links.end(), &c) == p.links.end()) p.links.push_back(&c);
  if (h.delivery > p.recv_hello) { // its whole interest follows this hello
    p.recv_hello = h.delivery;
    p.recv_link = &c;
    forget_interest(p);
  }
  if (c.role == conn_role::client) { // it dialed us: answer on this link
    c.role = conn_role::peer_in;
    c.hello = true;
    say_peer_hello(c);
  }
  if (c.hello_no > p.send_hello) {
    p.send_hello = c.hello_no;
    p.send_link = &c;
  }
}

void core::state::unlink(connection& c) {
  std::erase(dialing, &c);
  auto* p = c.link_of;
  if (!p) return;
  // One link lost: all go, and both sides dial again from a clean state.
  ++stats.peer_links_lost;
  auto links = std::move(p->links);
  p->links.clear();
  for (auto* l : links) {
    l->link_of = nullptr;
    if (l != &c) request_close(*l, "peer link lost");
  }
  p->send_link = p->recv_link = nullptr;
  p->send_hello = p->recv_hello = 0;
  peer_lost(*p);
}

void core::state::peer_lost(peer& p) {
  forget_interest(p);
  // What it held and did not settle is routed again: a group's message to
  // another member (a duplicate if the peer had delivered it: at least
  // once), a confirmed fan-out settles as "peer lost".
  auto pending = p.unsettled.take_all();
  for (auto& [seq, f] : pending) {
    if (f.group_key.empty()) {
      settle(*f.msg, status::peer_lost);
      continue;
    }
    ++stats.rerouted;
    auto g = groups.find(f.group_key);
    if (g == groups.end()) {
      settle(*f.msg, status::no_interest);
      continue;
    }
    deliver_to_group(*g->second, {f.msg, f.delivery}, nullptr, true);
    settle(*f.msg, status::ok);
  }
}

void core::state::forget_interest(peer& p) {
  for (auto& [pattern, in] : p.interests) trie.erase(pattern, in.get());
  p.interests.clear();
  auto keys = std::move(p.groups);
  p.groups.clear();
  for (auto& key : keys) {
    auto g = groups.find(key);
    if (g == groups.end()) continue;
    std::erase_if(g->second->remote, [&](const remote_member& r) { return r.owner == &p; });
    g->second->next_remote = 0;
    maybe_erase_group(*g->second);
  }
}

bool core::state::send_to_peer(peer& p, output o, bool droppable) {
  if (!p.send_link) return false;
  return enqueue(*p.send_link, std::move(o), droppable);
}

void core::state::to_all_peers(const output& o) {
  // A link still waiting for its answer gets the update too: if it turns
  // out to be the peer's newest, the peer reads its interest from there.
  for (auto& [id, p] : peers)
    if (p->send_link) enqueue(*p->send_link, o, false);
  for (auto* c : dialing) enqueue(*c, o, false);
}

// ---------------------------------------------------------------- interest

void core::state::on_interest(connection& c, const wire::header& h, bool add) {
  auto& p = *c.link_of;
  if (&c != p.recv_link) return; // older than its latest hello: superseded
  if (h.queue.empty()) {
    auto it = p.interests.find(std::string{h.topic});
    if (add && it == p.interests.end()) {
      auto in = std::make_unique<interest>();
      in->kind = route_kind::interest;
      in->owner = &p;
      in->pattern = std::string{h.topic};
      trie.insert(in->pattern, in.get());
      p.interests.emplace(in->pattern, std::move(in));
    } else if (!add && it != p.interests.end()) {
      trie.erase(it->first, it->second.get());
      p.interests.erase(it);
    }
    return;
  }
  // A peer's members of a queue that is durable here are not a share of
  // it: its messages stay with this broker, their home.
  if (durable_named(h.queue)) return;
  if (add) {
    auto& g = group_of(h.topic, h.queue);
    if (auto* r = member_of(g, p)) {
      r->capacity = h.credit;
    } else {
      g.remote.push_back({&p, h.credit, 0});
      p.groups.push_back(g.key);
    }
    drain_group(g);
    return;
  }
  auto key = std::string{h.topic} + '\0' + std::string{h.queue};
  std::erase(p.groups, key);
  auto g = groups.find(key);
  if (g == groups.end()) return;
  std::erase_if(g->second->remote, [&](const remote_member& r) { return r.owner == &p; });
  g->second->next_remote = 0;
  maybe_erase_group(*g->second);
}

void core::state::send_interest(connection& to) {
  for (auto& [pattern, n] : local_patterns)
    enqueue(to, interest_output(wire::op::interest_add, pattern, {}, 0), false);
  for (auto& [key, g] : groups)
    if (!g->members.empty() && !g->dur)
      enqueue(to, interest_output(wire::op::interest_add, g->pattern, g->name, capacity(*g)),
              false);
}

void core::state::advertise_pattern(std::string_view pattern, bool add) {
  to_all_peers(interest_output(add ? wire::op::interest_add : wire::op::interest_remove,
                               pattern, {}, 0));
}

std::uint32_t core::state::capacity(const group& g) const {
  // What the local members can hold: their credit plus what they hold
  // unacked (an acking member's sum stays put as it works).
  std::uint64_t sum = 0;
  for (auto* s : g.members) sum += std::uint64_t{s->credit} + s->unacked.size();
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(sum, 0xffffffffu));
}

void core::state::advertise_group(group& g) {
  if (g.dur) return; // its subjects are advertised as plain interest: it is their home
  if (peers.empty() && dialing.empty()) return;
  if (g.members.empty()) {
    if (!g.announced) return;
    g.announced = false;
    to_all_peers(interest_output(wire::op::interest_remove, g.pattern, g.name, 0));
    return;
  }
  auto cap = capacity(g);
  if (g.announced && cap == g.advertised) return;
  g.announced = true;
  g.advertised = cap;
  to_all_peers(interest_output(wire::op::interest_add, g.pattern, g.name, cap));
}

void core::state::mark_dirty(group& g) {
  if (g.dirty || (peers.empty() && dialing.empty())) return;
  g.dirty = true;
  dirty_groups.push_back(&g);
}

void core::state::advertise_dirty() {
  if (dirty_groups.empty()) return;
  auto list = std::move(dirty_groups);
  dirty_groups.clear();
  for (auto* g : list) {
    g->dirty = false;
    if (!g->members.empty()) advertise_group(*g);
  }
}

void core::state::maybe_erase_group(group& g) {
  if (!g.members.empty() || g.dur) return; // a durable keeps what waits
  // What peers forwarded here can only go to local members: back it goes.
  for (auto it = g.waiting.begin(); it != g.waiting.end();) {
    if (!it->msg->from) {
      ++it;
      continue;
    }
    auto msg = it->msg;
    g.waiting_bytes -= msg->payload.size();
    it = g.waiting.erase(it);
    settle(*msg, status::returned);
  }
  if (!g.remote.empty()) {
    drain_group(g); // what waits here may go to a peer now
    return;
  }
  // Nobody left to take what waits: drop it, counted.
  for (auto& q : g.waiting) {
    ++stats.group_queue_drops;
    settle(*q.msg, status::no_interest);
  }
  g.waiting.clear();
  resume_all(g); // nothing waits for this group any more
  if (g.dirty) std::erase(dirty_groups, &g);
  trie.erase(g.pattern, &g);
  groups.erase(g.key); // `g` is gone after this line
}

// ---------------------------------------------------------------- forwarding

void core::state::forward(peer& p, const message_ptr& m) {
  // A peer's message goes to local clients only (one hop: no loops), and
  // a peer with several matching patterns gets it once.
  if (m->from || p.last_route == route_gen || p.links.empty()) return;
  p.last_route = route_gen;
  output o;
  o.kind = wire::op::fwd;
  o.msg = m;
  o.aux = plain_fwd;
  bool tracked = m->confirm; // the publisher waits for the peer's outcome
  if (tracked) o.seq = p.next_fwd;
  // At most once, as to a plain local subscriber: a full link queue drops
  // it (counted) rather than close the link.
  if (!send_to_peer(p, std::move(o), !tracked)) return;
  if (tracked) {
    p.unsettled.push(p.next_fwd++, forwarded{m, {}, 0});
    ++m->unsettled;
  }
  ++p.fwd_out;
  ++stats.forwarded;
}

bool core::state::forward_to_group(group& g, const queued_msg& q) {
  if (q.msg->from) return false;
  auto n = g.remote.size();
  for (std::size_t i = 0; i < n; ++i) {
    auto idx = (g.next_remote + i) % n;
    auto& r = g.remote[idx];
    if (r.outstanding >= r.capacity) continue;
    auto& p = *r.owner;
    output o;
    o.kind = wire::op::fwd;
    o.msg = q.msg;
    o.aux = g.fwd;
    o.seq = p.next_fwd;
    o.delivery = q.delivery;
    if (!send_to_peer(p, std::move(o))) continue;
    p.unsettled.push(p.next_fwd++, forwarded{q.msg, g.key, q.delivery});
    ++q.msg->unsettled;
    ++r.outstanding;
    ++p.fwd_out;
    ++stats.forwarded;
    g.next_remote = (idx + 1) % n;
    return true;
  }
  return false;
}

void core::state::on_fwd(connection& c, const wire::entry& e) {
  const auto& h = e.h;
  auto& p = *c.link_of;
  ++p.fwd_in;
  ++stats.forwards_in;
  ++c.msgs_in;
  if (auth && !h.user.empty() && !permit_forwarded(h.user, h.topic)) {
    // Its origin let the user publish this; our policy does not.
    ++stats.forwards_denied;
    ++stats.permission_denied;
    ++denied_by_user[std::string{h.user}];
    if ((h.flags & wire::flag_confirm) != 0) send_relay(p, h.seq, status::permission_denied);
    return;
  }
  auto m = message::copy_of(h, e.payload, h.publisher, h.user);
  m->from = &p;
  m->relay = (h.flags & wire::flag_confirm) != 0;
  m->relay_seq = h.seq;
  // Its id guards against the publisher re-sending it here after a
  // failover; a FWD itself is never dropped as a duplicate (a message its
  // origin routes again after a loss must arrive).
  if (!m->msg_id.empty()) {
    auto key = dedup_key(m->publisher, m->msg_id, key_scratch);
    if (!dedup.find(key)) stats.dedup_evictions += dedup.insert(key, now, m);
  }
  if (expired(*m)) {
    ++stats.expired;
    m->outcome = status::expired;
    send_relay(*m);
    return;
  }
  ++stats.msgs_in;
  stats.bytes_in += e.payload.size();
  route_from_peer(m, h.queue, h.delivery);
}

void core::state::route_from_peer(const message_ptr& m, std::string_view queue,
                                  std::uint32_t delivery) {
  auto& routes = scratch;
  routes.clear();
  trie.match_cached(m->topic, routes);
  m->unsettled = 1; // held until routing is done
  ++route_gen;
  bool any = false;
  for (auto* r : routes) {
    if (queue.empty() && r->kind == route_kind::subscription) {
      deliver(*static_cast<subscription*>(r), m, 1);
      any = true;
    } else if (queue.empty() && r->kind == route_kind::group && static_cast<group*>(r)->dur) {
      capture(*static_cast<group*>(r)->dur, m); // this broker is its home
      any = true;
    } else if (!queue.empty() && r->kind == route_kind::group) {
      auto& g = *static_cast<group*>(r);
      if (g.name != queue || g.members.empty() || g.dur) continue;
      deliver_to_group(g, {m, delivery}, nullptr, false);
      any = true;
      break; // one member in the cluster
    }
  }
  if (!any && queue.empty()) ++stats.no_interest;
  settle(*m, any ? status::ok : queue.empty() ? status::no_interest : status::returned);
}

void core::state::send_relay(message& m) {
  if (m.from && m.relay) send_relay(*m.from, m.relay_seq, m.outcome);
}

void core::state::send_relay(peer& p, std::uint64_t seq, status outcome) {
  output o;
  o.kind = wire::op::confirm_relay;
  o.seq = seq;
  o.code = static_cast<std::uint32_t>(outcome);
  o.aux = welcome;
  if (send_to_peer(p, std::move(o))) ++stats.relays;
}

bool core::state::permit_forwarded(std::string_view user, std::string_view topic) const {
  const auto& users = cfg.auth->users;
  auto it = users.find(std::string{user});
  if (it == users.end()) return false; // a user this broker does not know
  // An answer on a reply subject: its origin checked that it answers a
  // request it was delivered, once; here only that it may answer at all.
  return may_publish(it->second, topic)
         || (reserved_namespace(topic) == reserved::inbox && may_respond(it->second, topic));
}

void core::state::on_relay(connection& c, const wire::header& h) {
  auto& p = *c.link_of;
  forwarded f;
  if (!p.unsettled.take(h.seq, f)) {
    ++stats.late_relays;
    return;
  }
  auto code = static_cast<status>(h.code);
  group* g = nullptr;
  if (!f.group_key.empty()) {
    if (auto it = groups.find(f.group_key); it != groups.end()) g = it->second.get();
    if (g)
      if (auto* r = member_of(*g, p); r && r->outstanding > 0) --r->outstanding;
  }
  if (code == status::returned) {
    // The peer has no member left: it is no longer one (its INTEREST- may
    // still be on the way), and another member takes the message.
    ++stats.rerouted;
    if (g) {
      std::erase_if(g->remote, [&](const remote_member& r) { return r.owner == &p; });
      g->next_remote = 0;
      std::erase(p.groups, g->key);
    }
    if (g) deliver_to_group(*g, {f.msg, f.delivery}, nullptr, true);
    settle(*f.msg, g ? status::ok : status::no_interest);
    if (g) maybe_erase_group(*g);
    return;
  }
  settle(*f.msg, code);
  if (g) drain_group(*g);
}

void core::state::rebuild_welcome() {
  // The cluster's endpoints, ours first: where clients fail over to.
  auto w = std::make_shared<welcome_info>();
  w->node = cfg.id;
  w->heartbeat_ms = static_cast<std::uint32_t>(cfg.heartbeat.count());
  w->max_payload = cfg.limits.max_payload_bytes;
  w->flags = (flow_on() ? wire::flag_flow_control : 0) | wire::flag_msg_runs;
  std::vector<std::string_view> list(cfg.advertise.begin(), cfg.advertise.end());
  for (auto& [id, p] : peers)
    for (auto& ep : p->endpoints)
      if (std::find(list.begin(), list.end(), ep) == list.end()
          && list.size() < cfg.limits.max_array_size)
        list.push_back(ep);
  w->brokers = wire::pack_string_list(list, w->brokers_raw); // no later appends: views stay
  welcome = std::move(w);
}

} // namespace plexus::broker
