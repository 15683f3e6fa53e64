// SPDX-License-Identifier: Apache-2.0
// The peer mesh on sans-IO cores: several brokers wired together in memory
// with one fake clock. Every envelope between them goes through the codec,
// so what a core sends a peer is proven to be a valid frame.
#include <boost/test/unit_test.hpp>

#include <functional>
#include <map>
#include <memory>
#include <set>

#include "broker_harness.hpp"
#include "print.hpp"

using namespace plexus;
using namespace plexus::test;
using broker::status;
using wire::op;

namespace {

/// Brokers "a", "b", "c", ... each dialing every other (a full mesh: two
/// links per pair), clients attached to any of them.
class mesh {
public:
  /// `n` brokers that share a cluster secret unless `secret_of` gives
  /// broker i another.
  /// `adjust` changes broker i's config last.
  explicit mesh(std::size_t n, broker::config base = {},
                std::function<std::string(std::size_t)> secret_of = {},
                std::function<void(std::size_t, broker::config&)> adjust = {}) {
    for (std::size_t i = 0; i < n; ++i) {
      auto cfg = base;
      cfg.id = std::string(1, static_cast<char>('a' + i));
      cfg.advertise = {"tcp://" + cfg.id + ":7400"};
      cfg.cluster_secret = secret_of ? secret_of(i) : "the mesh test's cluster secret";
      if (adjust) adjust(i, cfg);
      brokers_.push_back(std::make_unique<broker::core>(cfg));
      brokers_.back()->tick(now_);
    }
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        if (i != j) dial(i, j);
    pump();
  }

  broker::core& at(std::size_t i) { return *brokers_[i]; }
  [[nodiscard]] broker::time_point now() const { return now_; }

  /// `from` dials `to`: a link with one connection id at each end.
  void dial(std::size_t from, std::size_t to) {
    auto out = next_conn_++, in = next_conn_++;
    wires_[{from, out}] = {to, in};
    wires_[{to, in}] = {from, out};
    brokers_[from]->dial(out, now_);
  }

  /// A client on broker `b`, welcomed; `lineage` as its HELLO says it.
  conn_id connect(std::size_t b, std::string node = "client", std::uint64_t lineage = 0) {
    auto c = next_conn_++;
    wire::header h;
    h.kind = op::hello;
    h.node = node;
    h.seq = lineage;
    send(b, c, h);
    auto got = take(b, c);
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST_REQUIRE((got[0].kind == op::welcome));
    last_welcome_ = got[0];
    return c;
  }

  void send(std::size_t b, conn_id c, const wire::header& h, std::string_view payload = {}) {
    deliver(b, c, h, payload);
    pump();
  }

  void subscribe(std::size_t b, conn_id c, std::uint32_t sid, std::string pattern,
                 sub_options o = {}) {
    wire::header h;
    h.kind = op::sub;
    h.sid = sid;
    h.topic = pattern;
    h.queue = o.queue;
    h.ack = o.acked ? wire::ack_mode::explicit_ack : wire::ack_mode::none;
    h.credit = o.credit;
    h.ack_wait_ms = o.ack_wait_ms;
    send(b, c, h);
  }

  void unsubscribe(std::size_t b, conn_id c, std::uint32_t sid) {
    wire::header h;
    h.kind = op::unsub;
    h.sid = sid;
    send(b, c, h);
  }

  void publish(std::size_t b, conn_id c, std::string topic, std::string payload,
               pub_options o = {}) {
    wire::header h;
    h.kind = op::pub;
    h.topic = topic;
    h.msg_id = o.msg_id;
    h.flags = o.confirm ? wire::flag_confirm : 0;
    h.reply_to = o.reply_to;
    send(b, c, h, payload);
  }

  void ack(std::size_t b, conn_id c, std::uint32_t sid, std::uint64_t seq) {
    wire::header h;
    h.kind = op::ack;
    h.sid = sid;
    h.seq = seq;
    send(b, c, h);
  }

  void credit(std::size_t b, conn_id c, std::uint32_t sid, std::uint32_t n) {
    wire::header h;
    h.kind = op::credit;
    h.sid = sid;
    h.credit = n;
    send(b, c, h);
  }

  /// Broker `b` dies: every link to it drops at the other end, and what
  /// it queued is lost.
  void kill(std::size_t b) {
    dead_.insert(b);
    for (auto& [end, other] : wires_)
      if (end.first == b && !dead_.contains(other.first))
        brokers_[other.first]->disconnected(other.second, now_);
    pump();
  }

  /// Broker `b` restarts faster than its peers notice: its old links stay
  /// open at their ends (into a void), the new process dials everyone.
  void restart(std::size_t b) {
    dead_.erase(b); // a killed broker may come back too
    auto cfg = brokers_[b]->settings();
    brokers_[b] = std::make_unique<broker::core>(cfg);
    brokers_[b]->tick(now_);
    for (auto it = wires_.begin(); it != wires_.end();) {
      if (it->first.first == b) it = wires_.erase(it); // the old process's ends
      else ++it;
    }
    for (std::size_t j = 0; j < brokers_.size(); ++j)
      if (j != b && !dead_.contains(j)) dial(b, j);
    pump();
  }

  /// A client connection drops (its process died).
  void drop(std::size_t b, conn_id c) {
    brokers_[b]->disconnected(c, now_);
    pump();
  }

  /// Broker `b` stops (SIGSTOP): no ticks, no input, no output.
  void freeze(std::size_t b) { dead_.insert(b); }

  void advance(std::chrono::milliseconds d) {
    auto end = now_ + d;
    while (now_ < end) {
      now_ = std::min(end, now_ + broker::time_point{50ms});
      for (std::size_t i = 0; i < brokers_.size(); ++i)
        if (!dead_.contains(i)) brokers_[i]->tick(now_);
      pump();
    }
  }

  std::vector<seen> take(std::size_t b, conn_id c) { return std::exchange(inbox_[{b, c}], {}); }

  std::vector<seen> take(std::size_t b, conn_id c, op kind) {
    std::vector<seen> out;
    for (auto& s : take(b, c))
      if (s.kind == kind) out.push_back(std::move(s));
    return out;
  }

  [[nodiscard]] const seen& last_welcome() const { return last_welcome_; }

  /// Moves envelopes until every broker is quiet.
  void pump() {
    for (int round = 0; round < 1000; ++round) {
      bool moved = false;
      for (std::size_t i = 0; i < brokers_.size(); ++i) {
        if (dead_.contains(i)) continue;
        brokers_[i]->flush([&](conn_id c, std::span<const broker::output> outs) {
          for (auto& o : outs) carry(i, c, o);
          moved = moved || !outs.empty();
          return outs.size();
        });
        (void)brokers_[i]->take_closed();
      }
      if (!moved) return;
    }
    BOOST_FAIL("the mesh never went quiet (a forwarding loop?)");
  }

private:
  void deliver(std::size_t b, conn_id c, const wire::header& h, std::string_view payload) {
    if (dead_.contains(b)) return;
    std::string bytes;
    wire::encode_header(h, bytes);
    std::string body{payload};
    std::vector<std::string_view> frames{bytes};
    if (wire::carries_payload(h.kind)) frames.push_back(body);
    wire::entry e;
    auto err = wire::decode_message(frames, {}, e);
    BOOST_TEST_REQUIRE(err.ok(), "a bad frame: " << wire::to_string(err));
    brokers_[b]->receive(c, e, now_);
  }

  void carry(std::size_t b, conn_id c, const broker::output& o) {
    auto h = o.header();
    if (auto w = wires_.find({b, c}); w != wires_.end()) {
      if (wires_.contains(w->second)) deliver(w->second.first, w->second.second, h, o.payload());
      return; // a link whose other end restarted: into the void
    }
    if (h.kind == op::ping) { // clients here are alive and answer
      wire::header pong;
      pong.kind = op::pong;
      deliver(b, c, pong, {});
      return;
    }
    seen s;
    s.kind = h.kind;
    s.sid = h.sid;
    s.delivery = h.delivery;
    s.code = h.code;
    s.seq = h.seq;
    s.topic = h.topic;
    s.msg_id = h.msg_id;
    s.node = h.node;
    s.payload = o.payload();
    for (auto b2 : h.brokers.items()) s.headers.emplace_back("broker", b2);
    inbox_[{b, c}].push_back(std::move(s));
  }

  std::vector<std::unique_ptr<broker::core>> brokers_;
  std::map<std::pair<std::size_t, conn_id>, std::pair<std::size_t, conn_id>> wires_;
  std::map<std::pair<std::size_t, conn_id>, std::vector<seen>> inbox_;
  std::set<std::size_t> dead_;
  broker::time_point now_{std::chrono::seconds{1'800'000'000}};
  conn_id next_conn_ = 1;
  seen last_welcome_;
};

std::multiset<std::string> payloads(const std::vector<seen>& v) {
  std::multiset<std::string> out;
  for (auto& s : v) out.insert(s.payload);
  return out;
}

/// Members of queue group "g" on `q` (acked, credit 100) on b and c, and a
/// publisher on a that has published `n` confirmed messages; what b's and
/// c's members got, unacked.
struct spread_group {
  mesh m{3};
  conn_id wb = m.connect(1), wc = m.connect(2), pub = 0;
  std::vector<seen> at_b, at_c;

  explicit spread_group(int n) {
    sub_options o{.queue = "g", .acked = true, .credit = 100};
    m.subscribe(1, wb, 1, "q", o);
    m.subscribe(2, wc, 1, "q", o);
    pub = m.connect(0);
    for (int i = 0; i < n; ++i)
      m.publish(0, pub, "q", std::to_string(i), {.msg_id = "m" + std::to_string(i), .confirm = true});
    at_b = m.take(1, wb, op::msg);
    at_c = m.take(2, wc, op::msg);
    BOOST_TEST_REQUIRE(!at_b.empty());
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(broker_mesh)

BOOST_AUTO_TEST_CASE(brokers_link_up_and_clients_learn_every_broker_to_fail_over_to) {
  mesh m{3};
  for (std::size_t i = 0; i < 3; ++i) {
    auto peers = m.at(i).peers();
    BOOST_TEST_REQUIRE(peers.size() == 2u);
    for (auto& p : peers) BOOST_TEST(p.links == 2u); // each dialed the other
    BOOST_TEST(m.at(i).current().peers == 2u);
  }
  m.connect(1);
  std::set<std::string> listed;
  for (auto& [k, v] : m.last_welcome().headers) listed.insert(v);
  BOOST_TEST(listed == (std::set<std::string>{"tcp://a:7400", "tcp://b:7400", "tcp://c:7400"}));
}

BOOST_AUTO_TEST_CASE(a_message_reaches_each_subscriber_in_the_cluster_once_and_never_loops) {
  mesh m{3};
  std::vector<conn_id> subs;
  for (std::size_t i = 0; i < 3; ++i) {
    subs.push_back(m.connect(i));
    m.subscribe(i, subs[i], 1, "orders.*");
  }
  // Two patterns of one client that both match: one forward, two MSGs.
  m.subscribe(2, subs[2], 2, "orders.>");
  auto pub = m.connect(0);
  m.publish(0, pub, "orders.eu", "o1");
  BOOST_TEST(payloads(m.take(0, subs[0], op::msg)) == std::multiset<std::string>{"o1"});
  BOOST_TEST(payloads(m.take(1, subs[1], op::msg)) == std::multiset<std::string>{"o1"});
  BOOST_TEST(payloads(m.take(2, subs[2], op::msg)) == (std::multiset<std::string>{"o1", "o1"}));
  BOOST_TEST(m.at(0).stats().forwarded == 2u);
  BOOST_TEST(m.at(1).stats().forwarded == 0u); // a peer's message is never forwarded again
  BOOST_TEST(m.at(2).stats().forwarded == 0u);
  m.publish(0, pub, "invoices.eu", "nobody");
  BOOST_TEST(m.at(0).stats().forwarded == 2u); // no interest anywhere: nothing forwarded
}

BOOST_AUTO_TEST_CASE(unsubscribing_withdraws_the_interest_from_peers) {
  mesh m{2};
  auto sub = m.connect(1);
  m.subscribe(1, sub, 1, "t.*");
  m.subscribe(1, sub, 2, "t.*"); // the same pattern twice: one interest
  BOOST_TEST(m.at(0).peers()[0].interests == 1u);
  m.unsubscribe(1, sub, 1);
  BOOST_TEST(m.at(0).peers()[0].interests == 1u); // sid 2 still holds it
  m.unsubscribe(1, sub, 2);
  BOOST_TEST(m.at(0).peers()[0].interests == 0u);
  auto pub = m.connect(0);
  m.publish(0, pub, "t.x", "late");
  BOOST_TEST(m.at(0).stats().forwarded == 0u);
}

BOOST_AUTO_TEST_CASE(a_queue_group_spread_over_brokers_gets_each_message_once_confirmed_end_to_end) {
  mesh m{3};
  auto w1 = m.connect(1, "w1");
  auto w2 = m.connect(2, "w2");
  sub_options o{.queue = "workers", .acked = true, .credit = 100};
  m.subscribe(1, w1, 1, "jobs.*", o);
  m.subscribe(2, w2, 1, "jobs.*", o);
  auto pub = m.connect(0, "pub");
  for (int i = 0; i < 20; ++i)
    m.publish(0, pub, "jobs.x", "j" + std::to_string(i),
              {.msg_id = "id" + std::to_string(i), .confirm = true});
  auto at1 = m.take(1, w1, op::msg), at2 = m.take(2, w2, op::msg);
  BOOST_TEST(at1.size() + at2.size() == 20u);
  BOOST_TEST(!at1.empty()); // both brokers' members share the work
  BOOST_TEST(!at2.empty());
  std::set<std::string> all;
  for (auto& s : at1) all.insert(s.payload);
  for (auto& s : at2) all.insert(s.payload);
  BOOST_TEST(all.size() == 20u);
  BOOST_TEST(m.take(0, pub, op::confirm).empty()); // nothing acked yet: nothing confirmed
  for (auto& s : at1) m.ack(1, w1, 1, s.seq);
  for (auto& s : at2) m.ack(2, w2, 1, s.seq);
  auto confirms = m.take(0, pub, op::confirm);
  BOOST_TEST(confirms.size() == 20u);
  for (auto& c : confirms) BOOST_TEST(c.code == 0u);
  BOOST_TEST(m.at(0).current().forwards_unsettled == 0u);
}

BOOST_AUTO_TEST_CASE(a_local_member_with_credit_comes_before_a_peer) {
  mesh m{2};
  auto local = m.connect(0), remote = m.connect(1);
  m.subscribe(0, local, 1, "q", {.queue = "g", .credit = 3});
  m.subscribe(1, remote, 1, "q", {.queue = "g", .credit = 100});
  auto pub = m.connect(0);
  for (int i = 0; i < 5; ++i) m.publish(0, pub, "q", std::to_string(i));
  BOOST_TEST(m.take(0, local, op::msg).size() == 3u); // its credit
  BOOST_TEST(m.take(1, remote, op::msg).size() == 2u); // the rest
}

BOOST_AUTO_TEST_CASE(a_peer_gets_no_more_than_its_members_can_hold) {
  mesh m{2};
  auto w = m.connect(1);
  m.subscribe(1, w, 1, "q", {.queue = "g", .acked = true, .credit = 2});
  auto pub = m.connect(0);
  for (int i = 0; i < 5; ++i) m.publish(0, pub, "q", std::to_string(i));
  auto got = m.take(1, w, op::msg);
  BOOST_TEST_REQUIRE(got.size() == 2u);
  BOOST_TEST(m.at(0).current().group_queued == 3u); // the rest waits at the origin
  BOOST_TEST(m.at(1).current().group_queued == 0u);
  // The member acks and grants credit: the window moves.
  m.ack(1, w, 1, got[0].seq);
  m.credit(1, w, 1, 1);
  BOOST_TEST(m.take(1, w, op::msg).size() == 1u);
  BOOST_TEST(m.at(0).current().group_queued == 2u);
}

BOOST_AUTO_TEST_CASE(a_dead_broker_s_unsettled_forwards_go_to_another_member) {
  spread_group g{10};
  auto& m = g.m;
  m.kill(1); // b dies holding unacked forwards
  auto again = m.take(2, g.wc, op::msg);
  BOOST_TEST(payloads(again) == payloads(g.at_b)); // every one of them, to c
  BOOST_TEST(m.at(0).stats().rerouted == g.at_b.size());
  for (auto& s : g.at_c) m.ack(2, g.wc, 1, s.seq);
  for (auto& s : again) m.ack(2, g.wc, 1, s.seq);
  auto confirms = m.take(0, g.pub, op::confirm);
  BOOST_TEST(confirms.size() == 10u); // nothing lost, all confirmed ok
  for (auto& c : confirms) BOOST_TEST(c.code == 0u);
}

BOOST_AUTO_TEST_CASE(a_peer_whose_last_member_died_returns_what_it_held_to_the_origin) {
  spread_group g{10};
  auto& m = g.m;
  m.drop(1, g.wb); // the worker process on b died; b has no member left
  auto again = m.take(2, g.wc, op::msg);
  BOOST_TEST(payloads(again) == payloads(g.at_b));
  BOOST_TEST(m.at(0).peers()[0].groups == 0u); // b is no longer a member anywhere
}

BOOST_AUTO_TEST_CASE(requests_and_replies_cross_brokers) {
  mesh m{2};
  auto requester = m.connect(0), responder = m.connect(1);
  m.subscribe(0, requester, 1, "_INBOX.n1.>");
  m.subscribe(1, responder, 1, "svc.echo", {.queue = "echo", .credit = 10});
  m.publish(0, requester, "svc.echo", "ping", {.reply_to = "_INBOX.n1.7"});
  auto req = m.take(1, responder, op::msg);
  BOOST_TEST_REQUIRE(req.size() == 1u);
  BOOST_TEST(m.take(0, requester, op::err).empty()); // a responder exists, one hop away
  m.publish(1, responder, "_INBOX.n1.7", "pong");
  auto rep = m.take(0, requester, op::msg);
  BOOST_TEST_REQUIRE(rep.size() == 1u);
  BOOST_TEST(rep[0].payload == "pong");
}

BOOST_AUTO_TEST_CASE(a_publisher_that_fails_over_is_not_delivered_twice_by_the_broker_that_has_it) {
  mesh m{2};
  auto w = m.connect(1);
  m.subscribe(1, w, 1, "q", {.queue = "g", .acked = true, .credit = 10});
  auto pub_a = m.connect(0, "pub", 42);
  m.publish(0, pub_a, "q", "x", {.msg_id = "once", .confirm = true});
  auto got = m.take(1, w, op::msg);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  m.kill(0); // the publisher's broker dies before the confirm
  auto pub_b = m.connect(1, "pub", 42); // it fails over to b and re-sends
  m.publish(1, pub_b, "q", "x", {.msg_id = "once", .confirm = true});
  BOOST_TEST(m.take(1, w, op::msg).empty()); // b already has it in flight
  BOOST_TEST(m.at(1).stats().duplicates == 1u);
  m.ack(1, w, 1, got[0].seq);
  auto confirms = m.take(1, pub_b, op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u); // the confirm follows the publisher
  BOOST_TEST(confirms[0].code == 0u);
}

BOOST_AUTO_TEST_CASE(a_forward_to_a_dead_peer_with_the_last_member_is_settled_not_forgotten) {
  mesh m{2};
  auto w = m.connect(1);
  m.subscribe(1, w, 1, "q", {.queue = "g", .acked = true, .credit = 10});
  auto pub = m.connect(0);
  m.publish(0, pub, "q", "x", {.msg_id = "r1", .confirm = true});
  BOOST_TEST(m.take(1, w, op::msg).size() == 1u);
  BOOST_TEST(m.at(0).current().forwards_unsettled == 1u);
  m.kill(1);
  BOOST_TEST(m.at(0).current().peers == 0u);
  BOOST_TEST(m.at(0).current().forwards_unsettled == 0u);
  // Nobody else can take it: the publisher is told (and may publish
  // again), never left waiting for a confirm that cannot come.
  BOOST_TEST(m.at(0).current().groups == 0u);
  auto confirm = m.take(0, pub, op::confirm);
  BOOST_TEST_REQUIRE(confirm.size() == 1u);
  BOOST_TEST(confirm[0].code == static_cast<std::uint32_t>(status::no_interest));
}

BOOST_AUTO_TEST_CASE(a_restarted_peer_is_a_new_one_and_what_the_old_one_held_is_routed_again) {
  spread_group g{6};
  auto& m = g.m;
  m.restart(1); // before a's heartbeats could notice
  BOOST_TEST(payloads(m.take(2, g.wc, op::msg)) == payloads(g.at_b));
  auto peers = m.at(0).peers();
  BOOST_TEST(peers[0].id == "b");
  BOOST_TEST(peers[0].links == 1u); // the new process's link (a's shell dials it anew)
}

BOOST_AUTO_TEST_CASE(a_silent_peer_is_dropped_after_the_liveness_window_and_idle_ones_are_not) {
  mesh m{3};
  // Idle links stay up: PINGs answered with PONGs keep them alive.
  m.advance(10s);
  BOOST_TEST(m.at(0).current().peers == 2u);
  BOOST_TEST(m.at(0).stats().peer_links_lost == 0u);
  auto w = m.connect(1);
  m.subscribe(1, w, 1, "q", {.queue = "g", .acked = true, .credit = 10});
  auto w2 = m.connect(2);
  m.subscribe(2, w2, 1, "q", {.queue = "g", .acked = true, .credit = 10});
  auto pub = m.connect(0);
  m.publish(0, pub, "q", "x", {.msg_id = "x", .confirm = true});
  m.publish(0, pub, "q", "y", {.msg_id = "y", .confirm = true});
  auto at_b = m.take(1, w, op::msg);
  BOOST_TEST_REQUIRE(at_b.size() == 1u);
  m.freeze(1); // SIGSTOP: b neither reads nor answers
  m.advance(3500ms);
  BOOST_TEST(m.at(0).current().peers == 1u);
  BOOST_TEST(m.at(0).stats().rerouted == 1u);
  auto at_c = m.take(2, w2, op::msg);
  BOOST_TEST(payloads(at_c) == (std::multiset<std::string>{"x", "y"}));
}

BOOST_AUTO_TEST_CASE(peer_ops_from_clients_and_client_ops_from_peers_are_refused) {
  mesh m{2};
  auto c = m.connect(0);
  wire::header fwd;
  fwd.kind = op::fwd;
  fwd.topic = "t";
  fwd.node = "evil";
  m.send(0, c, fwd, "x");
  auto errs = m.take(0, c, op::err);
  BOOST_TEST_REQUIRE(errs.size() == 1u);
  BOOST_TEST(errs[0].code == static_cast<std::uint32_t>(status::protocol_violation));
  // A connection that never said PEER_HELLO cannot declare interest.
  wire::header interest;
  interest.kind = op::interest_add;
  interest.topic = ">";
  m.send(0, 999, interest);
  BOOST_TEST(m.at(0).stats().bad_frames == 2u);
}

BOOST_AUTO_TEST_CASE(interest_counts_only_from_the_link_of_the_peer_s_latest_hello) {
  broker::config cfg;
  cfg.cluster_secret = "a secret that x knows too";
  harness t{cfg}; // one broker; a peer "x" speaks over two links by hand
  auto hello = [&](conn_id link, std::uint32_t number) {
    wire::header h;
    h.kind = op::peer_hello;
    h.node = "x";
    h.seq = 7; // its incarnation
    h.delivery = number;
    auto proof = broker::peer_hello_proof(cfg.cluster_secret, h.node, h.seq, number);
    h.auth = proof;
    t.send(link, h);
  };
  auto interest = [&](conn_id link, std::string pattern) {
    wire::header h;
    h.kind = op::interest_add;
    h.topic = pattern;
    t.send(link, h);
  };
  hello(500, 1);
  interest(500, "old.*");
  hello(501, 2); // a newer hello: its whole interest follows on 501
  BOOST_TEST(t.core().peers()[0].interests == 0u);
  interest(500, "stale.*"); // sent before hello 2, arriving after it: superseded
  interest(501, "new.*");
  auto p = t.core().peers();
  BOOST_TEST_REQUIRE(p.size() == 1u);
  BOOST_TEST(p[0].links == 2u);
  BOOST_TEST(p[0].interests == 1u);
  auto c = t.connect();
  t.publish(c, "stale.x", "no");
  t.publish(c, "new.x", "yes");
  BOOST_TEST(t.core().stats().forwarded == 1u);
}

BOOST_AUTO_TEST_CASE(a_seed_naming_this_broker_is_recognised_and_closed) {
  mesh m{1};
  m.dial(0, 0); // both ends on broker a
  m.pump();
  BOOST_TEST(m.at(0).take_self_links().size() == 1u);
  BOOST_TEST(m.at(0).stats().self_links == 1u);
  BOOST_TEST(m.at(0).peers().empty());
}

BOOST_AUTO_TEST_CASE(a_connection_that_cannot_prove_the_cluster_secret_is_no_peer_and_confirms_nothing) {
  mesh m{1};
  auto pub = m.connect(0);
  // A client that says PEER_HELLO instead of HELLO, claims interest in a
  // queue group and would answer every forward with "ok".
  const conn_id fake = 9000;
  wire::header hello;
  hello.kind = op::peer_hello;
  hello.node = "impostor";
  hello.seq = 1;
  hello.delivery = 1;
  const std::string guess(32, 'x');
  hello.auth = guess; // a view: the string outlives every send
  m.send(0, fake, hello);
  auto refused = m.take(0, fake, op::err);
  BOOST_TEST_REQUIRE(refused.size() == 1u);
  BOOST_TEST(refused[0].code == static_cast<std::uint32_t>(status::not_authorized));
  BOOST_TEST(m.at(0).stats().peers_refused == 1u);
  wire::header interest;
  interest.kind = op::interest_add;
  interest.topic = "orders";
  interest.queue = "workers";
  interest.credit = 100;
  m.send(0, fake, interest);
  BOOST_TEST(m.take(0, fake, op::err).size() == 1u); // refused: not a peer
  for (int i = 0; i < 10; ++i)
    m.publish(0, pub, "orders", "x", {.msg_id = "o" + std::to_string(i), .confirm = true});
  BOOST_TEST(m.take(0, fake, op::fwd).empty());
  auto confirms = m.take(0, pub, op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 10u);
  for (auto& c : confirms) BOOST_TEST(c.code == static_cast<std::uint32_t>(status::no_interest));
  BOOST_TEST(m.at(0).current().peers == 0u);
}

BOOST_AUTO_TEST_CASE(brokers_with_different_cluster_secrets_never_become_peers) {
  mesh m{2, {}, [](std::size_t i) { return "secret number " + std::to_string(i) + " of two"; }};
  BOOST_TEST(m.at(0).current().peers == 0u);
  BOOST_TEST(m.at(1).current().peers == 0u);
  BOOST_TEST(m.at(0).stats().peers_refused >= 1u);
  BOOST_TEST(m.at(1).stats().peers_refused >= 1u);
  mesh same{2};
  BOOST_TEST(same.at(0).current().peers == 1u); // the same secret: linked
}

BOOST_AUTO_TEST_CASE(a_broker_without_a_cluster_secret_admits_no_peer) {
  mesh m{2, {}, [](std::size_t i) { return i == 0 ? std::string{} : std::string{"a secret only b has"}; }};
  BOOST_TEST(m.at(0).current().peers == 0u);
  BOOST_TEST(m.at(1).current().peers == 0u);
}

BOOST_AUTO_TEST_CASE(a_durable_queue_s_home_keeps_what_is_published_anywhere_and_confirms_once_stored) {
  // One configuration for the cluster: durable "shipping" lives on a.
  broker::config shared;
  shared.durables = {{"shipping", {"orders.>"}, 1000, 1 << 20, {}, "a"}};
  mesh m{2, shared};
  BOOST_TEST(m.at(1).durables().empty());
  auto pub = m.connect(1, "pub");
  auto audit = m.connect(1, "audit"); // another group on b: the confirm waits for it too
  m.subscribe(1, audit, 1, "orders.>", {.queue = "audit", .acked = true, .credit = 10});
  m.publish(1, pub, "orders.created", "order 1", {.msg_id = "m1", .confirm = true});
  auto at_b = m.take(1, audit, op::msg);
  BOOST_TEST_REQUIRE(at_b.size() == 1u);
  m.ack(1, audit, 1, at_b[0].seq);
  BOOST_TEST(m.take(1, pub, op::confirm).empty()); // a has not stored it yet
  BOOST_TEST(m.at(1).take_store_ops().empty());    // b keeps nothing
  auto ops = m.at(0).take_store_ops();
  BOOST_TEST_REQUIRE(ops.size() == 1u);
  BOOST_TEST(ops[0].group == "shipping");
  m.at(0).stored(ops[0].id, m.now());
  m.pump();
  auto confirms = m.take(1, pub, op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].code == 0u);
  // Its members subscribe at a; b sends them there.
  auto lost = m.connect(1, "lost");
  m.subscribe(1, lost, 1, "orders.>", {.queue = "shipping", .acked = true, .credit = 10});
  auto errs = m.take(1, lost, op::err);
  BOOST_TEST_REQUIRE(errs.size() == 1u);
  BOOST_TEST(errs[0].code == code_of(status::forbidden));
  auto w = m.connect(0, "w");
  m.subscribe(0, w, 1, "orders.>", {.queue = "shipping", .acked = true, .credit = 10});
  auto got = m.take(0, w, op::msg);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].payload == "order 1");
}

BOOST_AUTO_TEST_CASE(while_a_durable_s_home_is_down_a_publish_elsewhere_hears_116_and_is_kept_once_it_returns) {
  broker::config shared;
  shared.durables = {{"shipping", {"orders.>"}, 1000, 1 << 20, {}, "a"}};
  mesh m{2, shared};
  auto pub = m.connect(1, "pub");
  auto watcher = m.connect(1, "watcher"); // a plain subscriber on b: it gets the message
  m.subscribe(1, watcher, 1, "orders.>");
  m.kill(0);
  m.publish(1, pub, "orders.created", "order 1", {.msg_id = "m1", .confirm = true});
  BOOST_TEST(m.take(1, watcher, op::msg).size() == 1u);
  auto confirms = m.take(1, pub, op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  // Not 0 (the durable did not keep it), not 101 (someone keeps it, once
  // reachable): 116, which the client retries.
  BOOST_TEST(confirms[0].code == code_of(status::unavailable));
  BOOST_TEST(m.at(1).stats().durable_unreachable == 1u);
  // Not a publish on an unrelated subject.
  m.publish(1, pub, "billing.due", "x", {.msg_id = "m2", .confirm = true});
  confirms = m.take(1, pub, op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].code == code_of(status::no_interest));
  // The home returns; the client's re-send of m1 is routed again (a 116 is
  // not a final answer in the dedup window) and kept.
  m.restart(0);
  m.publish(1, pub, "orders.created", "order 1", {.msg_id = "m1", .confirm = true});
  auto ops = m.at(0).take_store_ops();
  BOOST_TEST_REQUIRE(ops.size() == 1u);
  m.at(0).stored(ops[0].id, m.now());
  m.pump();
  confirms = m.take(1, pub, op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].code == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
