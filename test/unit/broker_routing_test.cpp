// SPDX-License-Identifier: Apache-2.0
#include <boost/test/unit_test.hpp>

#include <map>
#include <set>

#include "broker_harness.hpp"
#include "print.hpp"

using namespace plexus;
using namespace plexus::test;
using broker::status;
using wire::op;

BOOST_AUTO_TEST_SUITE(broker_routing)

BOOST_AUTO_TEST_CASE(hello_is_answered_with_welcome_and_nothing_else_comes_before_it) {
  broker::config cfg;
  cfg.id = "b7";
  cfg.advertise = {"tcp://127.0.0.1:4222", "tcp://127.0.0.1:4223"};
  harness t{cfg};
  wire::header sub;
  sub.kind = op::sub;
  sub.sid = 1;
  sub.topic = "a";
  t.send(50, sub);
  auto got = t.take(50);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].kind == op::err);
  BOOST_TEST(got[0].code == static_cast<std::uint32_t>(status::protocol_violation));
  BOOST_TEST(t.core().stats().bad_frames == 1u);

  wire::header hello;
  hello.kind = op::hello;
  hello.node = "n1";
  t.send(50, hello);
  got = t.take(50);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].kind == op::welcome);
  BOOST_TEST(got[0].node == "b7");
}

BOOST_AUTO_TEST_CASE(plain_subscribers_get_every_message_their_pattern_matches) {
  harness t;
  auto pub = t.connect("pub");
  auto a = t.connect("a");
  auto b = t.connect("b");
  t.subscribe(a, 1, "orders.*.shipped");
  t.subscribe(b, 1, "orders.>");
  t.subscribe(b, 2, "invoices.*");
  t.publish(pub, "orders.eu.shipped", "o1");
  t.publish(pub, "orders.eu.de.shipped", "o2");
  t.publish(pub, "invoices.eu", "i1");
  t.publish(pub, "nobody.listens", "x");
  auto at_a = t.take_msgs(a);
  BOOST_TEST_REQUIRE(at_a.size() == 1u);
  BOOST_TEST(at_a[0].payload == "o1");
  BOOST_TEST(at_a[0].sid == 1u);
  BOOST_TEST(at_a[0].delivery == 1u);
  auto at_b = t.take_msgs(b);
  BOOST_TEST_REQUIRE(at_b.size() == 3u);
  BOOST_TEST(at_b[0].payload == "o1");
  BOOST_TEST(at_b[1].payload == "o2");
  BOOST_TEST(at_b[2].payload == "i1");
  BOOST_TEST(at_b[2].sid == 2u);
  BOOST_TEST(t.core().stats().no_interest == 1u);
}

BOOST_AUTO_TEST_CASE(unsubscribe_and_connection_loss_remove_every_subscription) {
  harness t;
  auto pub = t.connect();
  auto a = t.connect();
  auto b = t.connect();
  t.subscribe(a, 1, "t");
  t.subscribe(b, 1, "t");
  t.subscribe(b, 2, "t", {.queue = "g", .credit = 10});
  t.simple(a, op::unsub, 1);
  t.core().disconnected(b, t.now());
  BOOST_TEST(t.core().current().subscriptions == 0u);
  BOOST_TEST(t.core().current().groups == 0u);
  t.publish(pub, "t", "x");
  BOOST_TEST(t.take_msgs(a).empty());
  BOOST_TEST(t.core().stats().no_interest == 1u);
  t.simple(a, op::unsub, 1); // already gone
  auto err = t.take(a);
  BOOST_TEST_REQUIRE(err.size() == 1u);
  BOOST_TEST(err[0].code == static_cast<std::uint32_t>(status::unknown_subscription));
}

BOOST_AUTO_TEST_CASE(a_queue_group_gives_each_message_to_one_member_fairly_within_credit) {
  harness t;
  auto pub = t.connect();
  std::vector<conn_id> members;
  for (int i = 0; i < 3; ++i) {
    members.push_back(t.connect());
    t.subscribe(members.back(), 9, "jobs.>", {.queue = "workers", .credit = 1000});
  }
  for (int i = 0; i < 3000; ++i) t.publish(pub, "jobs.x", std::to_string(i));
  std::set<std::string> all;
  for (auto m : members) {
    auto got = t.take_msgs(m);
    BOOST_TEST(got.size() == 1000u); // exactly fair: round robin
    for (auto& s : got) all.insert(s.payload);
  }
  BOOST_TEST(all.size() == 3000u); // each message once
}

BOOST_AUTO_TEST_CASE(a_group_member_never_gets_more_than_its_credit) {
  harness t;
  auto pub = t.connect();
  auto m1 = t.connect();
  auto m2 = t.connect();
  t.subscribe(m1, 1, "q", {.queue = "g", .credit = 2});
  t.subscribe(m2, 1, "q", {.queue = "g", .credit = 3});
  for (int i = 0; i < 10; ++i) t.publish(pub, "q", std::to_string(i));
  BOOST_TEST(t.take_msgs(m1).size() == 2u);
  BOOST_TEST(t.take_msgs(m2).size() == 3u);
  BOOST_TEST(t.core().current().group_queued == 5u);
  // Credit releases the waiting messages, in order.
  t.simple(m1, op::credit, 1, 0, 4);
  auto got = t.take_msgs(m1);
  BOOST_TEST_REQUIRE(got.size() == 4u);
  BOOST_TEST(got[0].payload == "5");
  BOOST_TEST(got[3].payload == "8");
  BOOST_TEST(t.core().current().group_queued == 1u);
}

BOOST_AUTO_TEST_CASE(a_member_that_withdraws_its_credit_gets_nothing_more_and_its_nacks_go_elsewhere) {
  harness t;
  auto pub = t.connect();
  auto leaving = t.connect();
  auto staying = t.connect();
  t.subscribe(leaving, 1, "q", {.queue = "g", .acked = true, .credit = 100});
  t.subscribe(staying, 1, "q", {.queue = "g", .acked = true, .credit = 0});
  t.publish(pub, "q", "1");
  t.publish(pub, "q", "2");
  auto held = t.take_msgs(leaving);
  BOOST_TEST_REQUIRE(held.size() == 2u);
  // CREDIT with the set flag: its credit becomes 0, whatever it was.
  wire::header h;
  h.kind = op::credit;
  h.sid = 1;
  h.credit = 0;
  h.flags = wire::flag_credit_set;
  t.send(leaving, h);
  t.publish(pub, "q", "3"); // no member has credit: it waits in the group
  BOOST_TEST(t.take_msgs(leaving).empty());
  BOOST_TEST(t.core().current().group_queued == 1u);
  // A NACK from it is not given back to it (the only member with credit
  // before), and its ACK still settles.
  t.nack(leaving, 1, held[1].seq, wire::nack_action::requeue, 0, "stopping");
  t.simple(leaving, op::ack, 1, held[0].seq);
  BOOST_TEST(t.take_msgs(leaving).empty());
  BOOST_TEST(t.core().current().group_queued == 2u);
  BOOST_TEST(t.core().current().unacked == 0u);
  // The other member gets both once it grants credit; set also raises.
  h.credit = 5;
  t.send(staying, h);
  auto got = t.take_msgs(staying);
  BOOST_TEST_REQUIRE(got.size() == 2u);
  std::set<std::string> payloads{got[0].payload, got[1].payload};
  BOOST_TEST((payloads == std::set<std::string>{"2", "3"}));
  BOOST_TEST(t.core().current().group_queued == 0u);
}

BOOST_AUTO_TEST_CASE(a_full_group_queue_drops_counts_and_tells_a_confirming_publisher) {
  broker::config cfg;
  cfg.group_queue_msgs = 2;
  harness t{cfg};
  auto pub = t.connect();
  auto m = t.connect();
  t.subscribe(m, 1, "q", {.queue = "g", .credit = 0});
  t.publish(pub, "q", "1");
  t.publish(pub, "q", "2");
  t.publish(pub, "q", "3", {.msg_id = "id-3", .confirm = true});
  t.publish(pub, "q", "4"); // no confirm asked: dropped silently, counted
  BOOST_TEST(t.core().stats().group_queue_drops == 2u);
  auto got = t.take(pub);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].kind == op::confirm);
  BOOST_TEST(got[0].msg_id == "id-3");
  BOOST_TEST(got[0].code == static_cast<std::uint32_t>(status::overloaded));
  BOOST_TEST(t.core().current().group_queued == 2u);
}

BOOST_AUTO_TEST_CASE(a_request_whose_queue_group_is_full_gets_overloaded_at_once) {
  broker::config cfg;
  cfg.group_queue_msgs = 1;
  harness t{cfg};
  auto req = t.connect();
  auto m = t.connect();
  t.subscribe(m, 1, "svc.lookup", {.queue = "g", .credit = 0});
  t.publish(req, "svc.lookup", "1", {.msg_id = "r1", .reply_to = "_INBOX.n1.1"}); // waits
  BOOST_TEST(t.take(req).empty());
  t.publish(req, "svc.lookup", "2", {.msg_id = "r2", .reply_to = "_INBOX.n1.2"}); // no room
  auto got = t.take(req);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].kind == op::err);
  BOOST_TEST(got[0].code == static_cast<std::uint32_t>(status::overloaded));
  BOOST_TEST(got[0].reply_to == "_INBOX.n1.2");
  BOOST_TEST(got[0].msg_id == "r2");
  BOOST_TEST(t.core().stats().group_queue_drops == 1u);
  // With a second way on (a plain subscriber), the request still arrives
  // somewhere: no ERR, the reply may come.
  auto watcher = t.connect();
  t.subscribe(watcher, 1, "svc.*");
  t.publish(req, "svc.lookup", "3", {.msg_id = "r3", .reply_to = "_INBOX.n1.3"});
  BOOST_TEST(t.take(req).empty());
  BOOST_TEST(t.take_msgs(watcher).size() == 1u);
  BOOST_TEST(t.core().stats().group_queue_drops == 2u);
}

BOOST_AUTO_TEST_CASE(a_request_nobody_subscribes_to_gets_no_responders_at_once) {
  harness t;
  auto req = t.connect();
  t.publish(req, "svc.lookup", "q", {.msg_id = "r1", .reply_to = "_INBOX.n1.1"});
  auto got = t.take(req);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].kind == op::err);
  BOOST_TEST(got[0].code == static_cast<std::uint32_t>(status::no_responders));
  BOOST_TEST(got[0].reply_to == "_INBOX.n1.1");
  BOOST_TEST(got[0].msg_id == "r1");
  BOOST_TEST(t.core().stats().no_responders == 1u);

  auto svc = t.connect();
  t.subscribe(svc, 1, "svc.*");
  t.publish(req, "svc.lookup", "q", {.reply_to = "_INBOX.n1.2"});
  BOOST_TEST(t.take(req).empty());
  auto asked = t.take_msgs(svc);
  BOOST_TEST_REQUIRE(asked.size() == 1u);
  BOOST_TEST(asked[0].reply_to == "_INBOX.n1.2");
}

BOOST_AUTO_TEST_CASE(expired_message_is_dropped_by_broker) {
  harness t;
  auto pub = t.connect();
  auto m = t.connect();
  t.subscribe(m, 1, "q", {.queue = "g", .credit = 0});
  auto now_ns = static_cast<std::uint64_t>(t.now().count());
  t.publish(pub, "q", "late", {.msg_id = "x1", .confirm = true, .deadline_ns = now_ns});
  auto got = t.take(pub);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].code == static_cast<std::uint32_t>(status::expired));
  // One that expires while it waits for credit is dropped, never delivered.
  t.publish(pub, "q", "soon", {.deadline_ns = now_ns + 100'000'000});
  t.publish(pub, "q", "later", {.deadline_ns = now_ns + 10'000'000'000});
  t.advance(200ms);
  t.simple(m, op::credit, 1, 0, 10);
  auto msgs = t.take_msgs(m);
  BOOST_TEST_REQUIRE(msgs.size() == 1u);
  BOOST_TEST(msgs[0].payload == "later");
  BOOST_TEST(t.core().stats().expired == 2u);
}

BOOST_AUTO_TEST_CASE(a_confirm_for_fan_out_comes_when_the_message_is_routed) {
  harness t;
  auto pub = t.connect();
  auto a = t.connect();
  t.subscribe(a, 1, "t");
  t.publish(pub, "t", "x", {.msg_id = "m1", .confirm = true});
  auto got = t.take(pub);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].kind == op::confirm);
  BOOST_TEST(got[0].code == 0u);
  t.publish(pub, "nobody", "x", {.msg_id = "m2", .confirm = true});
  got = t.take(pub);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].code == static_cast<std::uint32_t>(status::no_interest));
}

BOOST_AUTO_TEST_CASE(a_resent_duplicate_is_dropped_and_confirmed_again_until_the_window_ends) {
  broker::config cfg;
  cfg.dedup_window = 10s;
  cfg.heartbeat = 60s; // the clients stay silent while the window passes
  harness t{cfg};
  auto pub = t.connect();
  auto a = t.connect();
  t.subscribe(a, 1, "t");
  t.publish(pub, "t", "x", {.msg_id = "same", .confirm = true});
  t.publish(pub, "t", "x", {.msg_id = "same", .confirm = true});
  BOOST_TEST(t.take_msgs(a).size() == 1u);
  auto got = t.take(pub);
  BOOST_TEST_REQUIRE(got.size() == 2u);
  BOOST_TEST(got[1].kind == op::confirm);
  BOOST_TEST(got[1].msg_id == "same");
  BOOST_TEST(t.core().stats().duplicates == 1u);
  t.advance(11s);
  BOOST_TEST(t.core().current().dedup_entries == 0u);
  t.publish(pub, "t", "x", {.msg_id = "same"});
  BOOST_TEST(t.take_msgs(a).size() == 1u); // outside the window: a new message
}

BOOST_AUTO_TEST_CASE(a_resend_of_a_message_that_reached_nobody_is_a_new_attempt) {
  harness t;
  auto pub = t.connect();
  t.publish(pub, "t", "x", {.msg_id = "again", .confirm = true});
  auto got = t.take(pub);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].code == static_cast<std::uint32_t>(status::no_interest));
  auto a = t.connect(); // a subscriber appears (a worker restarted)
  t.subscribe(a, 1, "t");
  t.publish(pub, "t", "x", {.msg_id = "again", .confirm = true});
  BOOST_TEST(t.take_msgs(a).size() == 1u); // not dropped as a duplicate
  got = t.take(pub);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].code == 0u);
  t.publish(pub, "t", "x", {.msg_id = "again", .confirm = true});
  BOOST_TEST(t.take_msgs(a).empty()); // delivered once: now it is a duplicate
  BOOST_TEST(t.core().stats().duplicates == 1u);
}

BOOST_AUTO_TEST_CASE(bad_frames_get_err_and_past_the_budget_the_connection_is_closed) {
  broker::config cfg;
  cfg.error_budget = 3;
  harness t{cfg};
  auto bad = t.connect();
  auto good = t.connect();
  t.subscribe(good, 1, "t");
  wire::decode_error e{wire::errc::malformed, wire::field::frame, {}, 0, false};
  for (int i = 0; i < 3; ++i) t.core().reject(bad, e, t.now());
  t.flush();
  auto got = t.take(bad);
  BOOST_TEST_REQUIRE(got.size() == 3u);
  BOOST_TEST(got[0].kind == op::err);
  BOOST_TEST(got[0].code == static_cast<std::uint32_t>(wire::errc::malformed));
  BOOST_TEST(got[0].text == "frame: malformed msgpack");
  BOOST_TEST(!t.was_closed(bad));
  t.core().reject(bad, e, t.now());
  t.flush();
  got = t.take(bad); // what was queued is dropped: only the BYE goes out
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].kind == op::bye);
  BOOST_TEST(got[0].text == "error budget exceeded");
  BOOST_TEST(t.was_closed(bad));
  // The good client is untouched.
  t.publish(good, "t", "still here");
  BOOST_TEST(t.take_msgs(good).size() == 1u);
  BOOST_TEST(t.core().stats().bad_frames == 4u);
}

BOOST_AUTO_TEST_CASE(a_slow_consumer_is_dropped_and_counted_without_growing_memory) {
  broker::config cfg;
  cfg.max_pending_msgs = 100;
  harness t{cfg};
  auto pub = t.connect();
  auto slow = t.connect();
  t.subscribe(slow, 1, "flood");
  t.core().flush([](conn_id, std::span<const broker::output>) { return std::size_t{0}; });
  for (int i = 0; i < 1000; ++i) t.publish_only(pub, "flood", "payload");
  BOOST_TEST(t.core().current().pending_msgs <= 100u + 2u);
  BOOST_TEST(t.core().stats().slow_consumer_drops >= 900u);
  BOOST_TEST(!t.was_closed(slow));
}

BOOST_AUTO_TEST_CASE(a_slow_consumer_is_disconnected_when_the_policy_says_so) {
  broker::config cfg;
  cfg.max_pending_msgs = 10;
  cfg.slow_consumer = broker::slow_consumer_policy::disconnect;
  harness t{cfg};
  auto pub = t.connect();
  auto slow = t.connect();
  t.subscribe(slow, 1, "flood");
  for (int i = 0; i < 20; ++i) t.publish_only(pub, "flood", "p");
  t.flush();
  BOOST_TEST(t.was_closed(slow));
  BOOST_TEST(t.core().stats().slow_consumer_disconnects == 1u);
  auto got = t.take(slow);
  BOOST_TEST_REQUIRE(!got.empty());
  BOOST_TEST(got.back().kind == op::bye);
  BOOST_TEST(got.back().text == "slow consumer: its queue is full");
}

BOOST_AUTO_TEST_CASE(a_blocked_transport_keeps_the_rest_queued_in_order) {
  harness t;
  auto pub = t.connect();
  auto a = t.connect();
  t.subscribe(a, 1, "t");
  t.core().flush([](conn_id, std::span<const broker::output>) { return std::size_t{0}; });
  for (int i = 0; i < 5; ++i) t.publish_only(pub, "t", std::to_string(i));
  t.flush(2);
  BOOST_TEST(t.take_msgs(a).size() == 2u);
  BOOST_TEST(t.core().current().pending_msgs == 3u);
  t.flush();
  auto rest = t.take_msgs(a);
  BOOST_TEST_REQUIRE(rest.size() == 3u);
  BOOST_TEST(rest[0].payload == "2");
  BOOST_TEST(rest[2].payload == "4");
}

BOOST_AUTO_TEST_CASE(clients_may_not_publish_in_the_brokers_own_namespace) {
  harness t;
  auto c = t.connect();
  auto spy = t.connect();
  t.subscribe(spy, 1, "$SYS.>");
  t.publish(c, "$SYS.broker.b1.stats", "{}");
  auto got = t.take(c);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].code == static_cast<std::uint32_t>(status::forbidden));
  BOOST_TEST(t.take_msgs(spy).empty());
}

BOOST_AUTO_TEST_CASE(stats_are_published_on_sys_every_interval) {
  broker::config cfg;
  cfg.id = "b1";
  harness t{cfg};
  auto spy = t.connect("spy");
  t.subscribe(spy, 1, "$SYS.broker.b1.stats");
  auto wild = t.connect("wild");
  t.subscribe(wild, 1, ">");
  t.advance(2100ms);
  auto got = t.take_msgs(spy);
  BOOST_TEST_REQUIRE(got.size() == 2u);
  BOOST_TEST(got[0].payload.find("\"broker\":\"b1\"") != std::string::npos);
  BOOST_TEST(got[0].payload.find("\"connections\":2") != std::string::npos);
  BOOST_TEST(t.take_msgs(wild).empty()); // `>` does not reach $SYS
}

BOOST_AUTO_TEST_CASE(shutdown_says_bye_to_every_connection) {
  harness t;
  auto a = t.connect();
  auto b = t.connect();
  t.core().shutdown(t.now());
  t.flush();
  for (auto c : {a, b}) {
    auto got = t.take(c);
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].kind == op::bye);
  }
  BOOST_TEST(t.core().current().connections == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
