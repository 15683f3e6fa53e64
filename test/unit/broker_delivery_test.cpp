// SPDX-License-Identifier: Apache-2.0
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <set>

#include "broker_harness.hpp"
#include "print.hpp"

using namespace plexus;
using namespace plexus::test;
using broker::status;
using wire::nack_action;
using wire::op;

BOOST_AUTO_TEST_SUITE(broker_delivery)

BOOST_AUTO_TEST_CASE(an_ack_settles_a_delivery_and_confirms_end_to_end) {
  harness t;
  auto pub = t.connect();
  auto w = t.connect();
  t.subscribe(w, 1, "jobs", {.queue = "g", .acked = true, .credit = 5});
  t.publish(pub, "jobs", "j1", {.msg_id = "j1", .confirm = true});
  BOOST_TEST(t.take(pub).empty()); // not before the consumer's ACK
  auto got = t.take_msgs(w);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].seq != 0u);
  BOOST_TEST(t.core().current().unacked == 1u);
  t.simple(w, op::ack, 1, got[0].seq);
  BOOST_TEST(t.core().current().unacked == 0u);
  auto confirm = t.take(pub);
  BOOST_TEST_REQUIRE(confirm.size() == 1u);
  BOOST_TEST(confirm[0].kind == op::confirm);
  BOOST_TEST(confirm[0].code == 0u);
  BOOST_TEST(t.core().stats().acks == 1u);
  t.simple(w, op::ack, 1, got[0].seq); // a second ACK is late, not an error
  BOOST_TEST(t.take(w).empty());
  BOOST_TEST(t.core().stats().late_acks == 1u);
}

BOOST_AUTO_TEST_CASE(the_time_from_delivery_to_ack_is_measured_per_broker_and_connection) {
  harness t;
  auto pub = t.connect();
  auto fast = t.connect();
  auto slow = t.connect();
  t.subscribe(fast, 1, "a", {.acked = true});
  t.subscribe(slow, 1, "b", {.acked = true});
  t.publish(pub, "a", "x");
  t.publish(pub, "b", "y");
  auto to_fast = t.take_msgs(fast);
  auto to_slow = t.take_msgs(slow);
  BOOST_TEST_REQUIRE(to_fast.size() == 1u);
  BOOST_TEST_REQUIRE(to_slow.size() == 1u);
  t.advance(5ms);
  t.simple(fast, op::ack, 1, to_fast[0].seq);
  t.advance(45ms);
  t.simple(slow, op::ack, 1, to_slow[0].seq);
  t.simple(slow, op::ack, 1, to_slow[0].seq); // late: not a second measurement
  const auto& all = t.core().ack_latency();
  BOOST_TEST(all.count() == 2u);
  BOOST_TEST(all.quantile(0.5) == 0.005, boost::test_tools::tolerance(0.01));
  BOOST_TEST(all.quantile(1.0) == 0.050, boost::test_tools::tolerance(0.01));
  for (auto& cs : t.core().connections()) {
    if (cs.id == pub) {
      BOOST_TEST(!cs.ack_latency); // it ACKs nothing
      continue;
    }
    BOOST_TEST_REQUIRE(cs.ack_latency);
    BOOST_TEST(cs.ack_latency->count() == 1u);
    BOOST_TEST(cs.ack_latency->quantile(0.5) == (cs.id == fast ? 0.005 : 0.050),
               boost::test_tools::tolerance(0.01));
  }
}

BOOST_AUTO_TEST_CASE(an_ack_with_a_count_settles_a_range_of_deliveries) {
  harness t;
  auto pub = t.connect();
  auto w = t.connect();
  t.subscribe(w, 1, "jobs", {.queue = "g", .acked = true, .credit = 10});
  for (int i = 0; i < 5; ++i) t.publish(pub, "jobs", "j" + std::to_string(i));
  auto got = t.take_msgs(w);
  BOOST_TEST_REQUIRE(got.size() == 5u);
  for (std::size_t i = 1; i < got.size(); ++i) BOOST_TEST(got[i].seq == got[0].seq + i);
  auto ack = [&](std::uint64_t seq, std::uint32_t count) {
    wire::header h;
    h.kind = op::ack;
    h.sid = 1;
    h.seq = seq;
    h.count = count;
    t.send(w, h);
  };
  ack(got[1].seq, 3); // the middle three
  BOOST_TEST(t.core().current().unacked == 2u);
  BOOST_TEST(t.core().stats().acks == 3u);
  // Overlapping what is settled, and past the end: only the rest counts.
  ack(got[0].seq, 1000);
  BOOST_TEST(t.core().current().unacked == 0u);
  BOOST_TEST(t.core().stats().acks == 5u);
  BOOST_TEST(t.core().stats().late_acks == 1u); // one envelope, whatever its count
  ack(~std::uint64_t{0}, 0xffffffffu); // no overflow, nothing to settle
  BOOST_TEST(t.take(w).empty());
  BOOST_TEST(t.core().stats().late_acks == 2u);
}

BOOST_AUTO_TEST_CASE(an_ack_timeout_redelivers_to_another_member) {
  harness t;
  auto pub = t.connect();
  auto slow = t.connect();
  auto fast = t.connect();
  t.subscribe(slow, 1, "jobs", {.queue = "g", .acked = true, .credit = 1, .ack_wait_ms = 1000});
  t.publish(pub, "jobs", "j1");
  BOOST_TEST_REQUIRE(t.take_msgs(slow).size() == 1u);
  t.subscribe(fast, 1, "jobs", {.queue = "g", .acked = true, .credit = 1, .ack_wait_ms = 1000});
  t.advance(900ms);
  BOOST_TEST(t.take_msgs(fast).empty());
  t.advance(200ms);
  auto again = t.take_msgs(fast);
  BOOST_TEST_REQUIRE(again.size() == 1u);
  BOOST_TEST(again[0].payload == "j1");
  BOOST_TEST(again[0].delivery == 2u);
  BOOST_TEST(t.core().stats().ack_timeouts == 1u);
  BOOST_TEST(t.core().stats().redeliveries == 1u);
}

BOOST_AUTO_TEST_CASE(nack_requeue_goes_to_another_member_and_delay_waits) {
  harness t;
  auto pub = t.connect();
  auto a = t.connect();
  auto b = t.connect();
  t.subscribe(a, 1, "q", {.queue = "g", .acked = true, .credit = 10});
  t.publish(pub, "q", "m");
  auto got = t.take_msgs(a);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  t.subscribe(b, 1, "q", {.queue = "g", .acked = true, .credit = 10});
  t.nack(a, 1, got[0].seq, nack_action::requeue);
  auto at_b = t.take_msgs(b);
  BOOST_TEST_REQUIRE(at_b.size() == 1u);
  BOOST_TEST(at_b[0].delivery == 2u);
  BOOST_TEST(t.take_msgs(a).empty());

  t.nack(b, 1, at_b[0].seq, nack_action::delay, 500);
  t.advance(400ms);
  BOOST_TEST(t.take_msgs(a).empty());
  BOOST_TEST(t.take_msgs(b).empty());
  t.advance(200ms);
  auto later = t.take_msgs(a);
  auto later_b = t.take_msgs(b);
  BOOST_TEST(later.size() + later_b.size() == 1u);
  BOOST_TEST(t.core().stats().nacks == 2u);
}

BOOST_AUTO_TEST_CASE(a_poison_message_reaches_the_dead_letter_topic_after_max_deliver) {
  harness t;
  auto pub = t.connect();
  auto w = t.connect();
  auto dlq = t.connect();
  t.subscribe(dlq, 1, "$DLQ.>");
  t.subscribe(w, 1, "orders.*", {.queue = "g", .acked = true, .credit = 100, .max_deliver = 3});
  t.publish(pub, "orders.new", "poison", {.msg_id = "p1", .confirm = true});
  for (std::uint32_t i = 1; i <= 3; ++i) {
    auto got = t.take_msgs(w);
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].delivery == i);
    t.nack(w, 1, got[0].seq, nack_action::requeue, 0, "boom " + std::to_string(i));
  }
  BOOST_TEST(t.take_msgs(w).empty());
  auto dead = t.take_msgs(dlq);
  BOOST_TEST_REQUIRE(dead.size() == 1u);
  BOOST_TEST(dead[0].topic == "$DLQ.orders.new");
  BOOST_TEST(dead[0].payload == "poison");
  BOOST_TEST(dead[0].msg_id == "p1");
  BOOST_TEST(dead[0].header("plexus-dlq-reason") == "boom 3");
  BOOST_TEST(dead[0].header("plexus-dlq-deliveries") == "3");
  BOOST_TEST(dead[0].header("plexus-dlq-topic") == "orders.new");
  BOOST_TEST(!dead[0].header("plexus-dlq-time").empty());
  auto confirm = t.take(pub);
  BOOST_TEST_REQUIRE(confirm.size() == 1u);
  BOOST_TEST(confirm[0].code == static_cast<std::uint32_t>(status::dead_lettered));
  BOOST_TEST(t.core().stats().dead_letters == 1u);
}

BOOST_AUTO_TEST_CASE(nack_with_dead_letter_skips_the_retries) {
  harness t;
  auto pub = t.connect();
  auto w = t.connect();
  t.subscribe(w, 1, "t", {.queue = "g", .acked = true, .credit = 1});
  t.publish(pub, "t", "bad input");
  auto got = t.take_msgs(w);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  t.nack(w, 1, got[0].seq, nack_action::dead_letter, 0, "type mismatch");
  BOOST_TEST(t.core().stats().dead_letters == 1u);
  BOOST_TEST(t.core().stats().dead_letters_dropped == 1u); // nobody on $DLQ.t
  BOOST_TEST(t.core().current().unacked == 0u);
}

BOOST_AUTO_TEST_CASE(a_dead_member_hands_its_unacked_messages_to_the_others) {
  harness t;
  auto pub = t.connect();
  auto doomed = t.connect();
  auto other = t.connect();
  t.subscribe(doomed, 1, "q", {.queue = "g", .acked = true, .credit = 100});
  for (int i = 0; i < 10; ++i) t.publish(pub, "q", std::to_string(i));
  BOOST_TEST(t.take_msgs(doomed).size() == 10u);
  t.subscribe(other, 1, "q", {.queue = "g", .acked = true, .credit = 100});
  t.core().disconnected(doomed, t.now());
  t.flush();
  auto got = t.take_msgs(other);
  BOOST_TEST_REQUIRE(got.size() == 10u);
  std::set<std::string> ids;
  for (auto& m : got) {
    ids.insert(m.payload);
    BOOST_TEST(m.delivery == 2u);
  }
  BOOST_TEST(ids.size() == 10u);
}

BOOST_AUTO_TEST_CASE(a_silent_connection_is_declared_dead_after_the_liveness_window) {
  broker::config cfg;
  cfg.heartbeat = 1000ms;
  cfg.liveness = 3;
  harness t{cfg};
  auto pub = t.connect();
  auto quiet = t.connect();
  auto other = t.connect();
  t.subscribe(quiet, 1, "q", {.queue = "g", .acked = true, .credit = 10});
  t.publish(pub, "q", "m");
  BOOST_TEST_REQUIRE(t.take_msgs(quiet).size() == 1u);
  t.subscribe(other, 1, "q", {.queue = "g", .acked = true, .credit = 10});
  // `pub` and `other` answer; `quiet` says nothing.
  for (int i = 0; i < 3; ++i) {
    t.advance(1000ms);
    t.simple(pub, op::pong, 0);
    t.simple(other, op::pong, 0);
  }
  t.advance(100ms);
  BOOST_TEST(t.was_closed(quiet));
  BOOST_TEST(!t.was_closed(other));
  BOOST_TEST(t.core().stats().heartbeat_timeouts == 1u);
  auto got = t.take_msgs(other);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].payload == "m");
}

BOOST_AUTO_TEST_CASE(the_broker_pings_connections_it_has_not_written_to) {
  harness t;
  auto c = t.connect();
  t.advance(1100ms);
  auto got = t.take(c);
  BOOST_TEST_REQUIRE(!got.empty());
  BOOST_TEST(got[0].kind == op::ping);
  t.simple(c, op::ping, 0);
  got = t.take(c);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].kind == op::pong);
}

namespace {
std::size_t pings(harness& t, conn_id c) {
  auto got = t.take(c);
  return static_cast<std::size_t>(
    std::count_if(got.begin(), got.end(), [](const auto& x) { return x.kind == op::ping; }));
}
} // namespace

BOOST_AUTO_TEST_CASE(a_connection_holding_unacked_messages_is_probed_between_heartbeats) {
  // A probe is a send: to a process that died it fails at once (the shell
  // then closes the connection), and its work goes to the others.
  harness t; // heartbeat 1 s, holder_probe 100 ms
  auto pub = t.connect();
  auto holder = t.connect();
  auto idle = t.connect();
  t.subscribe(holder, 1, "q", {.queue = "g", .acked = true, .credit = 10});
  t.subscribe(idle, 1, "elsewhere", {.acked = true});
  t.publish(pub, "q", "m");
  auto got = t.take_msgs(holder);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  t.take(idle);
  t.advance(150ms);
  BOOST_TEST(pings(t, holder) == 1u);
  BOOST_TEST(pings(t, idle) == 0u);
  t.advance(100ms);
  BOOST_TEST(pings(t, holder) == 1u); // again while it holds the message
  t.simple(holder, op::ack, 1, got[0].seq);
  t.take(holder);
  t.advance(300ms);
  BOOST_TEST(pings(t, holder) == 0u); // holds nothing: heartbeats only
  t.advance(600ms);
  BOOST_TEST(pings(t, idle) == 1u); // the heartbeat, at 1 s
}

BOOST_AUTO_TEST_CASE(holder_probes_can_be_turned_off) {
  broker::config cfg;
  cfg.holder_probe = 0ms;
  harness t{cfg};
  auto pub = t.connect();
  auto holder = t.connect();
  t.subscribe(holder, 1, "q", {.queue = "g", .acked = true, .credit = 10});
  t.publish(pub, "q", "m");
  BOOST_TEST_REQUIRE(t.take_msgs(holder).size() == 1u);
  t.advance(500ms);
  BOOST_TEST(pings(t, holder) == 0u);
}

BOOST_AUTO_TEST_CASE(a_publisher_that_resends_after_reconnecting_gets_the_confirm) {
  harness t;
  auto first = t.connect("pub", 7); // its lineage: the same across reconnects
  auto w = t.connect();
  t.subscribe(w, 1, "t", {.queue = "g", .acked = true, .credit = 10});
  t.publish(first, "t", "x", {.msg_id = "id1", .confirm = true});
  auto got = t.take_msgs(w);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  t.core().disconnected(first, t.now());
  auto second = t.connect("pub", 7); // the same publisher, new connection
  t.publish(second, "t", "x", {.msg_id = "id1", .confirm = true});
  BOOST_TEST(t.take_msgs(w).empty()); // a duplicate: not delivered again
  t.simple(w, op::ack, 1, got[0].seq);
  auto confirm = t.take(second);
  BOOST_TEST_REQUIRE(confirm.size() == 1u);
  BOOST_TEST(confirm[0].kind == op::confirm);
  BOOST_TEST(confirm[0].msg_id == "id1");
}

BOOST_AUTO_TEST_CASE(at_least_once_fan_out_redelivers_to_the_same_subscriber) {
  harness t;
  auto pub = t.connect();
  auto s = t.connect();
  t.subscribe(s, 1, "t", {.acked = true, .ack_wait_ms = 500});
  t.publish(pub, "t", "x");
  BOOST_TEST_REQUIRE(t.take_msgs(s).size() == 1u);
  t.advance(600ms);
  auto again = t.take_msgs(s);
  BOOST_TEST_REQUIRE(again.size() == 1u);
  BOOST_TEST(again[0].delivery == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
